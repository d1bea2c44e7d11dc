"""Reports from results folders written here: every format's numbers against the metrics files,
failed/pending cells, reference Δ, LaTeX that parses, plots, a grid in progress (one tiny real run)."""

import csv
import io
import json
import re
import statistics
from pathlib import Path

import pytest
from scipy import stats

from vitstudy.cli import main
from vitstudy.config.manifest import parse
from vitstudy.results.render import render, tex_escape
from vitstudy.results.runs import runs_from_dir
from vitstudy.results.table import for_manifest, summarize

TINY_GRID = (Path(__file__).resolve().parents[1] / "manifests" / "tiny.yaml").read_text()

GRID = """
name: ab_grid
defaults:
  model: {preset: vit_micro, embed_dim: 32, depth: 2, num_heads: 2}
  data: {dataset: digits}
  train: {epochs: 3}
grid:
  model.head: [cls, gap]
  model.position: [learned, none]
seeds: [0, 1, 2]
expect:
  - match: {model.head: gap}
    test/acc1: 90.0
    source: "Someone et al. 2021, Table 2"
"""
ACC = {("cls", "learned"): [91.5, 93.25, 90.0], ("cls", "none"): [80.0, 84.5, 82.75],
       ("gap", "learned"): [96.0, 95.5, 97.25], ("gap", "none"): [88.0, 86.5, 89.0]}


def write_record(run_dir, cell, status="done", acc=None, best=None, params=1000, macs=5000):
    run_dir.mkdir(parents=True, exist_ok=True)
    rec = {"schema": 2, "run_id": run_dir.name, "status": status, "spec": cell.spec.model_dump(mode="json"),
           "metrics": {} if acc is None else {"test/acc1": acc, "test/acc5": 100.0, "test/loss": 0.5},
           "best": {} if best is None else {"epoch": 1, "test/acc1": best},
           "cost": {"params": params, "macs": macs, "train_img_s": 500.0, "infer_img_s": 2000.0}}
    if status != "done":
        rec["error"] = {"category": status, "type": "DivergedError", "message": "non-finite training loss"}
    (run_dir / "metrics.json").write_text(json.dumps(rec))


@pytest.fixture
def results(tmp_path, write_manifest):
    """A finished 2×2 grid with 3 seeds, except (cls, none): seed 1 diverged, seed 2 never ran."""
    manifest = write_manifest(GRID)
    grid = parse(GRID)
    for cell in grid.cells:
        key = (cell.spec.model.head, cell.spec.model.position)
        acc = ACC[key][cell.spec.seed]
        if key == ("cls", "none") and cell.spec.seed == 1:
            write_record(tmp_path / "out" / "ab_grid" / cell.run_id, cell, status="diverged", acc=0.0)
        elif not (key == ("cls", "none") and cell.spec.seed == 2):
            write_record(tmp_path / "out" / "ab_grid" / cell.run_id, cell, acc=acc, best=acc + 1)
    return manifest, tmp_path / "out"


def expected(key):
    vals = ACC[key][:1] if key == ("cls", "none") else ACC[key]
    return statistics.fmean(vals), (statistics.stdev(vals) if len(vals) > 1 else None)


def row_of(text, *labels, sep=" | "):
    return next(line for line in text.splitlines() if line.startswith("| " + sep.join(labels) + " |")
                or line.startswith(" & ".join(labels) + " &"))


