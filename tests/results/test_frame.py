"""Results as DataFrames (vitstudy.load_results, vitstudy.load_table) on a grid the suite trains once
(conftest's trained_grid): the runs frame's values are the metrics files', a manifest's pending cells are
rows, and the table frame's numbers are the ones `vitstudy report` writes to table.csv."""

import csv
import json
import math
from pathlib import Path

import pandas as pd
import pytest

import vitstudy
from vitstudy.cli import main
from vitstudy.config.manifest import load


def records(folder: Path) -> dict[str, dict]:
    return {p.parent.name: json.loads(p.read_text()) for p in folder.glob("*/metrics.json")}


def test_a_results_folders_frame_holds_the_metrics_files_values(trained_grid):
    _, out = trained_grid
    folder = out / "tiny-smoke"
    frame = vitstudy.load_results(folder)
    recs = records(folder)
    assert sorted(frame.run_id) == sorted(recs) and len(recs) == 4
    assert list(frame.columns[:3]) == ["model.head", "seed", "status"]  # the axis that varies comes first
    for _, row in frame.iterrows():
        rec = recs[row.run_id]
        assert Path(row.path) == folder / row.run_id
        assert (row.status, row.seed, row["model.head"]) == ("done", rec["spec"]["seed"], rec["spec"]["model"]["head"])
        assert {k: row[k] for k in rec["metrics"]} == rec["metrics"]  # test/acc1, test/loss, val/acc1, ...
        assert {k: row[f"best:{k}"] for k in rec["best"]} == rec["best"]  # best:epoch too
        assert {k: row[k] for k in ("params", "macs", "train_img_s", "infer_img_s", "peak_mem_mib")} == {
            k: rec["cost"][k] for k in ("params", "macs", "train_img_s", "infer_img_s", "peak_mem_mib")}
        assert row.wall_time_s == rec["wall_time_s"]
        assert row.finished_at == pd.Timestamp(rec["finished_at"])
        assert (row["model.embed_dim"], row["data.train_subset"], row["train.lr"]) == (32, 128, 3e-3)  # the spec
    assert {k: str(frame[k].dtype) for k in ("test/acc1", "best:test/acc1", "params", "seed", "best:epoch")} == {
        "test/acc1": "float64", "best:test/acc1": "float64", "params": "Int64", "seed": "Int64",
        "best:epoch": "Int64"}
    assert str(frame.finished_at.dtype).endswith(", UTC]")
    assert frame.attrs["folder"] == str(folder)
    lean = vitstudy.load_results(folder, spec=False)
    assert list(lean.columns) == list(frame.columns[:list(frame.columns).index("path") + 1])


def test_a_manifests_frame_has_a_row_per_cell_pending_ones_too(trained_grid, write_manifest):
    manifest, out = trained_grid
    more = write_manifest(manifest.read_text().replace("seeds: [0, 1]", "seeds: [0, 1, 2]"))
    frame = vitstudy.load_results(more, out, smoke=True)
    cells = load(more, smoke=True).cells
    assert list(frame.run_id) == [c.run_id for c in cells]  # the manifest's order
    pending = frame[frame.seed == 2]
    assert list(pending.status) == ["pending", "pending"] and list(pending["model.head"]) == ["cls", "gap"]
    assert pending["test/acc1"].isna().all() and pending["params"].isna().all()
    assert not any(Path(p).exists() for p in pending.path)
    done = frame[frame.seed < 2].set_index("run_id")
    assert (done.status == "done").all()
    recs = records(out / "tiny-smoke")
    assert {i: done.loc[i, "test/acc1"] for i in done.index} == {i: r["metrics"]["test/acc1"] for i, r in recs.items()}
    assert (vitstudy.load_results(more, out).status == "pending").all()  # without smoke: the full grid, not run


def same(csv_value: str, value) -> bool:
    """A table.csv cell (6 decimals, p to 6 significant digits, flags 0/1, empty: none) against a frame's."""
    if csv_value == "":
        return value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value))
    if isinstance(value, str):
        return csv_value == value
    return float(csv_value) == pytest.approx(float(value), rel=1e-5, abs=1e-6)


def assert_equals_csv(table: pd.DataFrame, path: Path) -> None:
    rows = list(csv.DictReader(path.open()))
    assert len(rows) == len(table) > 0
    name = {c: c.rsplit(".", 1)[-1] for c in table.columns if c.startswith("model.")}  # axes: CSV's short names
    assert [name.get(c, c) for c in table.columns] == list(rows[0])  # the same columns, in the same order
    for row, (_, frame_row) in zip(rows, table.iterrows(), strict=True):
        for column in table.columns:
            assert same(row[name.get(column, column)], frame_row[column]), (column, row, frame_row[column])


def test_the_table_frames_numbers_are_table_csvs(trained_grid):
    manifest, out = trained_grid
    table = vitstudy.load_table(manifest, out, smoke=True)
    assert_equals_csv(table, out / "tiny-smoke" / "table.csv")  # written by run-grid
    gap = table.iloc[1]
    assert (gap["model.head"], gap.baseline, gap["test/acc1_n"], gap["test/acc1_test"]) == ("gap", False, 2, "paired")
    assert 0 <= gap["test/acc1_p"] <= 1 and gap["test/acc1_delta_lo"] < gap["test/acc1_delta"] < gap["test/acc1_delta_hi"]
    assert table["test/acc1_significant"].dtype == "boolean" and table["test/acc1_significant"].isna().tolist() == [True, False]


def test_metrics_and_baseline_as_the_report_takes_them(trained_grid, tmp_path, capsys):
    _, out = trained_grid
    folder = out / "tiny-smoke"
    assert main(["report", str(folder), "--metrics", "test/loss,val/acc1", "--baseline", "head=gap",
                 "--to", str(tmp_path), "--no-plots"]) == 0
    capsys.readouterr()
    for baseline in ("head=gap", {"model.head": "gap"}):
        table = vitstudy.load_table(folder, metrics=["test/loss", "val/acc1"], baseline=baseline)
        assert list(table.baseline) == [False, True]
        assert_equals_csv(table, tmp_path / "table.csv")


def test_a_folder_without_runs_is_refused_as_the_report_refuses_it(tmp_path):
    with pytest.raises(ValueError, match=r"no run folders with a metrics.json"):
        vitstudy.load_results(tmp_path)
