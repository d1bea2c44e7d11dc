"""The `vitstudy` command itself: what it hands to the layers below (the bench parts asked for, in
their order, with the options given) and how bad input ends (exit status 2, a message, no traceback)."""

from pathlib import Path

import pytest

import vitstudy.bench
from vitstudy.cli import main

QUICK = [p for p in vitstudy.bench.PARTS if p not in vitstudy.bench.LONG_PARTS]  # `all`: not pack's grids


@pytest.mark.parametrize("what, parts", [
    ([], QUICK),
    (["all", "loop"], QUICK),
    (["scaling", "loop", "data"], ["loop", "data", "scaling"]),  # the parts' own order, not the command's
    (["pack", "all"], vitstudy.bench.PARTS),  # a long part runs when named
])
def test_bench_hands_the_parts_asked_and_the_options_to_run_parts(what, parts, monkeypatch, tmp_path):
    calls = []
    monkeypatch.setattr(vitstudy.bench, "run_parts", lambda parts, **options: calls.append((parts, options)))
    argv = ["bench", *what, "--precision", "bf16", "--rounds", "3", "--only", "dwsa", "--device", "cpu",
            "--manifest", "m.yaml", "--out", str(tmp_path)]
    assert main(argv) == 0
    assert calls == [(list(parts), {"precisions": ["bf16"], "rounds": 3, "only": ["dwsa"],
                                    "manifest": Path("m.yaml"), "device": "cpu", "out": tmp_path,
                                    "seconds": None, "epochs": None, "seeds": None})]


def test_bench_defaults(monkeypatch):
    calls = []
    monkeypatch.setattr(vitstudy.bench, "run_parts", lambda parts, **options: calls.append(options))
    assert main(["bench", "loop"]) == 0
    assert calls == [{"precisions": ["fp32", "bf16"], "rounds": None, "only": None,
                      "manifest": Path("experiments.yaml"), "device": None, "out": Path("results/bench"),
                      "seconds": None, "epochs": None, "seeds": None}]


@pytest.mark.parametrize("argv, message", [
    (["profile", "vit_tinyy"], "vit_tiny"),  # an unknown preset: a suggestion
    (["report", "nowhere.yaml", "--no-plots"], "nowhere.yaml"),
])
def test_bad_input_exits_2_with_a_message(argv, message, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
