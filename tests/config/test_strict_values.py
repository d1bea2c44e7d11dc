"""Strict values (issue 18): no manifest value is converted into another type, every number is finite and
in its range, the fields only the manifest's rules set are refused by hand, and a problem is reported at
the line of the value that caused it (a grid value, a smoke override, a phase rule, a tuning candidate),
never at its section. Each case goes through the front door (`vitstudy plan`, some through `run-grid`):
exit 2, no traceback, nothing written, and a message naming the file, the line, the key path and what
would be valid. The shipped manifests keep loading, with the run ids they had before."""

import hashlib
import re
import typing
from pathlib import Path

import pytest
from pydantic import ValidationError

from vitstudy.config.manifest import load, parse
from vitstudy.config.spec import RULE_SET, SECTIONS, RunSpec, TrainSpec
from vitstudy.models.cost import cached_cost

ROOT = Path(__file__).resolve().parents[2]
HEAD = "name: m\ndefaults:\n  model: {preset: vit_micro, head: gap}\n  data: {dataset: digits}\n"
HUGE = "1000000000000000000000000000000"  # 10**30


def _defaults(section: str, line: str) -> str:
    """A manifest whose defaults put `line` on a line of its own in `section` (vit_micro on digits)."""
    sections = {"model": {"preset": "vit_micro", "head": "gap"}, "data": {"dataset": "digits"}, "train": {},
                "log": {}}
    key, _, value = line.partition(": ")
    sections[section][key] = value
    return "name: m\ndefaults:\n" + "".join(f"  {s}:\n" + "".join(f"    {k}: {v}\n" for k, v in kv.items())
                                           for s, kv in sections.items() if kv)


def _kind(annotation) -> str:
    """A field's value type: int, float, bool, str, tuple or other (a Literal, a union)."""
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    if typing.get_origin(annotation) is typing.Union and len(args) == 1:  # Optional[X]
        return _kind(args[0])
    if typing.get_origin(annotation) is typing.Annotated:
        return _kind(args[0])
    if typing.get_origin(annotation) is tuple:
        return "tuple"
    return annotation.__name__ if annotation in (int, float, bool, str) else "other"


def _field_cases() -> dict[str, tuple[str, str, str, str]]:
    """For every option of every section (but those only rules set): the wrong values of its type, each
    set in the defaults, with the hint the refusal must give."""
    wrong = {"int": {"bool": ("yes", "valid integer"), "quoted": ("'3'", "valid integer"),
                     "fraction": ("2.5", "valid integer"), "huge": (HUGE, "less than or equal to")},
             "float": {"nan": (".nan", "finite number"), "inf": ("-.inf", "finite number"),
                       "bool": ("true", "valid number"), "quoted": ("'0.5'", "valid number")},
             "bool": {"int": ("0", "valid boolean"), "quoted": ("'yes'", "valid boolean")},
             "str": {"mapping": ("{a: 1}", "valid string")},
             "tuple": {"mapping": ("{a: 1}", "valid tuple"), "bool item": ("[true, true]", "(got True)")}}
    cases = {}
    for section, cls in SECTIONS.items():
        for name, info in cls.model_fields.items():
            if section == "train" and name in RULE_SET:
                continue
            for what, (value, hint) in wrong.get(_kind(info.annotation), {}).items():
                line = f"{name}: {value}"
                key = f"defaults.{section}.{name}" + ("[0]" if what == "bool item" else "")
                cases[f"{section}.{name} {what}"] = (_defaults(section, line), key, hint, line)
    return cases


FIELD_CASES = _field_cases()


def test_every_option_of_a_value_type_is_checked():
    """The generated table covers each int, float, bool, str and tuple option (a new option joins it)."""
    kinds = {(s, n): _kind(i.annotation) for s, c in SECTIONS.items() for n, i in c.model_fields.items()}
    checked = {tuple(k.split(" ")[0].split(".")) for k in FIELD_CASES}
    assert {k for k, kind in kinds.items() if kind != "other" and k[1] not in RULE_SET} == checked
    assert len(checked) > 60


