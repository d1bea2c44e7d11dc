"""vitstudy from Python, for a notebook or a script: results as pandas DataFrames, and a grid run.

    import vitstudy
    runs = vitstudy.load_results("experiments.yaml")     # one row per cell, pending ones too
    table = vitstudy.load_table("results/default")       # one row per row of the report, with its tests
    runs = vitstudy.run_grid("experiments.yaml", smoke=True)

`load_results` and `load_table` read what `vitstudy report` reads (vitstudy.results.frame has their
columns). `run_grid` is `vitstudy run-grid`: it builds the command's argv and hands it to the command's
own parser and function, so the two cannot drift: the same validation before anything trains, the same
skipping and resuming, the same report files. What the command refuses with exit status 2 (a manifest's
problems, an option that does not apply) raises GridError with the command's words; nothing is left
changed in this process (the SIGTERM handler, the environment, warning filters, Lightning's log levels,
matplotlib's backend, the random generators). Spawned workers (`workers` > 1 on a CPU, one per GPU)
import the caller's main module: in a script, call run_grid under `if __name__ == "__main__":`.

Importing this module imports neither torch nor pandas; each call imports what it needs.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import random
import signal
import sys
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable

if TYPE_CHECKING:
    import pandas as pd

from vitstudy.config.errors import ManifestError

LIGHTNING_LOGGERS = ("lightning.pytorch", "lightning.fabric", "lightning")  # training.quiet sets their levels
PREFIX = "vitstudy: error: "  # how vitstudy.cli.common.usage_error begins a refusal


class GridError(ValueError):
    """What `vitstudy run-grid` refuses with exit status 2, in its words: a manifest's problems (each with
    its file, line and key path; also in `problems`) or options that do not go together."""

    def __init__(self, message: str, problems: list | None = None):
        super().__init__(message)
        self.problems = problems or []


def load_results(source: str | Path, out: str | Path = "results", *, smoke: bool = False,
                 spec: bool = True) -> pd.DataFrame:
    """One row per run: every run folder of a results folder, or every cell of a manifest (its records
    under the results root `out`; cells without one have status "pending"). Axes, seed, status, final
    and best metrics, cost, wall time and the run's folder; with `spec`, the rest of the flattened spec
    too. `attrs["folder"]` is the grid's folder."""
    from vitstudy.results.frame import read_runs, runs_frame

    with _refusals():
        runs, folder, _ = read_runs(source, out, smoke)
    return runs_frame(runs, folder, spec=spec)


def load_table(source: str | Path, out: str | Path = "results", *, smoke: bool = False,
               metrics: Iterable[str] | None = None, baseline: str | dict[str, Any] | None = None,
               rows: Iterable[str] | None = None) -> pd.DataFrame:
    """One row per row of the report of `source` (a results folder or a manifest, as load_results): mean,
    std, n, Δ to the baseline with its CI, p, Holm's p, significance, best set, seeds for 80% power, the
    paper's value, cost: table.csv's numbers, unrounded. `metrics`: as `vitstudy report --metrics` (default:
    test/acc1 and best:test/acc1); `baseline`: the reference row as {axis: value}
    or as `vitstudy report --baseline` takes it ("head=cls,position=learned"; default: the first row);
    `rows`: axes that order the rows."""
    from vitstudy.cli import values
    from vitstudy.results.frame import read_runs, table_frame
    from vitstudy.results.runs import DEFAULT_METRICS
    from vitstudy.results.table import summarize

    metrics = _option(values.metrics, ",".join(metrics or DEFAULT_METRICS), "metrics")
    rows = _option(values.axes, ",".join(rows), "rows") if rows else []
    if isinstance(baseline, str):
        baseline = _option(values.baseline, baseline, "baseline")
    with _refusals():
        runs, _, name = read_runs(source, out, smoke)
    report = summarize(runs, metrics, rows, baseline=baseline, title=name)
    return table_frame(report)


def _option(parse, text: str, name: str) -> Any:
    """`text` read as `vitstudy report` reads its option; a malformed value as GridError, in its words."""
    from argparse import ArgumentTypeError

    try:
        return parse(text)
    except ArgumentTypeError as e:
        raise GridError(f"{name}: {e}") from None


def run_grid(manifest: str | Path, out: str | Path = "results", *, smoke: bool = False,
             workers: int | None = None, pack: str | int = "auto", retry_failed: bool = False,
             fail_fast: bool = False, backend: str = "local", check: bool = False,
             junit: str | Path | None = None, **options: Any) -> pd.DataFrame:
    """`vitstudy run-grid MANIFEST`: train every cell not done yet under `out`, write the report, and
    return load_results(manifest) with `attrs["status"]`, the command's exit status (0: every cell done
    and, with `check`, every expectation met; 1: otherwise). `options` are the command's other options
    by name (partition="gpu", time="2:00:00", sbatch=["mail-type=END"], wait=True, address="auto", ...).
    Raises GridError for what the command refuses (nothing has run then), TypeError for an unknown
    option; Ctrl-C raises KeyboardInterrupt (the running cell keeps its last.ckpt and resumes); a results
    folder that fills up or turns read-only raises vitstudy.runfolder.StorageError (nothing lost: call again
    once it is writable)."""
    from vitstudy.cli.common import EXIT_USAGE
    from vitstudy.cli.parser import build_parser
    from vitstudy.cli.run_grid import cmd_run_grid
    from vitstudy.results import frame  # noqa: F401 - pandas before any training: no frame, no run

    given = dict(options, out=out, smoke=smoke, workers=workers, pack=pack, retry_failed=retry_failed,
                 fail_fast=fail_fast, backend=backend, check=check, junit=junit)
    known = vars(build_parser().parse_args(["run-grid", str(manifest)]))  # every option, by its name
    unknown = sorted(name for name in given if name not in known or name in ("command", "manifest"))
    if unknown:
        raise TypeError(f"run_grid() got an unexpected keyword argument {unknown[0]!r}")
    args = _parse(["run-grid", str(manifest), *_argv(given)], build_parser())
    with _refusals(), _kept_state(), _said_to_stderr() as said:
        status = cmd_run_grid(args)
    if status == EXIT_USAGE:
        raise GridError("\n".join(said) or "vitstudy run-grid refused the options (exit status 2)")
    results = load_results(manifest, out, smoke=smoke)
    results.attrs["status"] = status
    return results


