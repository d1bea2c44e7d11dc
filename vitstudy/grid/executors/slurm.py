"""Run a grid's pending cells on a SLURM cluster: one job array, submitted through submitit, one array
task per cell, at most `max_concurrent` tasks at once. Each task runs `worker.attempt` — the local
executor's code path: the cell's lock, skip when done, `training.run.run_cell`, resume from last.ckpt.

State lives in the results folder, not in the submitting process: `run-grid --backend slurm` submits
and exits, `vitstudy plan` shows progress, `--wait` follows the jobs until none is queued. The array's
job ids go to `<grid folder>/.slurm/jobs.json` (and submitit's logs beside it), so a second submission
leaves out the cells that a queued or running task will train; and should two tasks ever hold the same
cell (a submitter killed between sbatch and writing jobs.json, then run again), the cell lock lets one
train it and the other finds it locked or done.

Preemption and time limits: submitit asks SLURM for a signal (USR2) `signal_delay_s` before the end and
then requeues the task (`submitit.helpers.Checkpointable`); a task requeued any other way
(`scontrol requeue`, a node failure) gets SIGTERM, which ends the attempt as "interrupted" (the cell's
record still says running, its lock is released), and the requeued task resumes the cell from its
last.ckpt: its record then counts `attempt` 2 and names the checkpoint in `resumed_from`.

Multi-GPU cells: `gpus_per_cell` G > 1 asks for G tasks on one node with a GPU each, so that Lightning's
SLURM environment starts DDP with one process per GPU (the spec's `train.devices` must equal G); rank 0
holds the cell's lock and decides, the other ranks follow it.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from vitstudy import runfolder as files
from vitstudy import threads
from vitstudy.config.manifest import Cell, Grid
from vitstudy.grid.progress import count_key
from vitstudy.runfolder import FAILURES

JOBS_FILE = "jobs.json"


@dataclass(frozen=True)
class SlurmOptions:
    """The sbatch settings of one array (each maps to the sbatch option of the same name)."""

    partition: str | None = None          # --partition
    time_min: int = 60                    # --time (minutes)
    gpus_per_cell: int = 0                # --gpus-per-node; also --ntasks-per-node when > 1
    cpus_per_cell: int = 2                # --cpus-per-task (per GPU task when gpus_per_cell > 1)
    mem_gb: float | None = None           # --mem
    max_concurrent: int = 256             # --array=0-N%max_concurrent
    account: str | None = None            # --account
    qos: str | None = None                # --qos
    constraint: str | None = None         # --constraint
    signal_delay_s: int = 120             # --signal=USR2@S: time to checkpoint before a time limit
    extra: dict = field(default_factory=dict)  # any other sbatch option: {"mail-type": "END"}


def parse_time(text: str) -> int:
    """Minutes from sbatch's --time formats: M, M:S, H:M:S, D-H, D-H:M, D-H:M:S."""
    m = re.fullmatch(r"(?:(\d+)-)?(\d+)(?::(\d+))?(?::(\d+))?", text.strip())
    if not m:
        raise ValueError(f"--time {text!r}: use minutes or [D-]HH:MM:SS")
    days, a, b, c = (int(x) if x else None for x in m.groups())
    if days is not None:  # D-H[:M[:S]]
        return days * 1440 + a * 60 + (b or 0) + (1 if c else 0)
    if c is not None:      # H:M:S
        return a * 60 + b + (1 if c else 0)
    if b is not None:      # M:S
        return a + (1 if b else 0)
    return a


def available() -> bool:
    return shutil.which("sbatch") is not None and shutil.which("squeue") is not None


def jobs_dir(grid: Grid, out: Path) -> Path:
    return Path(out) / grid.folder / ".slurm"


def queued_ids() -> set[str]:
    """Ids ("123" and "123_4" forms) of every job SLURM still holds (pending, running, requeued)."""
    text = subprocess.run(["squeue", "-h", "-r", "-o", "%i %A"], capture_output=True, text=True,
                          check=True).stdout
    return {word for line in text.splitlines() for word in line.split()}


