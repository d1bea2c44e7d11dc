"""Faults while a grid runs, made real, each at a chosen moment: a full disk (a small tmpfs the test mounts,
filled to its last byte just before a given write), a results folder that turns read-only (a read-only
bind mount over it), files cut short (truncated, as an unfinished copy leaves them). After each fault: a
clear message naming the file and the errno, the exit status, no traceback, every record on disk readable
and the finished ones unchanged byte for byte; then the same command without the fault completes the
grid. (A tracker that fails mid-run: tests/training/test_trackers.py.)

The mounts need root with CAP_SYS_ADMIN, which CI has (.ci/run runs as root): without it these tests
fail, saying so, rather than skip.
"""

import errno
import json
import os
import re
import subprocess
import zipfile
from pathlib import Path

import pytest
import torch
from lightning.pytorch.callbacks import Callback

import vitstudy.results.write as report_files
from vitstudy import runfolder
from vitstudy.cli import main
from vitstudy.config.manifest import load
from vitstudy.grid.executors.worker import Terminated
from vitstudy.training import pack_checkpoint
from vitstudy.training.run import AtomicCheckpointIO, run_cell

SMALL = "smoke:\n  data: {train_subset: 128}\n"  # --smoke: 2 epochs of one batch, about a second a cell
FOLDER = "tiny-smoke"
CLS, GAP = "head-cls_s0", "head-gap_s0"  # the tiny grid's cells, in the order they train


class Grid:
    """The tiny grid (cells CLS, then GAP) at --smoke size, run in this process."""

    def __init__(self, tmp_path: Path, text: str, out: Path):
        self.manifest = tmp_path / "tiny.yaml"
        self.manifest.write_text(text + SMALL)
        self.out = out
        grid = load(self.manifest, smoke=True)
        self.cells = {c.run_id.rsplit("-", 1)[0]: c for c in grid.cells}  # CLS: the cell
        self.dirs = {name: grid.cell_dir(out, c) for name, c in self.cells.items()}

    def run(self, capsys, command: str = "run-grid") -> tuple[int, str, str]:
        """`vitstudy run-grid` (cells in this process), `plan` or `report` (of the grid's folder): the exit
        status, stdout and stderr, which hold no traceback."""
        argv = {"run-grid": ["run-grid", str(self.manifest), "--smoke", "--workers", "1", "--out", str(self.out)],
                "plan": ["plan", str(self.manifest), "--smoke", "--out", str(self.out)],
                "report": ["report", str(self.out / FOLDER)]}[command]
        status = main(argv)
        got = capsys.readouterr()
        assert "Traceback" not in got.out + got.err, got.err
        return status, got.out, got.err

    def records(self) -> dict[str, bytes]:
        """Every metrics.json under the results root, by its run folder, after checking that each parses
        and that no temporary file of a write was left behind."""
        assert not list(self.out.rglob("*.tmp"))
        found = {p.parent.name: p.read_bytes() for p in self.out.rglob("metrics.json")}
        for data in found.values():
            json.loads(data)
        return found

    def record(self, name: str) -> dict:
        return json.loads((self.dirs[name] / "metrics.json").read_text())