# name -> (manifest text, key path, hint, text of the line the problem must be reported at)
CASES = {
    # coercion: a bool is not an int, a string is not a number, a mapping is not a string
    "epochs yes": (_defaults("train", "epochs: yes"), "defaults.train.epochs",
                   "yes/no/true/false is a bool, not a number", "epochs: yes"),
    "batch_size true": (_defaults("data", "batch_size: true"), "defaults.data.batch_size",
                        "a bool, not a number", "batch_size: true"),
    "lr as text": (_defaults("train", "lr: '5e-4'"), "defaults.train.lr", "write 5e-4 without quotes",
                   "lr: '5e-4'"),
    "epochs quoted": (_defaults("train", "epochs: '3'"), "defaults.train.epochs", "write 3 without quotes",
                      "epochs: '3'"),
    "root a mapping": (_defaults("data", "root: {path: x}"), "defaults.data.root", "valid string",
                       "root: {path: x}"),
    "seeds a bool": (HEAD + "seeds: [0, true]\n", "seeds", "non-negative integers", "seeds:"),
    # ranges
    "lr zero": (_defaults("train", "lr: 0"), "defaults.train.lr", "greater than 0", "lr: 0"),
    "weight decay negative": (_defaults("train", "weight_decay: -0.01"), "defaults.train.weight_decay",
                              "greater than or equal to 0", "weight_decay: -0.01"),
    "beta one": (_defaults("train", "betas: [0.9, 1.0]"), "defaults.train.betas[1]", "less than 1",
                 "betas: [0.9, 1.0]"),
    "beta negative": (_defaults("train", "betas: [-0.1, 0.9]"), "defaults.train.betas[0]",
                      "greater than or equal to 0", "betas:"),
    "beta nan": (_defaults("train", "betas: [0.9, .nan]"), "defaults.train.betas[1]", "finite number",
                 "betas:"),
    "three betas": (_defaults("train", "betas: [0.9, 0.99, 0.999]"), "defaults.train.betas", "at most 2",
                    "betas:"),
    "mlp_ratio inf": (_defaults("model", "mlp_ratio: .inf"), "defaults.model.mlp_ratio", "finite number",
                      "mlp_ratio:"),
    "epochs zero": (_defaults("train", "epochs: 0"), "defaults.train.epochs", "greater than 0", "epochs: 0"),
    "batch size zero": (_defaults("data", "batch_size: 0"), "defaults.data.batch_size", "greater than 0",
                        "batch_size: 0"),
    "devices zero": (_defaults("train", "devices: 0"), "defaults.train.devices",
                     "a count ≥ 1 (at most 65536), -1 (every device) or auto", "devices: 0"),
    "devices minus two": (_defaults("train", "devices: -2"), "defaults.train.devices", "-1 (every device)",
                          "devices: -2"),
    "devices a bool": (_defaults("train", "devices: yes"), "defaults.train.devices", "or auto, got True",
                       "devices: yes"),
    "devices text": (_defaults("train", "devices: all"), "defaults.train.devices", "or auto, got 'all'",
                     "devices: all"),
    # seeds in [0, 2³²): the manifest's, the smoke run's, the tuning cells'
    "seed 2**32": (HEAD + "seeds: [0, 4294967296]\n", "seeds", "below 2³² (4,294,967,296)", "seeds:"),
    "smoke seed 2**32": (HEAD + "smoke:\n  seeds: [4294967296]\n", "smoke.seeds", "below 2³²", "  seeds:"),
    "tune seed 2**32": (HEAD + "tune:\n  train.lr: [1.0e-3, 2.0e-3]\n  seeds: [4294967296]\n", "tune.seeds",
                        "below 2³²", "  seeds:"),
    # sizes: bounded, said in the message, never a traceback (plan counts every model's cost)
    "embed_dim 10**30": (_defaults("model", f"embed_dim: {HUGE}"), "defaults.model.embed_dim",
                         "less than or equal to 65536 (got 1000", "embed_dim:"),
    "depth 10**30 in a grid": (HEAD + f"grid:\n  model.depth: [2, {HUGE}]\n", "grid.model.depth[1]",
                               "less than or equal to 1000", "model.depth:"),
    "img_size 10**30 by smoke": (HEAD + f"smoke:\n  model: {{img_size: {HUGE}}}\n", "smoke.model.img_size",
                                 "less than or equal to 8192", "  model: {img_size"),
    "kernel too large": (_defaults("model", "kernel_size: 257"), "defaults.model.kernel_size",
                         "less than or equal to 255", "kernel_size:"),
    "too many tokens": (HEAD + "grid:\n  zip: {model.img_size: [8192], model.patch_size: [4]}\n",
                        "grid.zip.model.patch_size[0]", "at most 1,048,576 tokens (1024²): patch_size ≥ 8",
                        "  zip:"),
    # cross-section: the shift and the image, the dataset's classes and channels
    "shift as large as the image": (HEAD + "grid:\n  data.shift: [2, 16]\n", "grid.data.shift[1]",
                                    "must be below model.img_size", "  data.shift:"),
    "classes contradict the dataset": (HEAD + "grid:\n  model.num_classes: [10, 100]\n",
                                       "grid.model.num_classes[1]",
                                       "contradicts dataset 'digits', which has 10", "  model.num_classes:"),
    "channels contradict the dataset": (_defaults("model", "in_chans: 3"), "defaults.model.in_chans",
                                        "contradicts dataset 'digits', which has 1", "in_chans: 3"),
    "dataset contradicts the channels": (_defaults("model", "in_chans: 1").replace("digits", "cifar10"),
                                         "defaults.model.in_chans", "dataset 'cifar10', which has 3",
                                         "in_chans: 1"),
    # fields only the manifest's rules set, by hand anywhere else; a path is never a run id
    "init_from in defaults": (_defaults("train", "init_from: ../../x"), "defaults.train.init_from",
                              "set by the phase rule itself (the manifest's phases:), never by hand",
                              "init_from:"),
    "init_from on a grid axis": (HEAD + "grid:\n  train.init_from: [../../etc]\n", "grid.train.init_from",
                                 "never by hand", "  train.init_from:"),
    "init_from by smoke": (HEAD + "smoke:\n  train: {init_from: x}\n", "smoke.train.init_from",
                           "never by hand", "  train: {init_from"),
    "init_from in a phase rule": (HEAD + "grid:\n  model.mixer: [conv]\nphases:\n  - match: {model.mixer: conv}\n"
                                  "    transfer: copy\n    train: {init_from: ../../x}\n",
                                  "phases[0].train.init_from", "phase rule itself", "    train:"),
    "transfer in defaults": (_defaults("train", "transfer: copy"), "defaults.train.transfer",
                             "phase rule itself", "transfer:"),
    "tune_from in defaults": (_defaults("train", "tune_from: [a_s0-0123abcd]"), "defaults.train.tune_from",
                              "the tune rule itself (the manifest's tune:), never by hand", "tune_from:"),
    "tune_metric on a grid axis": (HEAD + "grid:\n  train.tune_metric: [val/acc1]\n",
                                   "grid.train.tune_metric", "tune rule itself", "  train.tune_metric:"),
    "init_from tuned": (HEAD + "tune:\n  train.init_from: [a]\n", "tune.train.init_from", "so it is not tuned",
                        "  train.init_from:"),
    # a misplaced option names its section, never itself as a suggestion
    "init_from in model": (_defaults("model", "init_from: x"), "defaults.model.init_from",
                           "init_from is a train option set by the phase rule itself", "init_from:"),
    "epochs in data": (_defaults("data", "epochs: 3"), "defaults.data.epochs",
                       "epochs is a train option, not a data option: set train.epochs", "epochs:"),
    "embed_dim in train on a grid axis": (HEAD + "grid:\n  train.embed_dim: [32]\n", "grid.train.embed_dim",
                                          "embed_dim is a model option, not a train option", "  train.embed"),
    "epochs in smoke data": (HEAD + "smoke:\n  data: {epochs: 1}\n", "smoke.data.epochs",
                             "a train option, not a data option", "  data: {epochs"),
    "lr in an exclude rule": (HEAD + "grid:\n  model.head: [gap]\nexclude:\n  - {model.lr: 1}\n",
                              "exclude[0].model.lr", "lr is a train option", "  - {model.lr"),
    # a model-level check at the value that caused it
    "kernel_size from a grid value": (HEAD + "grid:\n  model.mixer: [conv]\n  model.kernel_size: [3, 4]\n",
                                      "grid.model.kernel_size[1]", "kernel_size must be odd", "  model.kernel_size:"),
    "kernel_size from a zip": (HEAD + "grid:\n  zip:\n    model.mixer: [attention, conv]\n"
                               "    model.kernel_size: [3, 6]\n", "grid.zip.model.kernel_size[1]",
                               "must be odd (same-size output), got 6", "    model.kernel_size:"),
    "kernel_size by smoke": (HEAD + "grid:\n  model.mixer: [conv]\nsmoke:\n  model: {kernel_size: 2}\n",
                             "smoke.model.kernel_size", "got 2", "  model: {kernel_size"),
    "patch_size from a grid value": (HEAD + "grid:\n  model.patch_size: [4, 5]\n", "grid.model.patch_size[1]",
                                     "valid patch sizes: [1, 2, 4, 8, 16]", "  model.patch_size:"),
    "heads against a preset from a grid value": (  # the value particular to the cell: its preset
        "name: m\ndefaults:\n  model: {num_heads: 5}\n  data: {dataset: digits}\ngrid:\n  model.preset: [vit_micro]\n",
        "grid.model.preset[0]", "num_heads 5 does not divide embed_dim 64", "  model.preset:"),
    "a preset's sizes against a smoke image": (HEAD + "grid:\n  model.preset: [vit_micro, vit_tiny]\n"
                                               "smoke:\n  model: {img_size: 20}\n", "smoke.model.img_size",
                                               "not a multiple of patch_size", "  model: {img_size"),
    "cls head from a grid mixer": (HEAD.replace("head: gap", "head: cls") + "grid:\n  model.mixer: [attention, pool]\n",
                                   "grid.model.mixer[1]", "use head: gap", "  model.mixer:"),
    "option of another mixer": (_defaults("model", "kernel_size: 5") + "grid:\n  model.mixer: [conv, pool]\n",
                                "grid.model.mixer[1]", "kernel_size applies only to mixer 'conv'", "  model.mixer:"),
    "warmup against grid epochs": (_defaults("train", "warmup_epochs: 2") + "grid:\n  train.epochs: [5, 2]\n",
                                   "grid.train.epochs[1]", "must be below epochs 2", "  train.epochs:"),
    "phase 2 kernel from the rule": (HEAD + "grid:\n  model.mixer: [conv]\nphases:\n  - match: {model.mixer: conv}\n"
                                     "    transfer: copy\n    model: {kernel_size: 4}\n",
                                     "phases[0].model.kernel_size", "phase 2: kernel_size must be odd",
                                     "    model: {kernel_size"),
    "phase 2 beta from the rule": (HEAD + "grid:\n  model.mixer: [conv]\nphases:\n  - match: {model.mixer: conv}\n"
                                   "    transfer: copy\n    train:\n      betas: [0.9, .nan]\n",
                                   "phases[0].train.betas[1]", "phase 2: Input should be a finite number",
                                   "      betas:"),
    "tuning candidate beta": (HEAD + "tune:\n  train.betas: [[0.9, 0.99], [0.9, 1.5]]\n",
                              "tune.train.betas[1][1]", "tuning candidate: Input should be less than 1",
                              "  train.betas:"),
    "tuning candidate mixing": (HEAD + "tune:\n  train.mixup_prob: [1.0, 0.5]\n", "tune.train.mixup_prob[1]",
                                "need mixup or cutmix above 0", "  train.mixup_prob:"),
}
RUN_GRID = ("epochs yes", "devices zero", "embed_dim 10**30", "init_from in defaults", "kernel_size from a grid value",
            "shift as large as the image", "classes contradict the dataset", "smoke seed 2**32")


