"""The report of a tuned grid: tuning runs are no rows, the chosen values are a column (every value
where seeds disagree), a value at the edge of its range says so, and tuning.png draws the curve."""

import csv
import io

from vitstudy.results.render import render
from vitstudy.results.runs import Run
from vitstudy.results.table import summarize
from vitstudy.results.write import write

LRS = [1e-3, 3e-3, 1e-2]
VAL = {"attention": {1e-3: [90.0, 91.0], 3e-3: [95.0, 94.0], 1e-2: [80.0, 82.0]},  # best: 3e-3 (inside)
       "conv": {1e-3: [85.0, 86.0], 3e-3: [92.0, 93.0], 1e-2: [96.0, 97.0]}}  # best: 1e-2 (the edge)


def spec(mixer, seed, lr, stage, tune_from=None):
    train = {"lr": lr, "epochs": 3, "tune_from": tune_from, "tune_metric": "val/acc1" if tune_from else None}
    return {"grid": "g", "seed": seed, "stage": stage, "model": {"mixer": mixer}, "train": train}


def tuning_runs(mixer):
    return [Run({"run_id": f"{mixer}_tune_{lr}_s{seed}", "status": "done", "spec": spec(mixer, seed, lr, "tune"),
                 "metrics": {"val/acc1": acc, "test/acc1": 50.0}})
            for lr in LRS for seed, acc in zip((100, 101), VAL[mixer][lr], strict=True)]


def final_runs(mixer, tuning, chosen):
    """Seeds 0 and 1 of a variant's final cell; `chosen`: the lr each seed's tuning picked."""
    runs = []
    for seed, lr in enumerate(chosen):
        candidates = [{"values": {"train.lr": x}, "score": sum(VAL[mixer][x]) / 2, "n": 2, "statuses": {"done": 2},
                       "runs": [r.record["run_id"] for r in tuning if r.record["spec"]["train"]["lr"] == x]}
                      for x in LRS]
        tuned = {"keys": {"train.lr": lr}, "metric": "val/acc1", "mode": "max", "candidates": candidates,
                 "edge": ["train.lr"] if lr in (LRS[0], LRS[-1]) else []}
        ids = tuple(sorted(r.record["run_id"] for r in tuning))
        runs.append(Run({"run_id": f"{mixer}_s{seed}", "status": "done", "tuned": tuned,
                         "spec": spec(mixer, seed, lr, "final", ids),
                         "metrics": {"test/acc1": 95.0 + seed + (mixer == "conv")}}))
    return runs


def grid_runs(conv_chosen=(1e-2, 1e-2)):
    att, conv = tuning_runs("attention"), tuning_runs("conv")
    return att + conv + final_runs("attention", att, (3e-3, 3e-3)) + final_runs("conv", conv, conv_chosen)


def test_the_chosen_values_are_a_column_and_tuning_runs_no_rows():
    report = summarize(grid_runs())  # axes inferred from the records: lr and tune_from are no axes
    assert report.axes == ["model.mixer"] and len(report.groups) == 2 and len(report.tuning) == 12
    md = render(report, "md")
    assert md.splitlines()[0].startswith("| mixer | lr (tuned) | test top-1 (%) | n |")
    assert md.splitlines()[2].startswith("| attention | 0.003 | ")
    conv = md.splitlines()[3]
    assert conv.startswith("| conv | 0.01 [1] | ")
    assert "[1] lr 0.01 is the largest value tuned: widen the range" in md
    assert "(tuned): the value each row's tuning chose on val/acc1." in md
    rows = list(csv.DictReader(io.StringIO(render(report, "csv"))))
    assert [(r["mixer"], r["lr_tuned"]) for r in rows] == [("attention", "0.003"), ("conv", "0.01")]


def test_seeds_that_chose_differently_show_every_value():
    md = render(summarize(grid_runs(conv_chosen=(3e-3, 1e-2))), "md")
    assert md.splitlines()[3].startswith("| conv | 0.003, 0.01 [1] | ")


def test_tuning_png_draws_the_tuning_runs(tmp_path):
    report = summarize(grid_runs())
    names = {p.name for p in write(report, tmp_path)}
    assert {"tuning.png", "tuning.svg", "table.md"} <= names
    assert (tmp_path / "tuning.png").read_bytes()[:4] == b"\x89PNG"
    svg = (tmp_path / "tuning.svg").read_text()
    assert "per-variant tuning" in svg and "train.lr (tuned)" in svg and "mixer=conv" in svg
    assert "10^{-3}" in svg and "10^{-2}" in svg  # a log axis for the learning rate
    # without tuning runs there is no tuning figure
    plain = summarize([r for r in grid_runs() if r.stage != "tune"])
    assert "tuning.png" not in {p.name for p in write(plain, tmp_path / "plain")}
