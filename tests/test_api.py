"""vitstudy from Python: `import vitstudy` stays cheap; run_grid is `vitstudy run-grid` (it trains what is
pending, skips what is done, writes the report, leaves this process as it found it) and refuses what the
command refuses, with the command's words, before anything is written."""

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import warnings

import pytest

import vitstudy
from vitstudy.cli import main


def test_import_vitstudy_imports_neither_torch_nor_pandas():
    code = ("import sys, vitstudy; vitstudy.load_results, vitstudy.load_table, vitstudy.run_grid; "
            "sys.exit(('torch' in sys.modules) * 1 + ('pandas' in sys.modules) * 2)")
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        vitstudy.nope  # noqa: B018


def files(folder):
    """metrics.json of every run folder: (modification time, bytes)."""
    return {p.parent.name: (p.stat().st_mtime_ns, p.read_bytes()) for p in folder.glob("*/metrics.json")}


def test_run_grid_trains_the_pending_cells_and_then_skips_everything(trained_grid, tmp_path, capsys):
    import matplotlib.pyplot as plt

    manifest, trained = trained_grid
    out = tmp_path / "results"
    shutil.copytree(trained, out)  # 4 cells done; a third seed adds 2 pending cells
    more = tmp_path / "more.yaml"
    more.write_text(manifest.read_text().replace("seeds: [0, 1]", "seeds: [0, 1, 2]"))
    folder = out / "tiny-smoke"
    before = files(folder)
    handler = lambda signum, frame: None  # noqa: E731
    old_handler, old_backend = signal.signal(signal.SIGTERM, handler), plt.get_backend()
    plt.switch_backend("svg")  # a notebook's backend, which the report's plots would switch to Agg
    env, rng, filters = dict(os.environ), random.getstate(), list(warnings.filters)
    try:
        frame = vitstudy.run_grid(more, out, smoke=True, workers=1)
        assert signal.getsignal(signal.SIGTERM) is handler and plt.get_backend() == "svg"
        assert dict(os.environ) == env and random.getstate() == rng and warnings.filters == filters
    finally:
        signal.signal(signal.SIGTERM, old_handler)
        plt.switch_backend(old_backend)
    printed = capsys.readouterr().out
    assert "2 done, 4 skipped (done before)" in printed and "| gap |" in printed  # the command's summary, table
    assert frame.attrs["status"] == 0 and len(frame) == 6 and (frame.status == "done").all()
    after = files(folder)
    assert {k: after[k] for k in before} == before  # the finished cells were not touched
    for new in set(after) - set(before):
        row = frame.set_index("run_id").loc[new]
        assert row["test/acc1"] == json.loads(after[new][1])["metrics"]["test/acc1"] and row.seed == 2
    table = vitstudy.load_table(folder)
    assert list(table.n_done) == [3, 3] and list(table["test/acc1_n"]) == [3, 3]
    assert "n_done" in (folder / "table.csv").read_text() and (folder / "table.csv").stat().st_mtime_ns > max(
        t for t, _ in after.values()) - 1  # the report was written after the cells

    again = vitstudy.run_grid(more, out, smoke=True, workers=1)
    assert "6 skipped (done before)" in capsys.readouterr().out
    assert files(folder) == after and again.attrs["status"] == 0
    assert again.drop(columns=["wall_time_s"]).equals(frame.drop(columns=["wall_time_s"]))


def test_what_the_command_refuses_raises_its_message_and_nothing_is_written(write_manifest, tiny_grid, tmp_path,
                                                                          capsys):
    bad = write_manifest(tiny_grid.replace("[cls, gap]", "[cls, gapp]"), "bad.yaml")
    good = write_manifest(tiny_grid, "good.yaml")
    out = tmp_path / "out"
    assert main(["run-grid", str(bad), "--out", str(out)]) == 2
    said = capsys.readouterr().err.strip()
    assert f"{bad}:9: grid.model.head[1]: unknown head 'gapp'" in said  # file, line, key path
    with pytest.raises(vitstudy.GridError) as refused:
        vitstudy.run_grid(bad, out)
    assert str(refused.value) == said and isinstance(refused.value, ValueError)
    assert [(p.path, p.line) for p in refused.value.problems] == [("grid.model.head[1]", 9)]
    with pytest.raises(vitstudy.GridError) as refused:
        vitstudy.load_results(bad, out)
    assert str(refused.value) == said

    assert main(["run-grid", str(good), "--out", str(out), "--partition", "gpu"]) == 2
    said = capsys.readouterr().err.strip()
    with pytest.raises(vitstudy.GridError) as refused:
        vitstudy.run_grid(good, out, partition="gpu")
    assert f"vitstudy: error: {refused.value}" == said == "vitstudy: error: --partition applies to --backend slurm, not local"
    assert capsys.readouterr().err == ""  # the exception says it, not a line on stderr as well
    with pytest.raises(vitstudy.GridError, match=r"^argument --workers: '0' is not a positive integer$"):
        vitstudy.run_grid(good, out, workers=0)
    with pytest.raises(TypeError, match="unexpected keyword argument 'worker'"):
        vitstudy.run_grid(good, out, worker=2)
    assert not out.exists()