def in_queue(grid: Grid, out: Path) -> dict[str, str]:
    """run_id → SLURM job id, for the cells of this grid whose task SLURM still holds."""
    jobs = files.read_json(jobs_dir(grid, out) / JOBS_FILE) or {}
    if not jobs:
        return {}
    live = queued_ids()
    return {run_id: job for run_id, job in jobs.items() if job in live}


def pending_cells(grid: Grid, out: Path, retry_failed: bool) -> tuple[list[Cell], dict[str, str]]:
    """The cells to submit (not done, not failed unless retrying, not already queued) and the queued ones."""
    queued = in_queue(grid, out)
    todo = []
    for cell in grid.cells:
        status = files.status(grid.cell_dir(out, cell))
        if status == "done" or (status in FAILURES and not retry_failed) or cell.run_id in queued:
            continue
        todo.append(cell)
    return todo, queued


def submit(grid: Grid, out: Path, options: SlurmOptions, retry_failed: bool = False,
           echo: Callable[[str], None] = print) -> dict[str, str]:
    """Submit one array for the pending cells (two when some wait for others: phase 2, tuned grids'
    final cells); return run_id → job id of the new tasks."""
    out = Path(out).resolve()
    todo, queued = pending_cells(grid, out, retry_failed)
    if queued:
        echo(f"{len(queued)} cell(s) already queued or running on SLURM (not submitted again)")
    if not todo:
        echo("nothing to submit")
        return {}
    g = options.gpus_per_cell
    wrong = [c.run_id for c in todo if g > 1 and c.spec.train.devices != g]
    if wrong:  # Lightning starts one DDP process per SLURM task: tasks, GPUs and devices must agree
        raise ValueError(f"--gpus-per-cell {g} needs train.devices: {g} in every cell; not in {wrong[:3]}")
    folder = jobs_dir(grid, out)
    new: dict[str, str] = {}
    # cells that wait for others (phase 2, a tuned grid's final cells: vitstudy.grid.depends) go in a
    # second array that starts once the tasks they wait for ended
    first = [c for c in todo if not c.spec.depends_on()]
    second = [c for c in todo if c.spec.depends_on()]
    for cells in (first, second):
        if not cells:
            continue
        waits = {new.get(d) or queued.get(d) for c in cells for d in c.spec.depends_on()}
        waits.discard(None)
        dependency = "afterany:" + ":".join(sorted(waits)) if waits else None
        submitted = _array(grid, out, cells, options, retry_failed, dependency, echo)
        new.update(submitted)  # recorded at once: a killed submitter leaves no array unrecorded
        files.write_json(folder / JOBS_FILE, {**(files.read_json(folder / JOBS_FILE) or {}), **submitted})
    return new


