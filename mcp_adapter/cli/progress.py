"""The engine's progress callbacks drawn as a rich progress bar on stderr (imported only when stderr is a terminal)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta

from rich.console import Console
from rich.progress import BarColumn, DownloadColumn, ProgressColumn, SpinnerColumn, Task, TaskID, TextColumn
from rich.progress import Progress as Bar
from rich.table import Column
from rich.text import Text

from engine import Progress

__all__ = ["AmountColumn", "BarReporter", "SinceStartColumn", "terminal_bar"]

BYTES_ABOVE = 100
"""The engine reports byte counts (pulls) and step counts (attempts of at most a few) through the same callback;
a total above this is bytes."""


class AmountColumn(ProgressColumn):
    """`1.5/3.8 GB` for a pull, `2/3` for attempts, nothing while the total is unknown (the bar pulses then)."""

    def __init__(self) -> None:
        super().__init__()
        self._bytes = DownloadColumn()

    def render(self, task: Task) -> Text:
        if task.total is None:
            return Text("")
        if task.total > BYTES_ABOVE:
            return self._bytes.render(task)
        return Text(f"{task.completed:g}/{task.total:g}", style="progress.percentage")


class SinceStartColumn(ProgressColumn):
    """Time since the command's bar appeared: the bar's task is replaced between phases (see BarReporter), and
    rich's own elapsed column would restart at 0:00 each time."""

    def __init__(self) -> None:
        super().__init__()
        self._started = time.monotonic()

    def render(self, task: Task) -> Text:
        return Text(str(timedelta(seconds=int(time.monotonic() - self._started))), style="progress.elapsed")


class BarReporter:
    """A `Progress` callback that moves one bar: a pull's bytes, then an unknown-length load, then attempts."""

    def __init__(self, bar: Bar) -> None:
        self._bar = bar
        self._task: TaskID = bar.add_task("starting", total=None)
        self._total: float | None = None

    async def __call__(self, done: float, total: float | None, message: str) -> None:
        if total is None and self._total is not None:
            # rich's update() reads total=None as "unchanged", so a bar goes back to pulsing only as a new task.
            self._bar.remove_task(self._task)
            self._task = self._bar.add_task(message, total=None)
            self._bar.update(self._task, completed=done)
        else:
            self._bar.update(self._task, completed=done, total=total, description=message)
        self._total = total


@contextmanager
def terminal_bar() -> Iterator[Progress]:
    # transient: the bar is erased when the command ends, so the terminal keeps only the result, as before.
    bar = Bar(
        SpinnerColumn(),
        BarColumn(),
        AmountColumn(),
        SinceStartColumn(),
        # markup=False: messages hold model names, paths and backticks, not rich markup.
        TextColumn("{task.description}", markup=False, table_column=Column(no_wrap=True, overflow="ellipsis")),
        console=Console(stderr=True),
        transient=True,
        # rich would route print()s to stdout through the bar's console (stderr); stdout is the result's alone.
        redirect_stdout=False,
    )
    with bar:
        yield BarReporter(bar)
