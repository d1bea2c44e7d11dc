"""The `vitstudy` command line: every subcommand, its arguments and their help. Parsing only: the
commands are vitstudy.cli.run_grid and vitstudy.cli.info."""

from __future__ import annotations

import argparse
from pathlib import Path

from vitstudy.bench import PARTS as BENCH_PARTS
from vitstudy.cli import values
from vitstudy.results.runs import DEFAULT_METRICS

# the most `profile` takes for a preset's sizes: a sanity bound at the door (the model spec then checks that
# they fit the preset, e.g. an image size that is a multiple of the patch size)
PROFILE_SIZES = {"--img-size": 2**14, "--num-classes": 2**20, "--in-chans": 2**10}


def build_parser() -> argparse.ArgumentParser:
    """The `vitstudy` command line; each subcommand's `command` names its function (vitstudy.cli)."""
    p = argparse.ArgumentParser(prog="vitstudy", description="Ablation grids for Vision Transformers.")
    sub = p.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run-grid", help="train every pending cell of a manifest, then print the table")
    run.add_argument("manifest", type=Path)
    run.add_argument("--out", type=Path, default=Path("results"), help="results root (default: results)")
    run.add_argument("--fail-fast", action="store_true", help="stop at the first failed cell")
    run.add_argument("--retry-failed", action="store_true",
                     help="rerun (from scratch) the cells that failed, diverged or ran out of memory")
    run.add_argument("--workers", type=values.count(1, 1024), default=None,
                     help="cells (or packs) trained at once (default: one per GPU; on a CPU one per core "
                          "when cells are packed, else 1; CPU threads are split)")
    run.add_argument("--smoke", action="store_true",
                     help="apply the manifest's smoke: overrides (tiny data and steps); own ids and folder")
    run.add_argument("--pack", type=values.pack, default="auto", metavar="auto|off|K",
                     help="train cells that differ only in seed, lr, weight decay, ... together as one "
                          "vectorised model: auto (default), off, or at most K per pack (local backend)")
    run.add_argument("--backend", choices=("local", "slurm", "ray"), default="local",
                     help="where cells train: this machine (default), a SLURM job array, Ray tasks")
    run.add_argument("--check", action="store_true",
                     help="end with `vitstudy check`: exit 1 when an expect: value is missed (the grid's "
                          "status when cells failed)")
    run.add_argument("--junit", type=Path, metavar="FILE", help="with --check: write its JUnit XML to FILE")
    run.add_argument("-q", "--quiet", action="store_true",
                     help="no progress (neither the live display of a terminal nor one line per event); "
                          "failures, the table and the summary still print (local backend)")
    cl = run.add_argument_group("slurm and ray (see README, 'Running a grid on a cluster')")
    cl.add_argument("--partition", type=values.word, help="slurm: sbatch --partition")
    cl.add_argument("--time", type=values.minutes, default=60,
                    help="slurm: sbatch --time per cell, minutes or [D-]H:M:S (a cell that runs out is "
                         "requeued and resumes)")
    cl.add_argument("--gpus-per-cell", type=values.count(0, 64), default=0,
                    help="slurm: --gpus-per-node (and --ntasks-per-node, for DDP); ray: num_gpus per task")
    cl.add_argument("--cpus-per-cell", type=values.count(1, 4096), default=None,
                    help="slurm: --cpus-per-task (default 2); ray: num_cpus per task (default 1 or 2)")
    cl.add_argument("--mem-gb", type=values.amount(2.0**20), help="slurm: sbatch --mem")
    cl.add_argument("--max-concurrent", type=values.count(1, 10**6), default=256,
                    help="slurm: array tasks at once (--array=0-N%%K)")
    cl.add_argument("--account", type=values.word, help="slurm: sbatch --account")
    cl.add_argument("--qos", type=values.word, help="slurm: sbatch --qos")
    cl.add_argument("--constraint", type=values.word, help="slurm: sbatch --constraint")
    cl.add_argument("--sbatch", type=values.sbatch, action="append", default=[], metavar="KEY=VALUE",
                    help="slurm: any other sbatch option, e.g. --sbatch mail-type=END (repeatable)")
    cl.add_argument("--wait", action="store_true",
                    help="slurm: follow the jobs until none is queued, then print the table "
                         "(default: submit and exit; `vitstudy plan M` shows progress)")
    cl.add_argument("--address", type=values.word,
                    help="ray: an existing cluster ('auto', 'ray://host:10001'; default: start a local one)")

    plan = sub.add_parser("plan", help="list a manifest's cells with ids, status, params and MACs")
    plan.add_argument("manifest", type=Path)
    plan.add_argument("--out", type=Path, default=Path("results"))
    plan.add_argument("--smoke", action="store_true", help="plan the smoke variant of the grid")

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

    rep = sub.add_parser(
        "report", help="tables (md, csv, tex, html) and plots from the files on disk",
        description="One row per cell without its seed: mean ± std and n over finished seeds, failed and "
                    "pending seeds footnoted, Δ to a baseline row, the manifest's expected (paper) values, "
                    "cost columns. Writes table.{md,csv,tex,html}, accuracy_vs_cost.{png,svg} and "
                    "val_acc_vs_epoch.{png,svg} into the grid's folder and prints one format.")
    rep.add_argument("source", type=Path, help="a grid's results folder, or a manifest (then pending "
                                               "cells are shown too)")
    rep.add_argument("--out", type=Path, default=Path("results"), help="results root, for a manifest")
    rep.add_argument("--rows", type=values.axes,
                     help="comma-separated axes that order the rows (e.g. position,head)")
    rep.add_argument("--cols", type=values.axes, help="comma-separated axes to pivot into columns")
    rep.add_argument("--format", choices=("md", "csv", "tex", "html"), default="md", help="what to print")
    rep.add_argument("--metrics", type=values.metrics, default=",".join(DEFAULT_METRICS),
                     help="comma-separated; best:M is M at the best-validation epoch (default: %(default)s)")
    rep.add_argument("--baseline", type=values.baseline,
                     help="the reference row, e.g. head=cls,position=learned (default: first)")
    rep.add_argument("--to", type=Path, help="folder for the files (default: the grid's folder)")
    rep.add_argument("--no-plots", action="store_true")

    prof = sub.add_parser(
        "profile", help="parameters, MACs (and, for a manifest, images/s) without training",
        description="Parameter count and MACs of a model preset, without training. MACs are the "
                    "multiply-accumulates of every linear and convolution layer plus the two attention "
                    "matrix products (q·kᵀ and weights·v) for one image; norms and activations are "
                    "not counted. Given a manifest: those of every cell, plus measured inference and "
                    "training images/s on this machine's device, with random images.")
    prof.add_argument("model", help="a preset name (see `vitstudy list`) or a manifest file")
    prof.add_argument("--device", type=values.device,
                      help="for a manifest: cpu, cuda, cuda:N, mps (default: cuda if available)")
    prof.add_argument("--batch-size", type=values.count(1, 2**16),
                      help="for a manifest (default: each cell's data.batch_size)")
    for size, most in PROFILE_SIZES.items():
        prof.add_argument(size, type=values.count(1, most), help="for a preset (default: the preset's)")
    prof.add_argument("--json", action="store_true", help="print JSON")

    sub.add_parser("list", help="every registered mixer, normaliser, tokenizer, preset, dataset")

    bench = sub.add_parser(
        "bench", help="speed, as ratios measured in one process: mixers vs timm, Lightning vs a bare loop, "
                      "data pipelines, bf16 vs fp32, utilisation, token-count scaling, contention",
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
    bench.add_argument("--rounds", type=values.count(1, 10**4),
                       help="rounds per part (default: each part's own)")
    bench.add_argument("--only", nargs="+", help="mixers: variant labels, e.g. attention+softmax dwsa")
    bench.add_argument("--manifest", type=Path, default=Path("experiments.yaml"),
                       help="loop, utilisation and contention: the manifest whose first cell is timed")
    bench.add_argument("--seconds", type=values.amount(3600.0),
                       help="contention: seconds per measurement (default: 2)")
    bench.add_argument("--epochs", type=values.count(1, 10**4),
                       help="pack: train the grids this many epochs (default: the manifest's)")
    bench.add_argument("--seeds", type=values.count(1, 10**4),
                       help="pack: seeds 0..N-1 for the manifest's grid (default: the manifest's)")
    bench.add_argument("--device", choices=["cpu", "cuda"], help="default: cuda when there is a GPU")
    bench.add_argument("--out", type=Path, default=Path("results/bench"), help="where JSON and plots go")
    return p
