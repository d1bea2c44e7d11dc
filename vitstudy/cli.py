"""The `vitstudy` command: parse, call, print. Exit status 0 when every cell is done, 1 when some
failed, 2 for bad input (a manifest error, an unknown name), with a message and no traceback."""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
from pathlib import Path

from pydantic import ValidationError

from vitstudy.bench import PARTS as BENCH_PARTS
from vitstudy.config.manifest import Grid, ManifestError, load
from vitstudy.grid.executors.worker import Terminated, on_sigterm
from vitstudy.registry import UnknownNameError
from vitstudy.results.runs import DEFAULT_METRICS
from vitstudy.training.provenance import DDP_CELL_ENV

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


def main(argv: list[str] | None = None) -> int:
    if os.environ.get(DDP_CELL_ENV) and os.environ.get("LOCAL_RANK", "0") != "0":
        from vitstudy.training.run import follow_ddp_cell  # a DDP rank Lightning started by re-running us

        return follow_ddp_cell()
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except ManifestError as e:
        print(e.render(), file=sys.stderr)
        return EXIT_USAGE
    except BrokenPipeError:  # `vitstudy plan M | head`
        sys.stderr.close()
        return EXIT_OK
    except (KeyboardInterrupt, Terminated):  # the running cell keeps its last.ckpt and resumes later
        print("\nvitstudy: interrupted; run the same command again to resume", file=sys.stderr)
        return 130
    except UnknownNameError as e:
        print(f"vitstudy: error: {e}", file=sys.stderr)
        return EXIT_USAGE
    except ValidationError as e:
        for err in e.errors():
            where = ".".join(str(x) for x in err["loc"]) or e.title
            print(f"vitstudy: error: {where}: {err['msg'].removeprefix('Value error, ')}", file=sys.stderr)
        return EXIT_USAGE


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="vitstudy", description="Ablation grids for Vision Transformers.")
    sub = p.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run-grid", help="train every pending cell of a manifest, then print the table")
    run.add_argument("manifest", type=Path)
    run.add_argument("--out", type=Path, default=Path("results"), help="results root (default: results)")
    run.add_argument("--fail-fast", action="store_true", help="stop at the first failed cell")
    run.add_argument("--retry-failed", action="store_true",
                     help="rerun (from scratch) the cells that failed, diverged or ran out of memory")
    run.add_argument("--workers", type=_positive_int, default=None,
                     help="cells trained at once (default: one per GPU, else 1; CPU threads are split)")
    run.add_argument("--smoke", action="store_true",
                     help="apply the manifest's smoke: overrides (tiny data and steps); own ids and folder")
    run.add_argument("--backend", choices=("local", "slurm", "ray"), default="local",
                     help="where cells train: this machine (default), a SLURM job array, Ray tasks")
    run.add_argument("--check", action="store_true",
                     help="end with `vitstudy check`: exit 1 when an expect: value is missed (the grid's "
                          "status when cells failed)")
    run.add_argument("--junit", type=Path, metavar="FILE", help="with --check: write its JUnit XML to FILE")
    cl = run.add_argument_group("slurm and ray (see README, 'Running a grid on a cluster')")
    cl.add_argument("--partition", help="slurm: sbatch --partition")
    cl.add_argument("--time", default="60", help="slurm: sbatch --time per cell, minutes or [D-]H:M:S "
                                                   "(a cell that runs out is requeued and resumes)")
    cl.add_argument("--gpus-per-cell", type=int, default=0,
                    help="slurm: --gpus-per-node (and --ntasks-per-node, for DDP); ray: num_gpus per task")
    cl.add_argument("--cpus-per-cell", type=int, default=None,
                    help="slurm: --cpus-per-task (default 2); ray: num_cpus per task (default 1 or 2)")
    cl.add_argument("--mem-gb", type=float, help="slurm: sbatch --mem")
    cl.add_argument("--max-concurrent", type=_positive_int, default=256,
                    help="slurm: array tasks at once (--array=0-N%%K)")
    cl.add_argument("--account", help="slurm: sbatch --account")
    cl.add_argument("--qos", help="slurm: sbatch --qos")
    cl.add_argument("--constraint", help="slurm: sbatch --constraint")
    cl.add_argument("--sbatch", action="append", default=[], metavar="KEY=VALUE",
                    help="slurm: any other sbatch option, e.g. --sbatch mail-type=END (repeatable)")
    cl.add_argument("--wait", action="store_true",
                    help="slurm: follow the jobs until none is queued, then print the table "
                         "(default: submit and exit; `vitstudy plan M` shows progress)")
    cl.add_argument("--address", help="ray: an existing cluster ('auto', 'ray://host:10001'; "
                                      "default: start a local one)")
    run.set_defaults(func=cmd_run_grid)

    plan = sub.add_parser("plan", help="list a manifest's cells with ids, status, params and MACs")
    plan.add_argument("manifest", type=Path)
    plan.add_argument("--out", type=Path, default=Path("results"))
    plan.add_argument("--smoke", action="store_true", help="plan the smoke variant of the grid")
    plan.set_defaults(func=cmd_plan)

    chk = sub.add_parser(
        "check", help="the gate for CI: exit 1 when a measured mean misses its expect: value",
        description="For every row (a cell's seeds) and expect: value, from the files on disk: with a "
                    "tolerance ({value: 72.2, tolerance: 0.5}) the mean over finished seeds must be within "
                    "it; without one, the value must lie in the mean's 95% t-based confidence interval "
                    "(n >= 2), widened by half a unit of the value's last digit (params: agree to that "
                    "precision). One line per expectation, then a summary; exit 1 when any fails.")
    chk.add_argument("manifest", type=Path)
    chk.add_argument("--out", type=Path, default=Path("results"), help="results root (default: results)")
    chk.add_argument("--smoke", action="store_true", help="check the smoke variant of the grid")
    chk.add_argument("--junit", type=Path, metavar="FILE", help="also write JUnit XML (one testcase per "
                                                                "expectation) to FILE")
    chk.set_defaults(func=cmd_check)

    rep = sub.add_parser(
        "report", help="tables (md, csv, tex, html) and plots from the files on disk",
        description="One row per cell without its seed: mean ± std and n over finished seeds, failed and "
                    "pending seeds footnoted, Δ to a baseline row, the manifest's expected (paper) values, "
                    "cost columns. Writes table.{md,csv,tex,html}, accuracy_vs_cost.{png,svg} and "
                    "val_acc_vs_epoch.{png,svg} into the grid's folder and prints one format.")
    rep.add_argument("source", type=Path, help="a grid's results folder, or a manifest (then pending "
                                               "cells are shown too)")
    rep.add_argument("--out", type=Path, default=Path("results"), help="results root, for a manifest")
    rep.add_argument("--rows", help="comma-separated axes that order the rows (e.g. position,head)")
    rep.add_argument("--cols", help="comma-separated axes to pivot into columns")
    rep.add_argument("--format", choices=("md", "csv", "tex", "html"), default="md", help="what to print")
    rep.add_argument("--metrics", default=",".join(DEFAULT_METRICS),
                     help="comma-separated; best:M is M at the best-validation epoch (default: %(default)s)")
    rep.add_argument("--baseline", help="the reference row, e.g. head=cls,position=learned (default: first)")
    rep.add_argument("--to", type=Path, help="folder for the files (default: the grid's folder)")
    rep.add_argument("--no-plots", action="store_true")
    rep.set_defaults(func=cmd_report)

    prof = sub.add_parser(
        "profile", help="parameters, MACs (and, for a manifest, images/s) without training",
        description="Parameter count and MACs of a model preset, without training. MACs are the "
                    "multiply-accumulates of every linear and convolution layer plus the two attention "
                    "matrix products (q·kᵀ and weights·v) for one image; norms and activations are "
                    "not counted. Given a manifest: those of every cell, plus measured inference and "
                    "training images/s on this machine's device, with random images.")
    prof.add_argument("model", help="a preset name (see `vitstudy list`) or a manifest file")
    prof.add_argument("--device", help="for a manifest: cpu, cuda, ... (default: cuda if available)")
    prof.add_argument("--batch-size", type=int, help="for a manifest (default: each cell's data.batch_size)")
    prof.add_argument("--img-size", type=int)
    prof.add_argument("--num-classes", type=int)
    prof.add_argument("--in-chans", type=int)
    prof.add_argument("--json", action="store_true", help="print JSON")
    prof.set_defaults(func=cmd_profile)

    lst = sub.add_parser("list", help="every registered mixer, normaliser, tokenizer, preset, dataset")
    lst.set_defaults(func=cmd_list)

    bench = sub.add_parser(
        "bench", help="speed, as ratios measured in one process: mixers vs timm, Lightning vs a bare loop, "
                      "data pipelines, bf16 vs fp32, utilisation, token-count scaling",
        description="Benchmarks that report ratios against a reference run in the same process (shared "
                    "machines are noisy): runs alternate in rounds; figures are medians over rounds, or "
                    "for whole epochs the fastest round. Each part "
                    "prints a table and writes <out>/<part>.json; mixers and scaling also write plots.")
    # the default is the string "all": argparse checks a default of nargs="*" against the choices as
    # one value, so a list (["all"], []) is refused and `vitstudy bench` alone would be an error
    bench.add_argument("what", nargs="*", choices=["all", *BENCH_PARTS], default="all",
                       help="which parts (default: all)")
    bench.add_argument("--precision", choices=["fp32", "bf16"], nargs="+", default=["fp32", "bf16"],
                       help="mixers: the precisions to time")
    bench.add_argument("--rounds", type=_positive_int, help="rounds per part (default: each part's own)")
    bench.add_argument("--only", nargs="+", help="mixers: variant labels, e.g. attention+softmax dwsa")
    bench.add_argument("--manifest", type=Path, default=Path("experiments.yaml"),
                       help="loop and utilisation: the manifest whose first cell is timed")
    bench.add_argument("--device", choices=["cpu", "cuda"], help="default: cuda when there is a GPU")
    bench.add_argument("--out", type=Path, default=Path("results/bench"), help="where JSON and plots go")
    bench.set_defaults(func=cmd_bench)
    return p


