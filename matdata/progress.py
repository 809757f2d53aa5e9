"""Progress that talks in any terminal: a rich bar on a TTY, plain lines everywhere else.

Under ``nohup``, CI, Slurm or ``| tee`` rich's live display prints nothing until the end,
so a log stays empty for the whole job.  :func:`make_progress` returns a normal
:class:`rich.progress.Progress` when its console is a terminal, and otherwise a
:class:`LineProgress` with the same API that writes one plain line per task every
``interval`` seconds (``MATDATA_PROGRESS_INTERVAL``, default 10), on the first update and
at the end::

    train 120/1000 (12%) 3.1 steps/s elapsed 0:00:39 ETA 0:04:44 loss 0.4121 ... 24.8 samples/s

Lines are written straight to the console's file: never wrapped or cut at 80 columns.
"""

from __future__ import annotations

import os
import time
from typing import Any

from rich.console import Console
from rich.progress import Progress, TaskID

#: Environment variable: seconds between two plain progress lines of one task.
INTERVAL_ENV = "MATDATA_PROGRESS_INTERVAL"
DEFAULT_INTERVAL = 10.0


def _interval() -> float:
    try:
        return max(0.0, float(os.environ.get(INTERVAL_ENV, DEFAULT_INTERVAL)))
    except ValueError:
        return DEFAULT_INTERVAL


def clock(seconds: float | None) -> str:
    """``H:MM:SS`` (``-:--:--`` when unknown)."""
    if seconds is None or seconds != seconds or seconds == float("inf"):
        return "-:--:--"
    s = int(round(max(0.0, seconds)))
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"


class LineProgress(Progress):
    """A :class:`~rich.progress.Progress` without a live display that prints plain lines.

    ``label`` starts every line (default: the task description); ``unit`` names what is
    counted (for the rate).  Task fields (``info=...``) are appended as text.
    """

    def __init__(
        self,
        *columns: Any,
        console: Console | None = None,
        label: str | None = None,
        unit: str = "items",
        interval: float | None = None,
        **kwargs: Any,
    ) -> None:
        kwargs.pop("disable", None)
        kwargs.pop("transient", None)
        super().__init__(*columns, console=console, disable=True, **kwargs)
        self.label = label
        self.unit = unit
        self.interval = _interval() if interval is None else interval
        self._last: dict[TaskID, float] = {}
        self._printed: dict[TaskID, tuple[float, float | None]] = {}
        self._start: dict[TaskID, float] = {}

    def add_task(self, description: str, *args: Any, **kwargs: Any) -> TaskID:
        task_id = super().add_task(description, *args, **kwargs)
        self._start[task_id] = float(self._tasks[task_id].completed)
        return task_id

    def update(self, task_id: TaskID, *args: Any, **kwargs: Any) -> None:
        super().update(task_id, *args, **kwargs)
        self._maybe_print(task_id)

    def advance(self, task_id: TaskID, advance: float = 1) -> None:
        super().advance(task_id, advance)
        self._maybe_print(task_id)

    def _maybe_print(self, task_id: TaskID, force: bool = False) -> None:
        now = time.monotonic()
        last = self._last.get(task_id)
        if not force and last is not None and now - last < self.interval:
            return
        task = self._tasks.get(task_id)
        if task is None or task.started is False:
            return
        state = (float(task.completed), task.total)
        if force and (self._printed.get(task_id) == state or not task.completed):
            return  # nothing new since the last line (or nothing done at all)
        self._last[task_id] = now
        self._printed[task_id] = state
        self.console.file.write(self.line(task_id) + "\n")
        self.console.file.flush()

    def line(self, task_id: TaskID) -> str:
        """The plain progress line of one task."""
        task = self._tasks[task_id]
        parts = [self.label or task.description]
        done = task.completed
        if task.total:
            parts.append(f"{done:,.0f}/{task.total:,.0f} ({100.0 * done / task.total:.0f}%)")
        else:
            parts.append(f"{done:,.0f}")
        elapsed = task.elapsed or 0.0
        gained = done - self._start.get(task_id, 0.0)
        rate = gained / elapsed if elapsed > 0 else None
        parts.append(f"{rate:,.2f} {self.unit}/s" if rate else f"- {self.unit}/s")
        parts.append(f"elapsed {clock(elapsed)}")
        if task.total:
            eta = (task.total - done) / rate if rate else None
            parts.append(f"ETA {clock(eta)}")
        for key, value in task.fields.items():
            text = str(value).strip()
            if text:
                parts.append(text if key == "info" else f"{key} {text}")
        return " ".join(parts)

    def stop(self) -> None:
        for task_id in list(self._tasks):
            self._maybe_print(task_id, force=True)
        super().stop()


def make_progress(
    *columns: Any,
    console: Console,
    transient: bool = False,
    disable: bool = False,
    label: str | None = None,
    unit: str = "items",
    **kwargs: Any,
) -> Progress:
    """A rich live bar on a terminal, :class:`LineProgress` otherwise (None of both when
    ``disable``)."""
    if disable or console.is_terminal:
        return Progress(*columns, console=console, transient=transient, disable=disable, **kwargs)
    return LineProgress(*columns, console=console, label=label, unit=unit, **kwargs)


class TaskProgress:
    """One counted task on a :func:`make_progress` display, as callbacks a library takes.

    ``update(done, total)`` sets the count (``total`` None: unchanged, or unknown);
    ``advance(n, counted)`` adds to it, and ``counted`` to a second count shown as
    ``N {counter}`` (e.g. shards beside samples).  The task starts on the first report,
    or at once when ``total`` is given, so its elapsed time and rate count work only::

        with TaskProgress("predict", console=console, unit="images") as bar:
            predict_images(..., on_progress=bar.update)
    """

    def __init__(
        self,
        label: str,
        *,
        console: Console,
        enabled: bool = True,
        unit: str = "items",
        total: float | None = None,
        counter: str | None = None,
    ) -> None:
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            SpinnerColumn,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        extra = (TextColumn("{task.fields[info]}"),) if counter else ()
        self.progress = make_progress(
            SpinnerColumn(),
            TextColumn(f"[bold]{label}[/]"),
            BarColumn(),
            MofNCompleteColumn(),
            *extra,
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=console,
            transient=True,
            disable=not enabled,
            label=label,
            unit=unit,
        )
        self.label, self.counter, self.counted = label, counter, 0
        self._task: TaskID | None = None
        if total is not None:
            self._start(total)

    def _start(self, total: float | None) -> TaskID:
        if self._task is None:
            info = f"0 {self.counter}" if self.counter else ""
            self._task = self.progress.add_task(self.label, total=total, info=info)
        return self._task

    def update(self, done: float, total: float | None = None) -> None:
        self.progress.update(self._start(total), completed=done, total=total)

    def advance(self, n: float = 1, counted: int = 0) -> None:
        self.counted += counted
        info = {"info": f"{self.counted} {self.counter}"} if self.counter else {}
        self.progress.update(self._start(None), advance=n, **info)

    def __enter__(self) -> TaskProgress:
        self.progress.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.progress.__exit__(*exc)