def _array(grid: Grid, out: Path, todo: list[Cell], options: SlurmOptions, retry_failed: bool,
           dependency: str | None, echo: Callable[[str], None]) -> dict[str, str]:
    """Submit one job array for `todo`; run_id → job id."""
    import submitit

    g = options.gpus_per_cell
    folder = jobs_dir(grid, out)
    executor = submitit.SlurmExecutor(folder=folder / "%j", max_num_timeout=20)
    params = dict(job_name=f"vitstudy-{grid.name}", time=options.time_min, nodes=1,
                  ntasks_per_node=max(1, g), cpus_per_task=options.cpus_per_cell,
                  array_parallelism=options.max_concurrent,
                  # the warning must come before the end, and not at once in a short job
                  signal_delay_s=min(options.signal_delay_s, max(10, options.time_min * 60 // 5)),
                  additional_parameters={"requeue": True, **options.extra})
    for key in ("partition", "account", "qos", "constraint"):
        if getattr(options, key):
            params[key] = getattr(options, key)
    if g:
        params["gpus_per_node"] = g
    if options.mem_gb:
        params["mem"] = f"{int(options.mem_gb * 1024)}M"
    # before python starts: the thread policy, one thread per CPU asked for (unless the user set them)
    env = threads.task_env(options.cpus_per_cell)
    params["setup"] = [f"export {k}={shlex.quote(v)}" for k, v in env.items()]
    if dependency:
        params["dependency"] = dependency
    executor.update_parameters(**params)
    dirs = [str(grid.cell_dir(out, c)) for c in todo]
    jobs = executor.map_array(CellTask(), [c.spec for c in todo], dirs, [retry_failed] * len(todo))
    array = jobs[0].job_id.split("_")[0]
    echo(f"submitted job array {array}: {len(todo)} cell(s), at most {options.max_concurrent} at once"
         + (f", after {dependency}" if dependency else "") + f"; logs in {folder}")
    return {c.run_id: j.job_id for c, j in zip(todo, jobs, strict=True)}


def wait(grid: Grid, out: Path, poll_s: float = 5.0, echo: Callable[[str], None] = print) -> dict[str, int]:
    """Return once SLURM holds no task of this grid, printing the counts by status as they change; the
    final counts (status → cells)."""
    last = None
    while True:
        queued = in_queue(grid, out)
        counts: dict[str, int] = {}
        for cell in grid.cells:
            status = count_key(files.status(grid.cell_dir(out, cell)), cell.stage == "tune")
            counts[status] = counts.get(status, 0) + 1
        line = f"[{grid.name}] {len(queued)} task(s) on SLURM; " + ", ".join(
            f"{n} {s}" for s, n in sorted(counts.items()))
        if line != last:
            echo(line)
            last = line
        if not queued:
            return counts
        time.sleep(poll_s)


def _rank() -> int:
    return int(os.environ.get("SLURM_PROCID", "0"))


try:  # submitit is an optional dependency: without it the class is a plain callable (never submitted)
    from submitit.helpers import Checkpointable as _Base
except ImportError:  # pragma: no cover
    _Base = object


class CellTask(_Base):
    """One array task: one cell through `worker.attempt`. On a time limit or preemption submitit calls
    `checkpoint()` (inherited), which requeues this same call: the cell resumes from its last.ckpt."""

    def __call__(self, spec, run_dir: str, retry_failed: bool = False) -> str:
        from vitstudy.grid import depends
        from vitstudy.grid.executors.worker import Terminated, attempt, on_sigterm
        from vitstudy.training.quiet import quiet_lightning

        # SIGTERM: SLURM requeues, preempts or cancels this task. submitit ignores it; ours ends the
        # attempt without recording a failure (Lightning calls its own handler, then ours)
        signal.signal(signal.SIGTERM, on_sigterm)
        quiet_lightning()
        if depends.unmet(spec, Path(run_dir).parent):
            return "not run"  # what it waits for failed or is unfinished: a later run-grid submits it again
        try:
            if _rank() == 0:
                # a multi-task (DDP) cell waits for its lock, so that every rank trains or none does
                ntasks = int(os.environ.get("SLURM_NTASKS", "1"))
                outcome, _, _ = attempt(spec, run_dir, retry_failed, progress=False,
                                        timeout=-1 if ntasks > 1 else 0)
                return outcome
            return _follow(spec, Path(run_dir), retry_failed)
        except (Terminated, KeyboardInterrupt):
            return "interrupted"  # its record says running; the requeued task resumes from last.ckpt


def _follow(spec, run_dir: Path, retry_failed: bool) -> str:
    """A DDP rank > 0: train unless the cell is finished (rank 0 decided the same from the same files)."""
    from vitstudy.training.run import run_cell

    status = files.status(run_dir)
    if status == "done" or (status in FAILURES and not retry_failed):
        return "skipped"
    return run_cell(spec, run_dir, progress=False)["status"]