def _argv(options: dict[str, Any]) -> list[str]:
    """Command-line options from keyword arguments: True a flag, None or False left out, a list repeated."""
    argv = []
    for name, value in options.items():
        flag = "--" + name.replace("_", "-")
        if value is True:
            argv.append(flag)
        elif value is not None and value is not False:
            for v in value if isinstance(value, (list, tuple)) else [value]:
                argv += [flag, str(v)]
    return argv


def _parse(argv: list[str], parser) -> Any:
    """The parsed arguments; argparse's complaint (it would exit) as a GridError."""
    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err):
            return parser.parse_args(argv)
    except SystemExit:
        raise GridError(err.getvalue().strip().splitlines()[-1].partition("error: ")[2]) from None


@contextlib.contextmanager
def _refusals():
    """A manifest's problems as GridError, with the words `vitstudy` prints for them."""
    try:
        yield
    except ManifestError as e:
        raise GridError(e.render(), e.problems) from None


class _Refusals:
    """sys.stderr that keeps the command's refusals (`vitstudy: error: ...` lines: the exception says
    them) and passes everything else through at once, progress bars' carriage returns included. Not an
    io.TextIOBase: its isatty and fileno would answer for the real stream, which __getattr__ asks."""

    def __init__(self, stream):
        self.stream, self.said, self.line, self.at_start = stream, [], "", True

    def write(self, text: str) -> int:
        for chunk in text.splitlines(keepends=True):
            if self.at_start or self.line:  # at a line's start: hold what may become a refusal
                self.line += chunk
                if self.line.startswith(PREFIX) or PREFIX.startswith(self.line):
                    if self.line.endswith("\n"):
                        self.said.append(self.line[len(PREFIX):].rstrip("\n"))
                        self.line = ""
                    continue
                chunk, self.line = self.line, ""
            self.stream.write(chunk)
            self.at_start = chunk.endswith("\n")
        return len(text)

    def flush(self) -> None:
        if self.line:
            self.stream.write(self.line)
            self.line, self.at_start = "", False
        self.stream.flush()

    def __getattr__(self, name: str) -> Any:  # isatty, fileno, encoding: the real stream's
        return getattr(self.stream, name)


@contextlib.contextmanager
def _said_to_stderr():
    """The command's refusals in the yielded list, not on stderr."""
    stream = _Refusals(sys.stderr)
    try:
        with contextlib.redirect_stderr(stream):
            yield stream.said
    finally:
        stream.flush()


@contextlib.contextmanager
def _kept_state():
    """What the command changes in its process, restored: the SIGTERM handler it installs, the environment
    (Lightning's seed variables), warning filters, Lightning's log levels, matplotlib's backend (the
    plots switch it to Agg: a notebook's inline plots would stop), the random generators the cells seed."""
    handler, env = signal.getsignal(signal.SIGTERM), dict(os.environ)
    levels = {name: logging.getLogger(name).level for name in LIGHTNING_LOGGERS}
    backend = _backend()
    rngs = _rng_states()
    try:
        with warnings.catch_warnings():  # the filters as they were, after
            yield
    finally:
        if signal.getsignal(signal.SIGTERM) is not handler:
            signal.signal(signal.SIGTERM, handler)
        for key in set(os.environ) - set(env):
            del os.environ[key]
        os.environ.update({k: v for k, v in env.items() if os.environ.get(k) != v})
        for name, level in levels.items():
            logging.getLogger(name).setLevel(level)
        if _backend() != backend:
            sys.modules["matplotlib"].use(backend)
        _set_rng_states(rngs)


def _backend() -> Any:
    """matplotlib's backend setting as it stands (unresolved: reading rcParams["backend"] would pick one)."""
    import matplotlib

    return dict.__getitem__(matplotlib.rcParams, "backend")


def _rng_states() -> dict[str, Any]:
    states = {"random": random.getstate()}
    if "numpy" in sys.modules:
        states["numpy"] = sys.modules["numpy"].random.get_state()
    if "torch" in sys.modules:
        states["torch"] = sys.modules["torch"].random.get_rng_state()
    return states


def _set_rng_states(states: dict[str, Any]) -> None:
    random.setstate(states["random"])
    if "numpy" in states:
        sys.modules["numpy"].random.set_state(states["numpy"])
    if "torch" in states:
        sys.modules["torch"].random.set_rng_state(states["torch"])
