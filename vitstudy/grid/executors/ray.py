"""Run a grid's cells on a Ray cluster: one Ray task per cell, asking for `cpus_per_cell` CPUs and
`gpus_per_cell` GPUs, so Ray packs as many cells at once as the cluster's resources allow. Each task
runs `worker.attempt` — the local executor's code path: the cell's lock, skip when done,
`training.run.run_cell`, resume from last.ckpt — in the results folder, which every node must see (a shared
file system, as on a SLURM cluster). `address` joins an existing cluster ("auto", "ray://host:10001");
without it Ray starts a local one for the duration of the grid.

The driver waits for every task; should it die, the cells its tasks were training keep their
record ("running") and last.ckpt and resume on the next run-grid, whatever the backend.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable

from vitstudy import threads
from vitstudy.config.manifest import Grid
from vitstudy.grid import depends
from vitstudy.grid.progress import Progress, survey
from vitstudy.runfolder import FAILURES, StorageError


def _task(spec, run_dir: str, retry_failed: bool, wait_for_lock: bool):
    from vitstudy.grid.executors.worker import attempt
    from vitstudy.training.quiet import quiet_lightning

    quiet_lightning()
    return attempt(spec, run_dir, retry_failed, progress=False, timeout=-1 if wait_for_lock else 0)


def run_ray(grid: Grid, out: Path, address: str | None = None, retry_failed: bool = False,
            cpus_per_cell: float = 1, gpus_per_cell: float = 0, num_cpus: int | None = None,
            echo: Callable[[str], None] = print) -> Progress:
    """Train every unfinished cell as a Ray task; return the Progress (as `run_local` does)."""
    import ray

    progress, dirs, todo = survey(grid, Path(out).resolve(), 1, echo)
    if not todo:
        return progress
    started_here = not ray.is_initialized()
    if started_here:
        # each cell gets cpus_per_cell threads and the thread policy, unless the user set them
        env = threads.task_env(max(1, int(cpus_per_cell)))
        ray.init(address=address, num_cpus=num_cpus if address is None else None, log_to_driver=False,
                 include_dashboard=False, runtime_env={"env_vars": env})
    try:
        resources = ray.cluster_resources()
        progress.workers = max(1, int(resources.get("CPU", 1) // max(cpus_per_cell, 1e-9)))
        echo(f"ray: {resources.get('CPU', 0):g} CPUs, {resources.get('GPU', 0):g} GPUs; "
             f"each cell asks for {cpus_per_cell:g} CPU(s), {gpus_per_cell:g} GPU(s)")
        remote = ray.remote(num_cpus=cpus_per_cell, num_gpus=gpus_per_cell, max_retries=2)(_task)
        echo(progress.line())
        waiting: dict = {}

        def start(c, wait_for_lock: bool = False) -> None:
            waiting[remote.remote(c.spec, str(dirs[c.run_id + c.grid]), retry_failed, wait_for_lock)] = c

        def start_if_ready(c) -> None:  # once the cells it depends on ended (vitstudy.grid.depends)
            reason = depends.unmet(c.spec, dirs[c.run_id + c.grid].parent)
            if reason is None:
                start(c)
            else:
                echo(f"  - {c.run_id} not run: {reason}")

        # a cell that waits for others (phase 2, a tuned grid's final cell) starts when the last ends
        todo_ids = {(c.grid, c.run_id) for c in todo}
        waits_for = {(c.grid, c.run_id): (c, {d for d in c.spec.depends_on() if (c.grid, d) in todo_ids})
                     for c in todo}
        for c, deps in waits_for.values():
            if not deps:
                start_if_ready(c)
        second_round = False
        while waiting:
            ready, _ = ray.wait(list(waiting), num_returns=1)
            cell = waiting.pop(ready[0])
            try:
                outcome, record, trained = ray.get(ready[0])
            except StorageError:  # the results folder cannot be written: stop (ray's error is also one)
                raise
            except Exception as e:  # noqa: BLE001 - the task's process died (after max_retries)
                outcome, record, trained = "worker died", {"error": {"message": repr(e)}}, True
            if outcome == "locked":  # another process trains it: wait for it in a task of its own
                start(cell, wait_for_lock=True)
                second_round = True
                continue
            for c, deps in waits_for.values():
                if c.grid == cell.grid and cell.run_id in deps:
                    deps.discard(cell.run_id)
                    if not deps:
                        start_if_ready(c)
            if outcome in FAILURES and not trained:
                progress.failed_before(cell.run_id, outcome)
            else:
                progress.ended(cell.run_id, outcome, record)
        if second_round:
            echo("waited for cells that another process was training")
    finally:
        if started_here:
            ray.shutdown()
    progress.counts["not run"] += len(grid.cells) - progress.finished
    return progress


def default_cpus_per_cell() -> int:
    return 1 if (os.cpu_count() or 1) <= 2 else 2
