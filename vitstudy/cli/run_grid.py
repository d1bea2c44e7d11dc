"""`vitstudy run-grid` (train every pending cell on this machine, a SLURM cluster or Ray, then write the
report) and `vitstudy check` (the expect: gate, also what `run-grid --check` ends with).

How a local grid's progress shows: a live display when stdout is a terminal (vitstudy.grid.live), one
line per event otherwise (logs, pipes, SLURM output files, TERM=dumb), neither with --quiet. SLURM and Ray
print their lines.
"""

from __future__ import annotations

import os
import signal
import sys
from contextlib import nullcontext
from pathlib import Path

from vitstudy.cli import paths
from vitstudy.cli.common import EXIT_FAILED, EXIT_OK, load_grid, refuse, usage_error
from vitstudy.cli.parser import build_parser
from vitstudy.grid.executors.worker import on_sigterm

# run-grid options that only one or two backends honour: given to another, they are an error, not ignored
BACKEND_OPTIONS = {
    "workers": ("local",), "fail_fast": ("local",), "address": ("ray",),
    "partition": ("slurm",), "time": ("slurm",), "mem_gb": ("slurm",), "max_concurrent": ("slurm",),
    "account": ("slurm",), "qos": ("slurm",), "constraint": ("slurm",), "sbatch": ("slurm",),
    "wait": ("slurm",), "gpus_per_cell": ("slurm", "ray"), "cpus_per_cell": ("slurm", "ray"),
    "quiet": ("local",),
}


def _misplaced_options(args, parser_defaults: dict) -> list[str]:
    return [f"--{name.replace('_', '-')} applies to --backend {'/'.join(backends)}, not {args.backend}"
            for name, backends in BACKEND_OPTIONS.items()
            if args.backend not in backends and getattr(args, name) != parser_defaults[name]]


def cmd_run_grid(args) -> int:
    refused = _misplaced_options(args, vars(build_parser().parse_args(["run-grid", str(args.manifest)])))
    refused += _gate_options(args)
    refused += paths.folder("--out", args.out, written=True) + paths.file("--junit", args.junit)
    if refused:  # before anything is imported, read or written
        return refuse(refused)
    grid = load_grid(args)  # every cell validated before anything runs
    if args.check and not any(c.expect for c in grid.cells):
        return _gate(args.manifest, args.out, args.smoke, None)  # "nothing to check" (exit 2) before training
    from vitstudy.training.quiet import quiet_lightning

    quiet_lightning()
    from vitstudy.grid.executors.local import run_local

    folder = args.out / grid.folder
    if not args.quiet:
        print(f"grid '{grid.folder}': {len(grid.cells)} cells -> {folder}", flush=True)
    # SIGTERM (kill, a scheduler's stop) ends the run like Ctrl-C: the cell keeps its last.ckpt
    signal.signal(signal.SIGTERM, on_sigterm)
    if args.backend == "slurm":
        return _run_slurm(args, grid, folder)
    if args.backend == "ray":
        from vitstudy.grid.executors.ray import default_cpus_per_cell, run_ray

        progress = run_ray(grid, args.out, address=args.address, retry_failed=args.retry_failed,
                           cpus_per_cell=args.cpus_per_cell or default_cpus_per_cell(),
                           gpus_per_cell=args.gpus_per_cell)
    else:
        view, shown = _view(args.quiet)
        with shown:  # a live display ends before the table prints
            progress = run_local(grid, args.out, fail_fast=args.fail_fast, retry_failed=args.retry_failed,
                                 workers=args.workers, pack=args.pack, view=view)
    return _report(args, folder, progress.summary(), progress.failures)


def _view(quiet: bool) -> tuple:
    """What shows a local grid's progress (Quiet, the live display on a terminal, else None: one line per
    event, as logs and scripts read it) and the context it is on in."""
    from vitstudy.grid.progress import Quiet

    if quiet:
        return Quiet(), nullcontext()
    if sys.stdout.isatty() and os.environ.get("TERM") != "dumb":  # a dumb terminal cannot redraw
        from vitstudy.grid.live import LiveView

        live = LiveView()
        return live, live
    return None, nullcontext()


def _run_slurm(args, grid, folder: Path) -> int:
    from vitstudy.grid.executors import slurm

    if not slurm.available():
        return usage_error("--backend slurm: sbatch/squeue not found on this machine")
    try:
        options = slurm.SlurmOptions(
            partition=args.partition, time_min=args.time, gpus_per_cell=args.gpus_per_cell,
            cpus_per_cell=args.cpus_per_cell or 2, mem_gb=args.mem_gb, max_concurrent=args.max_concurrent,
            account=args.account, qos=args.qos, constraint=args.constraint,
            extra=dict(args.sbatch))
        slurm.submit(grid, args.out, options, retry_failed=args.retry_failed)
    except ValueError as e:
        return usage_error(str(e))
    if not args.wait:
        print(f"state lives in {folder}: `vitstudy plan {args.manifest}` shows progress; "
              "run the same command again after a crash (queued cells are not submitted twice)")
        return EXIT_OK
    from vitstudy.grid.progress import failures

    counts = slurm.wait(grid, args.out)
    summary = ", ".join(f"{n} {s}" for s, n in sorted(counts.items()))
    return _report(args, folder, summary, failures(counts))


def _gate_options(args) -> list[str]:
    """What is wrong with how run-grid's --check and --junit were given."""
    problems = []
    if args.junit and not args.check:
        problems.append("--junit FILE goes with --check")
    if args.check and args.backend == "slurm" and not args.wait:
        problems.append("--check needs the finished grid: with --backend slurm, add --wait")
    return problems


def _report(args, folder: Path, summary: str, bad: int) -> int:
    from vitstudy.results.render import render
    from vitstudy.results.table import for_manifest
    from vitstudy.results.write import write

    report, _ = for_manifest(args.manifest, args.out, smoke=args.smoke)
    write(report, folder)  # table.{md,csv,tex,html} and the plots
    print()
    print(render(report, "md"))
    print(f"{summary}; report written to {folder}/report.html, table.md (.csv, .tex, .html) and plots")
    failed = EXIT_FAILED if bad else EXIT_OK
    if not args.check:
        return failed
    checked = _gate(args.manifest, args.out, args.smoke, args.junit)
    return failed or checked  # the grid's status when cells failed, else the check's


def cmd_check(args) -> int:
    if refused := paths.folder("--out", args.out, written=False) + paths.file("--junit", args.junit):
        return refuse(refused)
    return _gate(args.manifest, args.out, args.smoke, args.junit)


def _gate(manifest: Path, out: Path, smoke: bool, junit: Path | None) -> int:
    """`vitstudy check`: one line per expectation and a summary, the JUnit XML to `junit` if given; exit
    1 when an expectation fails, 2 when the manifest has none."""
    from vitstudy.results.check import NothingToCheck, check_manifest, render, write_junit

    try:
        check = check_manifest(manifest, out, smoke=smoke)
    except NothingToCheck as e:
        return usage_error(str(e))
    print(render(check))
    if junit:
        write_junit(junit, check)
        print(f"JUnit XML written to {junit}")
    return EXIT_FAILED if check.failures else EXIT_OK