def test_every_format_shows_the_mean_and_std_of_the_metrics_files(results):
    manifest, out = results
    report, _ = for_manifest(manifest, out)
    md, tex, html, table = (render(report, f) for f in ("md", "tex", "html", "csv"))
    rows = {(r["head"], r["position"]): r for r in csv.DictReader(io.StringIO(table))}
    for key in ACC:
        mean, std = expected(key)
        text = f"{mean:.2f}" if std is None else f"{mean:.2f} ± {std:.2f}"
        assert text in row_of(md, *key)
        assert text.replace("±", r"$\pm$") in row_of(tex, *key)
        assert text in html
        assert float(rows[key]["test/acc1_mean"]) == pytest.approx(mean, abs=1e-6)
        if std is not None:
            assert float(rows[key]["test/acc1_std"]) == pytest.approx(std, abs=1e-6)
        assert float(rows[key]["best:test/acc1_mean"]) == pytest.approx(mean + 1, abs=1e-6)
        assert rows[key]["params"] == "1000" and rows[key]["infer_img_s"] == "2000"
    # the baseline is the first row (cls, learned): Δ = difference of means, paired by seed (scipy's CI and p)
    base = expected(("cls", "learned"))[0]
    gap = expected(("gap", "learned"))[0]
    paired = stats.ttest_rel(ACC["gap", "learned"], ACC["cls", "learned"])
    lo, hi = paired.confidence_interval()
    assert float(rows["gap", "learned"]["test/acc1_delta"]) == pytest.approx(gap - base, abs=1e-6)
    assert float(rows["gap", "learned"]["test/acc1_p"]) == pytest.approx(paired.pvalue, rel=1e-5)
    cell = f"{gap - base:+.2f} [{lo:+.2f}, {hi:+.2f}]"
    assert f"| {cell} |" in row_of(md, "gap", "learned")
    assert cell in row_of(tex, "gap", "learned") and cell in html
    # the best set in every format: the top mean (gap, learned) and (cls, learned), not significantly worse
    # (paired p 0.084 after Holm); (gap, none) is (p 0.0013 × 2); (cls, none) has one seed: never marked
    assert f"**{gap:.2f} ± " in row_of(md, "gap", "learned") and f"**{base:.2f} ± " in row_of(md, "cls", "learned")
    assert "**" not in row_of(md, "gap", "none").split(" | ")[2] and "**" not in row_of(md, "cls", "none")
    assert rf"\textbf{{{gap:.2f}" in row_of(tex, "gap", "learned")
    assert f"<b>{gap:.2f} ± " in html and f"<b>{base:.2f} ± " in html
    assert [rows[k]["test/acc1_best"] for k in ACC] == ["1", "0", "1", "0"]


def test_failed_and_pending_seeds_are_counted_not_averaged(results):
    manifest, out = results
    report, _ = for_manifest(manifest, out)
    md = render(report, "md")
    row = row_of(md, "cls", "none")
    assert "80.00 [1]" in row and "| 1 |" in row  # the diverged seed's 0.0 is not in the mean
    assert "[1] 1 diverged, 1 pending of 3 seeds, not in the mean (non-finite training loss)" in md
    table = {(r["head"], r["position"]): r for r in csv.DictReader(io.StringIO(render(report, "csv")))}
    assert (table["cls", "none"]["n_done"], table["cls", "none"]["n_diverged"],
            table["cls", "none"]["n_pending"]) == ("1", "1", "1")
    # from the folder alone, the never-started seed is unknown, the diverged one still counted
    dir_md = render(summarize(runs_from_dir(out / "ab_grid")), "md")
    assert "1 diverged of 2 seeds" in dir_md


def test_reference_column_and_delta(results):
    manifest, out = results
    report, _ = for_manifest(manifest, out)
    md = render(report, "md")
    header = md.splitlines()[0]
    assert "| paper | Δ paper |" in header
    mean = expected(("gap", "none"))[0]
    assert f"| 90.00 [2] | {mean - 90.0:+.2f} |" in row_of(md, "gap", "none")
    assert "| – | – |" in row_of(md, "cls", "learned")  # no reference for cls
    assert "Someone et al. 2021, Table 2" in md
    rows = {(r["head"], r["position"]): r for r in csv.DictReader(io.StringIO(render(report, "csv")))}
    assert float(rows["gap", "none"]["test/acc1_delta_paper"]) == pytest.approx(mean - 90.0, abs=1e-6)


def test_latex_is_balanced_booktabs_with_escaped_underscores(results):
    manifest, out = results
    report, _ = for_manifest(manifest, out)
    tex = render(report, "tex")
    assert tex.isascii()
    begins, ends = re.findall(r"\\begin\{(\w+)\}", tex), re.findall(r"\\end\{(\w+)\}", tex)
    assert begins == ["table", "tabular"] and ends == ["tabular", "table"]
    assert tex.index(r"\toprule") < tex.index(r"\midrule") < tex.index(r"\bottomrule")
    assert r"\caption{ab\_grid}" in tex
    assert not re.search(r"(?<!\\)[_%&#](?![^$]*\$)", tex.replace(" & ", " ").replace(r"\&", ""))
    ncols = len(re.search(r"\\begin\{tabular\}\{(\w+)\}", tex).group(1))
    body = tex.split(r"\midrule")[1].split(r"\bottomrule")[0].strip().splitlines()
    assert len(body) == 4 and all(line.count(" & ") == ncols - 1 for line in body)
    assert tex.count("{") == tex.count("}")
    assert tex_escape("a_b 50% #1 & x^2 ~") == r"a\_b 50\% \#1 \& x\textasciicircum{}2 \textasciitilde{}"
    assert tex_escape("p <0.001, >1000, α, |Δ|") == r"p $<$0.001, $>$1000, $\alpha$, \textbar{}$\Delta$\textbar{}"