def _line(text: str, start: str) -> int:
    """The 1-based number of the first line of `text` that starts with `start` (after indentation when
    `start` has none)."""
    lines = text.splitlines()
    return next(i for i, x in enumerate(lines, 1) if x.startswith(start) or (start[0] != " " and
                                                                             x.lstrip().startswith(start)))


def _check(err: str, text: str, key: str, hint: str, at: str) -> None:
    line = _line(text, at)
    assert re.search(rf"m\.yaml:{line}: {re.escape(key)}: ", err), f"want m.yaml:{line}: {key}\n{err}"
    assert hint in err, err
    option = re.sub(r"(\[\d+\])+$", "", key).rsplit(".", 1)[-1]
    assert f"did you mean '{option}'" not in err, err  # never itself as a suggestion


@pytest.mark.parametrize("case", {**CASES, **FIELD_CASES})
def test_plan_refuses_with_the_line_key_and_hint(case, refused):
    text, key, hint, at = {**CASES, **FIELD_CASES}[case]
    err = refused(["plan", "m.yaml", "--smoke"] if "smoke" in case else ["plan", "m.yaml"], {"m.yaml": text})
    _check(err, text, key, hint, at)


@pytest.mark.parametrize("case", RUN_GRID)
def test_run_grid_refuses_before_writing_anything(case, refused):
    text, key, hint, at = CASES[case]
    err = refused(["run-grid", "m.yaml", "--out", "results", "--smoke"], {"m.yaml": text})
    _check(err, text, key, hint, at)


