"""How `vitstudy run-grid` shows progress: a live display (rich) in a terminal, read from a pseudo-terminal
while the real command trains a grid in spawned workers (a pack and a Lightning cell); one line per event,
byte for byte as before, when stdout is not a terminal; neither with --quiet."""

import json
import os
import pty
import re
import select
import struct
import subprocess
import sys
import time

from vitstudy.cli import main
from vitstudy.config.manifest import load
from vitstudy.grid.progress import duration

ONE_THREAD = {**os.environ, "OMP_NUM_THREADS": "1"}  # subprocesses: no thread oversubscription on 2 cores
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b\][^\x07]*\x07")  # cursor moves, colours, titles

# three cells in two units: a pack of two (cls at a sane lr and at one that diverges) and gap trained alone
# by Lightning; batches of 8 make an epoch (~160 steps) long enough for the display to show it
LIVE = """\
name: live
defaults:
  model: {preset: vit_micro, embed_dim: 32, depth: 2, num_heads: 2}
  data: {dataset: digits, batch_size: 8}
  train: {epochs: 2, lr: 3.0e-3}
grid:
  - {model.head: [cls], train.lr: [3.0e-3, 1.0e+30]}
  - {model.head: [gap]}
seeds: [0]
"""
PLAIN = """\
name: plain
defaults:
  model: {preset: vit_micro, embed_dim: 32, depth: 2, num_heads: 2}
  data: {dataset: digits, batch_size: 256}
  train: {epochs: 1}
grid:
  train.lr: [3.0e-3, 1.0e+30]
seeds: [0]
"""


def in_a_terminal(argv: list[str], timeout: float = 240) -> tuple[int, str]:
    """Run `vitstudy argv` with a pseudo-terminal (160×40) as stdin, stdout and stderr; its exit status
    and everything it wrote, escape sequences removed."""
    import fcntl
    import termios

    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 160, 0, 0))
    proc = subprocess.Popen([sys.executable, "-m", "vitstudy.cli", *argv], stdin=slave, stdout=slave,
                            stderr=slave, env={**ONE_THREAD, "TERM": "xterm-256color"}, close_fds=True)
    os.close(slave)
    chunks, deadline = [], time.time() + timeout
    try:
        while time.time() < deadline:
            if select.select([master], [], [], 0.5)[0]:
                try:
                    data = os.read(master, 1 << 16)
                except OSError:  # EIO: every process holding the terminal has closed it
                    break
                if not data:
                    break
                chunks.append(data)
            elif proc.poll() is not None:
                break
    finally:
        proc.kill()
        os.close(master)
    return proc.wait(), ANSI.sub("", b"".join(chunks).decode(errors="replace"))


def test_a_terminal_shows_the_grid_and_each_cells_epochs_live(tmp_path):
    (tmp_path / "live.yaml").write_text(LIVE)
    grid = load(tmp_path / "live.yaml")
    ok, diverge, alone = (c.run_id for c in grid.cells)
    status, text = in_a_terminal(["run-grid", str(tmp_path / "live.yaml"), "--out", str(tmp_path / "results"),
                                  "--workers", "2"])
    assert status == 1, text  # the diverged cell

    bar = re.findall(r"\[live\] \S+ (\d)/3 done · \d running · (\d) failed", text)  # frame by frame
    ended = [int(done) + int(failed) for done, failed in bar]
    assert ended[0] == 0 and ended[-1] == 3 and ended == sorted(ended), ended
    for run_id in (ok, alone):  # a pack's member and a Lightning cell, each in a spawned worker
        epochs = [int(e) for e in re.findall(rf"{re.escape(run_id)}\s+\S+ epoch (\d)/2 · step \d+ · loss \d", text)]
        assert epochs[0] == 1 and epochs[-1] == 2 and epochs == sorted(epochs), (run_id, epochs, text)
    assert re.search(rf"{re.escape(ok)}\s+\S+ epoch 2/2 · step \d+ · loss [\d.]+ · val/acc1 [\d.]+%", text), text
    assert re.search(rf"{re.escape(diverge)}\s+\S+ diverged; its pack trains on", text), text
    assert f"✗ {diverge} diverged: non-finite training loss" in text  # listed once its pack ended
    assert "→" not in text and "✓" not in text  # no event lines: the display replaces them
    table = text.index("| head | lr | test top-1 (%)")  # the table, once the display is done
    assert text.rindex("2/3 done · 0 running · 1 failed") < table and "2 done, 1 diverged in" in text[table:]
    for cell in grid.cells:  # the cells trained as ever
        record = json.loads((grid.cell_dir(tmp_path / "results", cell) / "metrics.json").read_text())
        assert record["status"] == ("diverged" if cell.run_id == diverge else "done")


def test_not_a_terminal_gets_one_line_per_event_as_before(tmp_path, capsys):
    """Byte for byte the lines run-grid always printed to a pipe or a log: the grid's counts and its ETA
    (the median wall time of the finished cells × the cells left), then → for a start, ✓ / ✗ for an end."""
    (tmp_path / "plain.yaml").write_text(PLAIN)
    out = tmp_path / "results"
    assert main(["run-grid", str(tmp_path / "plain.yaml"), "--out", str(out), "--pack", "off"]) == 1
    printed = capsys.readouterr().out
    grid = load(tmp_path / "plain.yaml")
    ok, diverge = (json.loads((grid.cell_dir(out, c) / "metrics.json").read_text()) for c in grid.cells)
    assert (ok["status"], diverge["status"]) == ("done", "diverged")
    wall, acc = duration(ok["wall_time_s"]), ok["metrics"]["test/acc1"]
    assert printed.splitlines()[:7] == [
        f"grid 'plain': 2 cells -> {out / 'plain'}",
        "[plain] 0/2 done · 0 running · 0 failed",
        f"[plain] 0/2 done · 1 running · 0 failed  → {ok['run_id']}",
        f"[plain] 1/2 done · 0 running · 0 failed · ETA {wall}  ✓ {ok['run_id']}: test/acc1 {acc:.2f}% in {wall}",
        f"[plain] 1/2 done · 1 running · 0 failed · ETA {wall}  → {diverge['run_id']}",
        f"[plain] 1/2 done · 0 running · 1 failed  ✗ {diverge['run_id']} diverged: {diverge['error']['message']}",
        "",  # then the table
    ], printed
    assert "\x1b[" not in printed  # no escape sequences in a log


def test_quiet_prints_failures_the_table_and_the_summary_only(tmp_path, capsys):
    (tmp_path / "plain.yaml").write_text(PLAIN)
    out = tmp_path / "results"
    assert main(["run-grid", str(tmp_path / "plain.yaml"), "--out", str(out), "--pack", "off", "--quiet"]) == 1
    lines = capsys.readouterr().out.splitlines()
    diverge = load(tmp_path / "plain.yaml").cells[1].run_id
    assert lines[0].startswith(f"✗ {diverge} diverged: non-finite training loss"), lines
    assert lines[1] == "" and lines[2].startswith("| lr | test top-1 (%)")  # then the table as ever
    assert lines[-1].startswith("1 done, 1 diverged in") and "report written to" in lines[-1]
    assert not [line for line in lines if line.startswith("[plain]") or "→" in line or "✓" in line]