def test_pivot_and_baseline(results, capsys):
    manifest, out = results
    assert main(["report", str(manifest), "--out", str(out), "--cols", "position", "--no-plots"]) == 0
    md = capsys.readouterr().out
    assert md.splitlines()[0] == "| head | position=learned | position=none |"
    mean, std = expected(("gap", "none"))
    # the best set per column: learned holds both heads (paired p 0.084), none only gap (cls: one seed)
    assert row_of(md, "gap") == f"| gap | **96.25 ± 0.90** | **{mean:.2f} ± {std:.2f}** |"
    assert row_of(md, "cls") == "| cls | **91.58 ± 1.63** | 80.00 (n=1) [1] |"
    report, _ = for_manifest(manifest, out, baseline={"head": "gap", "position": "none"})
    md = render(report, "md")
    assert "| – | – | – |" in row_of(md, "gap", "none")
    paired = stats.ttest_rel(ACC["gap", "learned"], ACC["gap", "none"])
    lo, hi = paired.confidence_interval()
    holm = min(1.0, 2 * paired.pvalue)  # with (cls, learned), whose p is larger; (cls, none) is untested
    assert holm < 0.05 and stats.ttest_rel(ACC["cls", "learned"], ACC["gap", "none"]).pvalue > paired.pvalue
    assert (f"| {expected(('gap', 'learned'))[0] - mean:+.2f} [{lo:+.2f}, {hi:+.2f}]* | {holm:.3f} | – |"
            in row_of(md, "gap", "learned"))
    report, _ = for_manifest(manifest, out, rows=["position"])
    assert [g.label["model.position"] for g in report.groups] == ["learned", "learned", "none", "none"]


def test_plots_are_written_from_event_files(results):
    from torch.utils.tensorboard import SummaryWriter

    from vitstudy.results.runs import val_curve
    from vitstudy.results.write import write

    manifest, out = results
    run = next((out / "ab_grid").iterdir())
    writer = SummaryWriter(run / "tb")
    for epoch, acc in enumerate([20.0, 55.0, 70.0]):
        writer.add_scalar("epoch", epoch, global_step=10 * epoch + 9)
        writer.add_scalar("val/acc1", acc, global_step=10 * epoch + 9)
    writer.close()
    assert val_curve(run) == {0: 20.0, 1: 55.0, 2: 70.0}
    report, where = for_manifest(manifest, out)
    paths = write(report, where)
    names = {p.name for p in paths}
    assert {"accuracy_vs_cost.png", "accuracy_vs_cost.svg", "val_acc_vs_epoch.png", "val_acc_vs_epoch.svg",
            "table.md", "table.tex", "table.csv", "table.html"} <= names
    for p in paths:
        assert p.parent == out / "ab_grid" and p.stat().st_size > 500
    assert (where / "accuracy_vs_cost.png").read_bytes()[:4] == b"\x89PNG"
    svg = (where / "val_acc_vs_epoch.svg").read_text()
    assert "validation top-1 accuracy" in svg and "epoch" in svg and "head=cls" in svg


def test_a_metric_at_an_epoch_is_read_from_each_runs_event_files(results):
    """`val/acc1@epoch2`: the logged value at epoch 2 (counted from 1) of every seed, compared like any
    metric (how fast a variant gets there)."""
    from torch.utils.tensorboard import SummaryWriter

    manifest, out = results
    curves = {}
    for i, run in enumerate(sorted((out / "ab_grid").iterdir())):
        curve = [10.0 + i, 40.0 + 2 * i, 60.0 + 3 * i]
        writer = SummaryWriter(run / "tb")
        for epoch, acc in enumerate(curve):
            writer.add_scalar("epoch", epoch, global_step=10 * epoch + 9)
            writer.add_scalar("val/acc1", acc, global_step=10 * epoch + 9)
        writer.close()
        curves[run.name] = curve
    report, _ = for_manifest(manifest, out, metrics=["val/acc1@epoch2", "test/acc1"])
    checked = 0
    for g in report.groups:
        expected = [curves[r.dir.name][1] for r in g.runs if r.status == "done"]
        assert g.values("val/acc1@epoch2") == expected and len(expected) == len(g.values("test/acc1"))
        checked += len(expected)
    assert checked == 10  # (cls, none) finished one seed
    assert report.groups[0].runs[0].value("val/acc1@epoch9") is None  # never logged
    md = render(report, "md")
    assert "val top-1 (%) @ epoch 2" in md.splitlines()[0]


