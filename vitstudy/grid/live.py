"""The grid's live display in a terminal, drawn with rich (as Lightning's RichProgressBar is): the grid's
bar (cells done / running / failed of the total, ETA, time so far), one bar per running cell (its epoch of
the total, step, latest training loss and validation top-1) and, above them, the failures as they happen,
which stay on screen. A `vitstudy.grid.progress.View`: the Progress redraws it on every event; rich's
own thread repaints it ten times a second. While it is on, whatever else prints (warnings, the
executor's messages) goes above it. No torch import.
"""

from __future__ import annotations

from rich.console import Console, Group
from rich.live import Live
from rich.progress import BarColumn, TaskID, TextColumn, TimeElapsedColumn
from rich.progress import Progress as Bars
from rich.text import Text

from vitstudy.grid.progress import Progress


class LiveView:
    """Use as a context manager around the executor: the display starts and, at the end, stays as it
    was last drawn."""

    def __init__(self, console: Console | None = None, refresh_per_second: float = 10):
        self.console = console or Console()
        # markup off: "[grid]" and run ids are text, not rich's style tags
        self.grid = Bars(TextColumn("{task.description}", markup=False), BarColumn(bar_width=30),
                         TextColumn("{task.fields[status]}", markup=False), TimeElapsedColumn(),
                         console=self.console)
        self.cells = Bars(TextColumn("  {task.description}", markup=False), BarColumn(bar_width=20),
                          TextColumn("{task.fields[status]}", markup=False), console=self.console)
        self.live = Live(Group(self.grid, self.cells), console=self.console,
                         refresh_per_second=refresh_per_second)
        self._grid_task: TaskID | None = None
        self._cell_tasks: dict[str, TaskID] = {}

    def __enter__(self) -> LiveView:
        self.live.start()
        return self

    def __exit__(self, *exc) -> None:
        self.live.stop()

    def changed(self, progress: Progress) -> None:
        if self._grid_task is None:
            self._grid_task = self.grid.add_task(f"[{progress.name}]", total=progress.total, status="")
        self.grid.update(self._grid_task, completed=progress.finished, status=progress.status())
        for run_id in [r for r in self._cell_tasks if r not in progress.cells]:
            self.cells.remove_task(self._cell_tasks.pop(run_id))
        for run_id, fields in progress.cells.items():  # in the order they started
            if run_id not in self._cell_tasks:
                self._cell_tasks[run_id] = self.cells.add_task(run_id, total=None, status="starting")
            self.cells.update(self._cell_tasks[run_id], **cell_bar(fields))

    def failed(self, event: str) -> None:
        self.live.console.print(Text(event, style="red"))  # printed above the bars: it stays


def cell_bar(fields: dict) -> dict:
    """A running cell's bar (total and completed, in epochs) and text, from its latest progress
    (vitstudy.training.progress_events): 'epoch 2/3 · step 40 · loss 0.912 · val/acc1 61.25%'."""
    if not fields:
        return {"status": "starting"}
    epochs = fields["epochs"]
    if fields.get("stage") == "diverged":  # a pack's member, frozen: its failure is listed when the pack ends
        return {"total": epochs, "status": "diverged; its pack trains on"}
    if fields.get("stage") == "test":
        return {"total": epochs, "completed": epochs, "status": _join(["testing", *_scores(fields)])}
    done = fields["epoch"] - 1 + fields["batch"] / max(1, fields["batches"])
    parts = [f"epoch {fields['epoch']}/{epochs}", f"step {fields['step']}", *_scores(fields)]
    return {"total": epochs, "completed": done, "status": _join(parts)}


def _scores(fields: dict) -> list[str]:
    out = []
    if fields.get("loss") is not None:
        out.append(f"loss {fields['loss']:.3f}")
    if fields.get("val_acc1") is not None:
        out.append(f"val/acc1 {fields['val_acc1']:.2f}%")
    return out


def _join(parts: list[str]) -> str:
    return " · ".join(parts)