@pytest.fixture
def mounts(tmp_path):
    """mounts.tmpfs(path) / mounts.read_only(path) / mounts.undo(path); whatever is still mounted when the
    test ends is unmounted."""
    held: list[Path] = []

    class Mounts:
        def tmpfs(self, path: Path, size: str = "16m") -> Path:
            path.mkdir(parents=True, exist_ok=True)
            self._mount(path, "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path))
            return path

        def read_only(self, path: Path) -> None:
            self._mount(path, "--bind", str(path), str(path))
            self._mount(None, "-o", "remount,bind,ro", str(path))

        def undo(self, path: Path) -> None:
            subprocess.run(["umount", str(path)], check=True)
            held.remove(path)

        def _mount(self, path: Path | None, *args: str) -> None:
            done = subprocess.run(["mount", *args], capture_output=True, text=True)
            if done.returncode:
                pytest.fail(f"`mount {' '.join(args)}` failed: {done.stderr.strip()}. The fault tests make a full "
                            "disk and a read-only folder with a tmpfs and a bind mount, which needs root with "
                            "CAP_SYS_ADMIN (CI runs as root)", pytrace=False)
            if path is not None:
                held.append(path)

    yield Mounts()
    for path in reversed(held):
        subprocess.run(["umount", str(path)], check=False)


def fill(disk: Path) -> None:
    """Fill the tmpfs at `disk` to its last byte: from now on a write there fails with ENOSPC."""
    fd = os.open(disk / "filler", os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    try:
        size = 1 << 20
        while size:
            try:
                os.write(fd, bytes(size))
            except OSError as e:
                assert e.errno == errno.ENOSPC, e
                size //= 16
    finally:
        os.close(fd)


def before(monkeypatch, owner, name: str, when, fault) -> None:
    """Make `fault()` happen just before the first call of owner.name whose arguments satisfy `when`."""
    original, armed = getattr(owner, name), [True]

    def wrapped(*args, **kwargs):
        if armed[0] and when(*args, **kwargs):
            armed[0] = False
            fault()
        return original(*args, **kwargs)

    monkeypatch.setattr(owner, name, wrapped)


def sigterm() -> None:
    """What `kill` does to a run-grid (vitstudy.grid.executors.worker.on_sigterm): the cell stops, resumable."""
    raise Terminated("signal 15")


def checkpoint_of(cell: str, epoch: int):
    """`when` for AtomicCheckpointIO.save_checkpoint: the cell's last.ckpt after `epoch` (from 0)."""
    return lambda io, ckpt, path, *rest, **options: (Path(path).name == "last.ckpt" and ckpt["epoch"] == epoch
                                                     and Path(path).parent.name.startswith(f"{cell}-"))


def test_a_full_disk_mid_cell_stops_the_grid_and_the_next_run_resumes_the_cell(tmp_path, tiny_grid, mounts,
                                                                                monkeypatch, capsys):
    disk = mounts.tmpfs(tmp_path / "disk")
    grid = Grid(tmp_path, tiny_grid, disk / "results")
    before(monkeypatch, AtomicCheckpointIO, "save_checkpoint", checkpoint_of(GAP, 1), lambda: fill(disk))
    status, out, err = grid.run(capsys)
    gap = grid.dirs[GAP]
    assert status == 1, out
    assert f"stopped at {gap.name}: cannot write {gap / 'last.ckpt'}: No space left on device (ENOSPC)" in err, out
    assert "run the same command again" in err
    records = grid.records()
    assert grid.record(CLS)["status"] == "done"
    assert grid.record(GAP)["status"] == "running"  # not "failed": the disk's fault, not the cell's
    assert torch.load(gap / "last.ckpt", weights_only=True)["epoch"] == 0  # the one before, whole

    (disk / "filler").unlink()
    status, out, _ = grid.run(capsys)
    assert status == 0 and "1 done, 1 skipped (done before)" in out
    assert grid.records()[grid.dirs[CLS].name] == records[grid.dirs[CLS].name]  # byte for byte
    resumed = grid.record(GAP)
    assert resumed["status"] == "done" and resumed["attempt"] == 2
    assert resumed["resumed_from"]["epoch"] == 0
    assert (grid.out / FOLDER / "report.html").is_file()


def test_a_full_disk_at_the_record_leaves_it_running_and_the_next_run_rebuilds_it(tmp_path, tiny_grid, mounts,
                                                                                  monkeypatch, capsys):
    disk = mounts.tmpfs(tmp_path / "disk")
    grid = Grid(tmp_path, tiny_grid, disk / "results")
    lost = []  # the finished record the full disk refused

    def finished(run_dir, record) -> bool:
        lost.append(record)
        return record["status"] == "done"

    before(monkeypatch, runfolder, "write_record", finished, lambda: fill(disk))
    status, _, err = grid.run(capsys)
    cls = grid.dirs[CLS]
    assert status == 1
    assert f"stopped at {cls.name}: cannot write {cls / 'metrics.json'}: No space left on device (ENOSPC)" in err
    grid.records()
    assert grid.record(CLS)["status"] == "running"  # the record before, whole; never "failed"
    assert not (grid.dirs[GAP] / "metrics.json").exists()  # the grid stopped there

    (disk / "filler").unlink()
    status, out, _ = grid.run(capsys)
    assert status == 0 and "2 done" in out
    rebuilt = grid.record(CLS)
    assert rebuilt["status"] == "done" and rebuilt["resumed_from"]["epoch"] == 1  # its last epoch: no training
    assert rebuilt["metrics"] == lost[-1]["metrics"] and rebuilt["best"] == lost[-1]["best"]
    assert grid.record(GAP)["status"] == "done"


def test_a_full_disk_mid_report_leaves_whole_files_and_the_next_run_writes_the_report(tmp_path, tiny_grid, mounts,
                                                                                     monkeypatch, capsys):
    disk = mounts.tmpfs(tmp_path / "disk")
    grid = Grid(tmp_path, tiny_grid, disk / "results")
    folder = grid.out / FOLDER
    before(monkeypatch, report_files, "plot_all", lambda *args: True, lambda: fill(disk))  # after the tables
    status, _, err = grid.run(capsys)
    assert status == 1
    assert (f"report not finished: cannot write {folder / 'accuracy_vs_cost.png'}: No space left on device "
            "(ENOSPC)") in err
    records = grid.records()
    assert [json.loads(r)["status"] for r in records.values()] == ["done", "done"]
    assert "| cls |" in (folder / "table.md").read_text()  # written before the disk filled, whole
    assert not (folder / "accuracy_vs_cost.png").exists() and not (folder / "report.html").exists()

    (disk / "filler").unlink()
    status, out, _ = grid.run(capsys)
    assert status == 0 and "2 skipped (done before)" in out
    assert grid.records() == records
    assert (folder / "accuracy_vs_cost.png").stat().st_size > 0 and (folder / "report.html").is_file()


def test_a_results_folder_that_turns_read_only_stops_the_grid_and_the_next_run_completes_it(
        tmp_path, tiny_grid, mounts, monkeypatch, capsys):
    grid = Grid(tmp_path, tiny_grid, tmp_path / "results")
    folder = grid.out / FOLDER
    before(monkeypatch, AtomicCheckpointIO, "save_checkpoint", checkpoint_of(GAP, 0),
           lambda: mounts.read_only(folder))
    status, _, err = grid.run(capsys)
    gap = grid.dirs[GAP]
    assert status == 1
    assert f"stopped at {gap.name}: cannot write {gap / 'last.ckpt'}: Read-only file system (EROFS)" in err, err
    records = grid.records()
    assert grid.record(CLS)["status"] == "done" and grid.record(GAP)["status"] == "running"

    status, _, err = grid.run(capsys)  # still read-only: said again, nothing changed
    assert status == 1
    assert re.search(rf"stopped at {gap.name}: cannot write {re.escape(str(gap))}/\S+: Read-only file system "
                     r"\(EROFS\)", err), err
    assert grid.records() == records

    mounts.undo(folder)
    status, out, _ = grid.run(capsys)
    assert status == 0 and "1 done, 1 skipped (done before)" in out
    assert grid.records()[grid.dirs[CLS].name] == records[grid.dirs[CLS].name]
    again = grid.record(GAP)
    assert again["status"] == "done" and again["attempt"] == 2 and again["resumed_from"] is None


class Boom(Callback):
    def on_fit_start(self, *args) -> None:
        raise RuntimeError("boom")


def test_files_cut_short_are_reported_then_recovered_and_a_done_record_outlives_a_failed_attempt(
        tmp_path, tiny_grid, monkeypatch, capsys):
    grid = Grid(tmp_path, tiny_grid, tmp_path / "results")
    cls, gap = grid.dirs[CLS], grid.dirs[GAP]
    before(monkeypatch, AtomicCheckpointIO, "save_checkpoint", checkpoint_of(GAP, 1), sigterm)
    assert grid.run(capsys)[0] == 130  # cls done, gap interrupted after its first epoch
    original = grid.record(CLS)
    cut = (cls / "metrics.json").read_bytes()[:len((cls / "metrics.json").read_bytes()) // 2]
    (cls / "metrics.json").write_bytes(cut)  # as an unfinished copy leaves them
    (gap / "last.ckpt").write_bytes(b"")
    (gap / "best.ckpt").write_bytes((gap / "best.ckpt").read_bytes()[:1000])

    status, out, _ = grid.run(capsys, "plan")  # reported, not a crash
    assert status == 0 and out.splitlines()[-1] == "1 damaged, 1 interrupted"
    assert re.search(rf"damaged +{FOLDER}/{cls.name}", out) and re.search(rf"interrupted +{FOLDER}/{gap.name}", out)
    status, out, _ = grid.run(capsys, "report")
    assert status == 0
    with pytest.raises(json.JSONDecodeError) as cut_at:
        json.loads(cut)
    why = f"metrics.json cannot be read ({len(cut)} bytes, not JSON at byte {cut_at.value.pos})"
    assert f"1 damaged of 1 seeds, not in the mean ({why}" in out

    status, out, _ = grid.run(capsys)
    assert status == 0 and "2 done" in out
    assert f"↻ {cls.name}: {why}: set aside as metrics.json.damaged" in out
    assert f"↻ {gap.name}: last.ckpt cannot be read (empty, 0 bytes): removed" in out
    assert f"↻ {gap.name}: best.ckpt cannot be read (1000 bytes, cut short" in out
    rebuilt = grid.record(CLS)  # from its last checkpoint, at its last epoch: nothing retrained
    assert rebuilt["status"] == "done" and rebuilt["resumed_from"]["epoch"] == 1
    assert rebuilt["metrics"] == original["metrics"] and rebuilt["best"] == original["best"]
    assert rebuilt["recovered"] == [f"{why}: set aside as metrics.json.damaged, this attempt writes a new record"]
    assert (cls / "metrics.json.damaged").read_bytes() == cut
    restarted = grid.record(GAP)
    assert restarted["status"] == "done" and restarted["attempt"] == 2 and restarted["resumed_from"] is None
    assert [note.split(" ")[0] for note in restarted["recovered"]] == ["last.ckpt", "best.ckpt"]

    # a failed attempt on a finished cell (two processes, a caller of run_cell) leaves its record alone
    done = (cls / "metrics.json").read_bytes()
    failed = run_cell(grid.cells[CLS].spec, cls, callbacks=(Boom(),), progress=False)
    assert failed["status"] == "failed" and (cls / "metrics.json").read_bytes() == done


def test_a_pack_member_whose_checkpoint_is_cut_short_restarts_and_the_other_resumes(tmp_path, tiny_grid,
                                                                                     monkeypatch, capsys):
    grid = Grid(tmp_path, tiny_grid.replace("[cls, gap]", "[cls]").replace("seeds: [0]", "seeds: [0, 1]"),
                tmp_path / "results")  # two seeds of one model: one pack
    first, second = grid.dirs["head-cls_s0"], grid.dirs["head-cls_s1"]
    before(monkeypatch, pack_checkpoint, "save_member", lambda run_dir, state: state["epoch"] == 1, sigterm)
    assert grid.run(capsys)[0] == 130  # both members saved epoch 0, then the pack was stopped
    assert all("vitstudy_pack" in torch.load(d / "last.ckpt", weights_only=True) for d in (first, second))
    (first / "last.ckpt").write_bytes((first / "last.ckpt").read_bytes()[:5000])

    status, out, _ = grid.run(capsys)
    assert status == 0 and "2 done" in out
    assert f"↻ {first.name}: last.ckpt cannot be read (5000 bytes, cut short" in out
    restarted, resumed = grid.record("head-cls_s0"), grid.record("head-cls_s1")
    assert restarted["status"] == "done" and restarted["resumed_from"] is None and restarted["recovered"]
    assert resumed["status"] == "done" and resumed["resumed_from"]["epoch"] == 0 and "recovered" not in resumed
    assert "members" not in restarted["pack"]  # afresh, it trains alone: its epochs are not the other's
    assert resumed["pack"]["members"] == [second.name]


@pytest.mark.parametrize("data, why", [
    (b"", "empty, 0 bytes"),
    (b'{"schema": 2, "status": "do', "27 bytes, not JSON at byte 24"),  # the string left open
    ('{"status": "é"}'.encode("latin-1"), "15 bytes, not UTF-8 text"),
    (b"[1, 2]", "6 bytes, JSON but not a record"),
])
def test_a_record_that_cannot_be_read_is_a_damaged_record_that_says_why(tmp_path, data, why):
    (tmp_path / "metrics.json").write_bytes(data)
    record = runfolder.read_record(tmp_path)
    assert record["status"] == runfolder.DAMAGED and record["run_id"] == tmp_path.name
    assert record["error"]["message"].startswith(f"metrics.json cannot be read ({why}); run-grid sets it aside")


def test_a_checkpoint_cut_anywhere_is_found_and_a_whole_one_is_not(tmp_path):
    path = tmp_path / "last.ckpt"
    torch.save({"epoch": 0, "state_dict": {"w": torch.zeros(1000)}}, path)
    whole = path.read_bytes()
    assert runfolder.checkpoint_damage(path) is None and runfolder.checkpoint_damage(tmp_path / "none") is None
    for size in (0, 1, len(whole) // 2, len(whole) - 1):
        path.write_bytes(whole[:size])
        assert runfolder.checkpoint_damage(path) is not None, size
    with zipfile.ZipFile(path, "w") as z:  # whole, but not a checkpoint: the cell that reads it fails, and says so
        z.writestr("data.txt", "x")
    assert runfolder.checkpoint_damage(path) is None