def test_what_is_allowed_stays_allowed():
    """An int where a float goes (lr: 1 is 1.0, the same run id as 1.0), -1 and auto devices, the largest
    seed, a shift just below the image, imagefolder's classes from the manifest."""
    one = parse(HEAD.replace("digits}", "digits}\n  train: {lr: 1, devices: -1, betas: [0, 0.5]}")).cells[0]
    dot = parse(HEAD.replace("digits}", "digits}\n  train: {lr: 1.0, devices: -1, betas: [0.0, 0.5]}")).cells[0]
    assert one.spec.train.lr == 1.0 and isinstance(one.spec.train.lr, float) and one.run_id == dot.run_id
    assert parse(_defaults("train", "devices: auto")).cells[0].spec.train.devices == "auto"
    assert parse(HEAD + "seeds: [4294967295]\n").cells[0].spec.seed == 2 ** 32 - 1
    assert parse(HEAD + "grid:\n  data.shift: [15]\n").cells[0].spec.data.shift == 15
    folder = parse("name: m\ndefaults:\n  model: {preset: vit_micro, num_classes: 7}\n"
                   "  data: {dataset: imagefolder}\n")
    assert (folder.cells[0].spec.model.num_classes, folder.cells[0].spec.model.in_chans) == (7, 3)


