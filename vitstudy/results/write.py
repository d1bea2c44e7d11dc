"""A report's files in its grid's folder: table.{md,csv,tex,html} (atomic writes, vitstudy.runfolder),
its figures (vitstudy.results.plots), with `tuning.png` for a grid that has tuning runs, and report.html
(vitstudy.results.page), the page that shows them all, the figures inline, with links to every run.
A folder that cannot be written (full, read-only) ends the report with a StorageError naming the file:
each file is whole, old or new (atomic writes), and report.html, written last, is the one before."""

from __future__ import annotations

from pathlib import Path

from vitstudy import runfolder
from vitstudy.results.page import PAGE_FILE, page
from vitstudy.results.plots import plot_all, tuning_curve
from vitstudy.results.render import FORMATS, render
from vitstudy.results.table import Report


def write(report: Report, out_dir: Path, plots: bool = True) -> list[Path]:
    """table.{md,csv,tex,html}, (with `plots`) the figures, and report.html in `out_dir`; returns the
    paths."""
    try:
        with runfolder.storage_faults(out_dir):
            return _write(report, Path(out_dir), plots)
    except runfolder.StorageError as e:
        raise runfolder.StorageError(f"report not finished: {e}") from e


def _write(report: Report, out_dir: Path, plots: bool) -> list[Path]:
    written = []
    for fmt in FORMATS:
        path = Path(out_dir) / f"table.{fmt}"
        runfolder.write_text(path, render(report, fmt))
        written.append(path)
    if plots:
        written += plot_all(report, Path(out_dir))
    if plots and report.tuning:
        written += tuning_curve(report, Path(out_dir) / "tuning")
    path = Path(out_dir) / PAGE_FILE  # last: it inlines the figures just written
    runfolder.write_text(path, page(report, Path(out_dir), [p for p in written if p.suffix == ".svg"]))
    return written + [path]