def _load(args) -> Grid:
    """The manifest's grid, its budget (if any) solved with the models' cost (vitstudy.models.cost)."""
    return load(args.manifest, smoke=args.smoke, cost=_model_cost)


def _model_cost(spec):
    """vitstudy.models.cost.model_cost, imported (with torch) only when a budget needs it, so that a bad
    manifest is refused before torch loads."""
    from vitstudy.models.cost import model_cost

    return model_cost(spec)


def _positive_int(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive integer")
    return int(text)


# run-grid options that only one or two backends honour: given to another, they are an error, not ignored
BACKEND_OPTIONS = {
    "workers": ("local",), "fail_fast": ("local",), "address": ("ray",),
    "partition": ("slurm",), "time": ("slurm",), "mem_gb": ("slurm",), "max_concurrent": ("slurm",),
    "account": ("slurm",), "qos": ("slurm",), "constraint": ("slurm",), "sbatch": ("slurm",),
    "wait": ("slurm",), "gpus_per_cell": ("slurm", "ray"), "cpus_per_cell": ("slurm", "ray"),
}


def _misplaced_options(args, parser_defaults: dict) -> list[str]:
    return [f"--{name.replace('_', '-')} applies to --backend {'/'.join(backends)}, not {args.backend}"
            for name, backends in BACKEND_OPTIONS.items()
            if args.backend not in backends and getattr(args, name) != parser_defaults[name]]


def cmd_run_grid(args) -> int:
    misplaced = _misplaced_options(args, vars(_parser().parse_args(["run-grid", str(args.manifest)])))
    misplaced += _gate_options(args)
    if misplaced:
        for message in misplaced:
            print(f"vitstudy: error: {message}", file=sys.stderr)
        return EXIT_USAGE
    grid = _load(args)  # every cell validated before anything runs
    if args.check and not any(c.expect for c in grid.cells):
        return _gate(args.manifest, args.out, args.smoke, None)  # "nothing to check" (exit 2) before training
    from vitstudy.training.quiet import quiet_lightning

    quiet_lightning()
    from vitstudy.grid.executors.local import run_local

    folder = args.out / grid.folder
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
        progress = run_local(grid, args.out, fail_fast=args.fail_fast, retry_failed=args.retry_failed,
                             workers=args.workers)
    return _report(args, folder, progress.summary(), progress.failures)


def _run_slurm(args, grid, folder: Path) -> int:
    from vitstudy.grid.executors import slurm

    if not slurm.available():
        print("vitstudy: error: --backend slurm: sbatch/squeue not found on this machine", file=sys.stderr)
        return EXIT_USAGE
    try:
        options = slurm.SlurmOptions(
            partition=args.partition, time_min=slurm.parse_time(args.time), gpus_per_cell=args.gpus_per_cell,
            cpus_per_cell=args.cpus_per_cell or 2, mem_gb=args.mem_gb, max_concurrent=args.max_concurrent,
            account=args.account, qos=args.qos, constraint=args.constraint,
            extra=dict(_key_value(kv) for kv in args.sbatch))
        slurm.submit(grid, args.out, options, retry_failed=args.retry_failed)
    except ValueError as e:
        print(f"vitstudy: error: {e}", file=sys.stderr)
        return EXIT_USAGE
    if not args.wait:
        print(f"state lives in {folder}: `vitstudy plan {args.manifest}` shows progress; "
              "run the same command again after a crash (queued cells are not submitted twice)")
        return EXIT_OK
    from vitstudy.grid.progress import is_tuning

    counts = slurm.wait(grid, args.out)
    summary = ", ".join(f"{n} {s}" for s, n in sorted(counts.items()))
    return _report(args, folder, summary,
                   sum(n for s, n in counts.items() if s != "done" and not is_tuning(s)))


def _gate_options(args) -> list[str]:
    """What is wrong with how run-grid's --check and --junit were given."""
    problems = []
    if args.junit and not args.check:
        problems.append("--junit FILE goes with --check")
    if args.check and args.backend == "slurm" and not args.wait:
        problems.append("--check needs the finished grid: with --backend slurm, add --wait")
    return problems


def _key_value(text: str) -> tuple[str, str | bool]:
    key, sep, value = text.partition("=")
    if not key:
        raise ValueError(f"--sbatch {text!r}: use KEY=VALUE (or KEY for a flag)")
    return key.lstrip("-"), value if sep else True


def _report(args, folder: Path, summary: str, bad: int) -> int:
    from vitstudy.results.render import render
    from vitstudy.results.table import for_manifest
    from vitstudy.results.write import write

    report, _ = for_manifest(args.manifest, args.out, smoke=args.smoke)
    write(report, folder)  # table.{md,csv,tex,html} and the plots
    print()
    print(render(report, "md"))
    print(f"{summary}; report written to {folder}/table.md (.csv, .tex, .html) and plots")
    failed = EXIT_FAILED if bad else EXIT_OK
    if not args.check:
        return failed
    checked = _gate(args.manifest, args.out, args.smoke, args.junit)
    return failed or checked  # the grid's status when cells failed, else the check's


def cmd_check(args) -> int:
    return _gate(args.manifest, args.out, args.smoke, args.junit)


def _gate(manifest: Path, out: Path, smoke: bool, junit: Path | None) -> int:
    """`vitstudy check`: one line per expectation and a summary, the JUnit XML to `junit` if given; exit
    1 when an expectation fails, 2 when the manifest has none."""
    from vitstudy.results.check import NothingToCheck, check_manifest, render, write_junit

    try:
        check = check_manifest(manifest, out, smoke=smoke)
    except NothingToCheck as e:
        print(f"vitstudy: error: {e}", file=sys.stderr)
        return EXIT_USAGE
    print(render(check))
    if junit:
        write_junit(junit, check)
        print(f"JUnit XML written to {junit}")
    return EXIT_FAILED if check.failures else EXIT_OK


def cmd_plan(args) -> int:
    """The cells with status, params and MACs, and an ETA once some ran. Imports no training code
    (no lightning): params and MACs come from a meta-device model, once per distinct model."""
    grid = _load(args)
    from vitstudy.config.budget import percent
    from vitstudy.grid.plan import plan
    from vitstudy.results.format import human

    state = plan(grid, args.out)
    print(f"grid '{grid.folder}': {len(grid.cells)} cells -> {args.out / grid.folder}")
    for row in state.rows:
        expect = " ".join(f"{k}={v:g}" + (f"±{row.cell.tolerance[k]:g}" if k in row.cell.tolerance else "")
                          for k, v in row.cell.expect.items())
        print(f"  {row.status:11s} {row.cell.grid}/{row.cell.run_id:60s} {human(row.params):>7s} params "
              f"{human(row.macs):>7s} MACs" + (f"  expect {expect}" if expect else "") + _stage(row.cell)
              + _budget(row.cell))
    for row in state.budget_worst():
        b = row.cell.budget
        print(f"budget: {b.cost} matched to {b.reference:,.0f} ({b.label}) within ±{percent(b.tolerance)} by "
              f"{b.adjust}; worst deviation {b.deviation:+.1%} ({row.cell.grid}/{row.cell.run_id})")
    print(state.summary())
    return EXIT_OK


def _budget(cell) -> str:
    """A budget-matched cell in `plan`: the solved value of the budget's option, its cost's deviation."""
    b = cell.budget
    return f"  {b.adjust.split('.')[1]} {b.value} (budget, {b.deviation:+.1%})" if b else ""


def _stage(cell) -> str:
    """A tuned grid's cells in `plan`: its tuning cells, and the final cells that pick from them."""
    if cell.stage == "tune":
        return "  tuning"
    tune_from = cell.spec.train.tune_from
    return f"  tuned on {cell.spec.train.tune_metric} over {len(tune_from)} tuning cells" if tune_from else ""


def cmd_report(args) -> int:
    from vitstudy.results.render import render
    from vitstudy.results.table import for_source
    from vitstudy.results.write import write

    split = lambda s: [x.strip() for x in s.split(",") if x.strip()] if s else None
    baseline = dict(kv.split("=", 1) for kv in split(args.baseline)) if args.baseline else None
    try:
        report, where = for_source(args.source, args.out, rows=split(args.rows), cols=split(args.cols),
                                   metrics=split(args.metrics), baseline=baseline)
    except ValueError as e:
        print(f"vitstudy: error: {e}", file=sys.stderr)
        return EXIT_USAGE
    written = write(report, args.to or where, plots=not args.no_plots)
    print(render(report, args.format), end="")
    print(f"\nwritten: {', '.join(str(p) for p in written)}", file=sys.stderr)
    return EXIT_OK


def cmd_profile(args) -> int:
    if args.model.endswith((".yaml", ".yml")) or Path(args.model).is_file():
        from vitstudy.results.cost_table import cost_table, to_markdown

        table = cost_table(Path(args.model), device=args.device, batch_size=args.batch_size)
        print(json.dumps(table.rows) if args.json else to_markdown(table))
        return EXIT_OK
    from vitstudy.models.build import resolve_model
    from vitstudy.models.cost import model_cost
    from vitstudy.results.format import human

    spec = resolve_model(args.model, img_size=args.img_size, num_classes=args.num_classes,
                         in_chans=args.in_chans)
    cost = model_cost(spec)
    if args.json:
        print(json.dumps({"model": args.model, "img_size": spec.img_size,
                          "num_classes": spec.num_classes, **cost.as_dict()}))
    else:
        print(f"{args.model} @ {spec.img_size}px, {spec.num_classes} classes: "
              f"{human(cost.params)} params ({cost.params:,}), {human(cost.macs)} MACs ({cost.macs:,})")
    return EXIT_OK


def cmd_bench(args) -> int:
    from vitstudy.bench import run_parts

    everything = args.what == "all" or "all" in args.what
    parts = BENCH_PARTS if everything else [p for p in BENCH_PARTS if p in args.what]
    run_parts(parts, precisions=args.precision, rounds=args.rounds, only=args.only, manifest=args.manifest,
              device=args.device, out=args.out)
    return EXIT_OK


def cmd_list(args) -> int:
    from vitstudy.config.presets import PRESETS
    from vitstudy.registry import REGISTRIES

    for reg in REGISTRIES:
        print(f"{reg.kind}s:")
        for e in reg.entries():
            print(f"  {e.name:12s} {e.summary}" + (f"  [{e.paper}]" if e.paper else ""))
    print("presets:")
    for name, p in PRESETS.items():
        print(f"  {name:12s} {p['summary']}  [{p['paper']}]")
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