def test_plan_counts_the_largest_model_a_manifest_may_ask_for(tmp_path, capsys):
    """At the bounds (a 1024² token grid, 65536 wide, 1000 classes... on the meta device) plan prints the
    cost: no size a manifest accepts overflows the count or its display."""
    from vitstudy.cli import main

    model = "{preset: vit_micro, head: gap, img_size: 8192, patch_size: 8, embed_dim: 65536, num_heads: 1, " \
            "depth: 2, mlp_ratio: 256}"
    (tmp_path / "m.yaml").write_text(HEAD.replace("{preset: vit_micro, head: gap}", model))
    assert main(["plan", str(tmp_path / "m.yaml"), "--out", str(tmp_path / "results")]) == 0
    out = capsys.readouterr().out
    assert re.search(r"\d+(\.\d+)?T params +\S+ MACs", out), out
    assert not (tmp_path / "results").exists()


def test_a_budget_message_prints_any_reference_short():
    """`budget: {reference: 1.0e+300}` cannot be reached; the message says so without 300 digits."""
    from vitstudy.config.budget import count

    assert (count(5717416.0), count(1e300)) == ("5,717,416", "1e+300")


def test_a_run_id_field_refuses_a_path():
    """train.init_from and train.tune_from hold run ids of the same grid folder, never a path, whoever
    builds the spec (a spec.yaml read back, a record's spec)."""
    for bad in ("../../x_s0-0123abcd", "a/b_s0-0123abcd", "..", "/etc/passwd", ".hidden_s0-0123abcd"):
        with pytest.raises(ValidationError, match="should match pattern"):
            TrainSpec(init_from=bad, transfer="copy")
        with pytest.raises(ValidationError, match="should match pattern"):
            TrainSpec(tune_from=["head-cls_s0-0123abcd", bad], tune_metric="val/acc1")
    assert TrainSpec(init_from="mixer-conv_phase-1_s0-0123abcd", transfer="copy").init_from