def test_a_grid_in_progress_shows_done_and_pending_cells(tmp_path, write_manifest, capsys):
    """One tiny real run: the new metrics.json fields, then a report with one cell done, one pending."""
    from vitstudy.results.runs import val_curve
    from vitstudy.training.run import run_cell

    text = TINY_GRID.replace("epochs: 2", "epochs: 3").replace("log: {progress_bar: false}",
                                                               "log: {progress_bar: false, loggers: [csv]}")
    manifest = write_manifest(text)
    grid = parse(text)
    done = grid.cells[0]
    run_dir = tmp_path / "results" / "tiny" / done.run_id
    rec = run_cell(done.spec, run_dir)
    assert rec["status"] == "done" and rec["schema"] == 2
    curve = val_curve(run_dir)
    assert sorted(curve) == [0, 1, 2]
    assert rec["best"]["val/acc1"] == pytest.approx(max(curve.values()), abs=1e-4)
    assert curve[rec["best"]["epoch"]] == pytest.approx(rec["best"]["val/acc1"], abs=1e-4)
    assert {"test/acc1", "test/acc5", "test/loss", "val/acc5", "val/loss"} <= set(rec["best"])
    cost = rec["cost"]
    assert cost["train_img_s"] > 0 and cost["infer_img_s"] > 0 and cost["peak_mem_mib"] > 0
    env = rec["env"]
    assert env["device"] == "cpu" and env["device_count"] == 1 and env["precision"] == "32-true"
    assert env["attention_path"] == rec["attention_path"] in ("fused", "explicit")
    assert {"torch", "lightning", "timm", "commit", "dirty"} <= set(env)
    assert (run_dir / "csv" / "metrics.csv").stat().st_size > 0  # the extra logger; tb/ is still there
    assert list((run_dir / "tb").glob("events.out.tfevents.*"))

    assert main(["report", str(manifest), "--out", str(tmp_path / "results"), "--no-plots"]) == 0
    md = capsys.readouterr().out
    acc = rec["metrics"]["test/acc1"]
    assert f"| {acc:.2f} | 1 | – | – | – |" in row_of(md, "cls")  # one seed: untested, never in the best set
    assert "a row with one finished seed cannot be tested, never bold" in md
    test_size = rec["split_sizes"]["test"]
    assert f"Test split: {test_size} images (one image = {100 / test_size:.2f} points)." in md
    assert "| – [1] | 0 |" in row_of(md, "gap")
    assert "[1] 1 pending of 1 seeds" in md


def test_profile_of_a_manifest_measures_every_cell(write_manifest, capsys):
    from vitstudy.models.cost import model_cost

    text = TINY_GRID.replace("seeds: [0]", "seeds: [0, 1]")  # 4 cells, 2 rows: one model per row
    manifest = write_manifest(text)
    assert main(["profile", str(manifest), "--json", "--batch-size", "8", "--device", "cpu"]) == 0
    rows = json.loads(capsys.readouterr().out)
    cells = parse(text).cells[::2]  # seed 0 of each row
    assert [r["head"] for r in rows] == [c.spec.model.head for c in cells] == ["cls", "gap"]
    for row, cell in zip(rows, cells, strict=True):
        cost = model_cost(cell.spec.model)
        assert (row["params"], row["macs"]) == (cost.params, cost.macs)
        assert row["infer_img_s"] > 0 and row["train_img_s"] > 0 and row["batch_size"] == 8


def test_the_cost_table_of_a_manifest_as_markdown():
    from vitstudy.results.cost_table import CostTable, to_markdown

    table = CostTable("g", "cpu", ["head", "position"], [
        {"head": "cls", "position": None, "params": 5717416, "macs": 1253683200, "infer_img_s": 12345.6,
         "train_img_s": 999.4, "batch_size": 8, "device": "cpu", "peak_mem_mib": None}])
    assert to_markdown(table).splitlines() == [
        "grid 'g' on cpu: 1 cells (seeds aside), random images, no training",
        "| head | position | params | MACs | infer img/s | train img/s | batch |",
        "|---|---|---|---|---|---|---|",
        "| cls | None | 5.72M | 1.25G | 12,346 | 999 | 8 |"]


def test_optional_loggers_are_checked_before_anything_runs():
    import importlib.util

    from pydantic import ValidationError

    from vitstudy.config.spec import LogSpec

    assert LogSpec().loggers == ("tensorboard",)
    if importlib.util.find_spec("wandb") is None:
        with pytest.raises(ValidationError, match=r'pip install "vitstudy\[wandb\]"'):
            LogSpec(loggers=["wandb"])
