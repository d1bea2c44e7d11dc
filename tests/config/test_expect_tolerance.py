"""Expected values with a tolerance (`test/acc1: {value: 72.2, tolerance: 0.5}`, the form `vitstudy check`
reads): attached to the cells beside the plain numbers, a later rule's value carrying its own tolerance,
and every malformed one a problem naming its key path, line and what is valid."""

import pytest

from vitstudy.cli import main
from vitstudy.config.manifest import ManifestError, parse

HEAD = """defaults:
  model: {preset: vit_micro}
  data: {dataset: digits}
grid:
  model.head: [cls, gap]
"""
TOLERANT = HEAD + """expect:
  - test/acc1: {value: 95.0, tolerance: 2}
    params: 5.7e6
    val/acc1: {value: 96.5}
  - match: {model.head: gap}
    test/acc1: 97.5
    test/loss: {value: 1e-1, tolerance: 5e-2}
"""


def test_tolerances_attach_beside_the_values_and_a_later_value_brings_its_own():
    by = {c.spec.model.head: c for c in parse(TOLERANT, "t.yaml").cells}
    assert by["cls"].expect == {"test/acc1": 95.0, "params": 5.7e6, "val/acc1": 96.5}
    assert by["cls"].tolerance == {"test/acc1": 2.0}
    # gap: the second rule's plain 97.5 replaces 95.0 ± 2, so no tolerance is left for test/acc1
    assert by["gap"].expect == {"test/acc1": 97.5, "params": 5.7e6, "val/acc1": 96.5, "test/loss": 0.1}
    assert by["gap"].tolerance == {"test/loss": 0.05}


def test_a_tolerance_does_not_change_the_run_ids():
    plain = parse(HEAD + "expect:\n  - test/acc1: 95.0\n", "t.yaml")
    tolerant = parse(TOLERANT, "t.yaml")
    assert [c.run_id for c in plain.cells] == [c.run_id for c in tolerant.cells]


BAD = {
    "unknown key": ("{value: 95, tolerence: 1}", "expect[0].test/acc1.tolerence", "did you mean 'tolerance'"),
    "negative tolerance": ("{value: 95, tolerance: -1}", "expect[0].test/acc1.tolerance", "≥ 0"),
    "infinite tolerance": ("{value: 95, tolerance: .inf}", "expect[0].test/acc1.tolerance", "finite number"),
    "tolerance not a number": ("{value: 95, tolerance: wide}", "expect[0].test/acc1.tolerance", "finite"),
    "no value": ("{tolerance: 1}", "expect[0].test/acc1.value", "value is a finite number"),
    "value not a number": ("{value: high, tolerance: 1}", "expect[0].test/acc1.value", "finite number"),
    "not a number or mapping": ("[95, 1]", "expect[0].test/acc1", "{value, tolerance}"),
}


@pytest.mark.parametrize("case", BAD)
def test_a_bad_expected_value_names_its_key_line_and_what_is_valid(case):
    value, key, hint = BAD[case]
    text = HEAD + f"expect:\n  - match: {{model.head: cls}}\n    test/acc1: {value}\n"
    with pytest.raises(ManifestError) as info:
        parse(text, "bad.yaml")
    problem = next(p for p in info.value.problems if p.path == key)
    assert hint in problem.message
    assert problem.line == 8


def test_the_cli_exits_2_on_a_bad_tolerance(write_manifest, tmp_path, capsys):
    path = write_manifest(HEAD + "expect:\n  - test/acc1: {value: 95, tolerance: -1}\n")
    assert main(["check", str(path), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "expect[0].test/acc1.tolerance" in err and "Traceback" not in err


SMOKE_GATE = TOLERANT + """smoke:
  train: {epochs: 1}
  expect:
    - match: {model.head: cls}
      test/acc1: {value: 40, tolerance: 30}
"""


def test_smoke_expect_rules_replace_the_manifests_in_a_smoke_run_only():
    full = {c.spec.model.head: c for c in parse(SMOKE_GATE, "t.yaml").cells}
    smoke = {c.spec.model.head: c for c in parse(SMOKE_GATE, "t.yaml", smoke=True).cells}
    assert full["cls"].expect["test/acc1"] == 95.0 and full["gap"].expect["test/acc1"] == 97.5
    assert smoke["cls"].expect == {"test/acc1": 40.0} and smoke["cls"].tolerance == {"test/acc1": 30.0}
    assert smoke["gap"].expect == {}  # the smoke rules name only cls


def test_a_bad_smoke_expect_rule_is_reported_at_its_own_path():
    text = HEAD + "smoke:\n  expect:\n    - match: {model.head: vit}\n      test/acc1: {value: 40, tol: 3}\n"
    with pytest.raises(ManifestError) as e:
        parse(text, "t.yaml", smoke=True)
    found = {(p.path, p.line) for p in e.value.problems}
    assert ("smoke.expect[0].test/acc1.tol", 9) in found  # 'tol' is not a key of an expected value
    with pytest.raises(ManifestError) as e:
        parse(HEAD + "smoke:\n  expect:\n    - match: {model.head: vit}\n      test/acc1: 40\n", "t.yaml",
              smoke=True)
    assert [(p.path, p.line) for p in e.value.problems] == [("smoke.expect[0].match", 8)]  # matches no cell