# --- the shipped manifests load as before: same cells, same run ids ---------------------------------
SHIPPED = ["experiments.yaml", *sorted(p.relative_to(ROOT).as_posix() for p in (ROOT / "ablations").glob("*.yaml")),
           *sorted(p.relative_to(ROOT).as_posix() for p in (ROOT / "tests" / "manifests").glob("*.yaml"))]
# sha256 of the manifest's run ids (sorted, one a line), first 16 hex digits, without and with --smoke, as
# they were before strict values (issue 18). A manifest changed on purpose needs its entry updated (the
# failure prints the new one); a failure without such a change means a spec change altered run ids, so
# results on disk would no longer be found.
PINNED = {
    "experiments.yaml": ("255c3fd5b82ae77b", "a643e6c4b2944555"),
    "ablations/cmhsa.yaml": ("c34cc2d25213ac39", "d054af42ec17de05"),
    "ablations/cmhsa_small.yaml": ("4555b1bb718165c9", "c0774a0c5b042ee3"),
    "ablations/ff_only.yaml": ("15fdb095ced5c6eb", "b7619db6fd843361"),
    "ablations/ff_only_small.yaml": ("88e9e0ea1c69ce54", "94ac217b9739d736"),
    "ablations/softmax.yaml": ("9f3c89da7188f33c", "9fd8d20402c3dfdd"),
    "ablations/softmax_small.yaml": ("1532b36ef82f7e4c", "1cac41d72c545c8f"),
    "ablations/t2t_small.yaml": ("21966ca6fb9eaa37", "5323a5640d047828"),
    "ablations/t2t_vit.yaml": ("548c0d88e8d0a416", "d803c8acba28956d"),
    "tests/manifests/foundation.yaml": ("e487b055cf2abdde", "e487b055cf2abdde"),
    "tests/manifests/tiny.yaml": ("509b3c30fed9b15e", "509b3c30fed9b15e"),
}


def _ids_digest(grid) -> str:
    return hashlib.sha256("\n".join(sorted(c.run_id for c in grid.cells)).encode()).hexdigest()[:16]


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_manifests_keep_their_run_ids(name):
    grids = [load(ROOT / name, smoke=smoke, cost=cached_cost) for smoke in (False, True)]
    assert tuple(_ids_digest(g) for g in grids) == PINNED[name], [_ids_digest(g) for g in grids]
    for cell in (c for g in grids for c in g.cells):  # a spec read back from its JSON is the same spec
        again = RunSpec.model_validate(cell.spec.model_dump(mode="json"))
        assert again == cell.spec and cell.run_id.endswith(again.digest())
