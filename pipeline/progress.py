"""What a long command is doing now: stages and progress bars, on a terminal only.

Library code says what it is doing (`stage("fitting ...")`, `steps("bootstrap", total)`)
and never decides how it is shown. By default nothing is shown (a DEBUG log line per
stage), which is what CI logs, `--json` and the notebook get. A command that runs on a
terminal wraps itself in `shown_on_terminal()`, which draws the stages with rich on
stderr (stdout stays for the command's answer) while the command runs.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, Protocol

log = logging.getLogger(__name__)

Advance = Callable[[int], None]


class Display(Protocol):
    def stage(self, text: str) -> Any: ...  # a context manager

    def steps(self, text: str, total: int | None) -> Any: ...  # a context giving Advance

    def line(self, text: str) -> bool: ...  # True if the display printed it


class _Logged:
    """The default: stages and their durations as DEBUG log lines, no drawing."""

    @contextmanager
    def stage(self, text: str) -> Iterator[None]:
        begin = time.monotonic()
        yield
        log.debug("%s: %.1f s", text, time.monotonic() - begin)

    @contextmanager
    def steps(self, text: str, total: int | None) -> Iterator[Advance]:
        with self.stage(text):
            yield lambda _n: None

    def line(self, text: str) -> bool:
        return False


class _Rich:
    """One rich Progress for the whole command: a spinner per stage, a bar per loop."""

    def __init__(self, progress: Any) -> None:
        self.progress = progress

    def line(self, text: str) -> bool:
        self.progress.console.print(text, markup=False, highlight=False, soft_wrap=True)
        return True

    @contextmanager
    def stage(self, text: str) -> Iterator[None]:
        task = self.progress.add_task(text, total=None, counted=False)
        try:
            yield
        finally:
            self.progress.update(task, total=1, completed=1)

    @contextmanager
    def steps(self, text: str, total: int | None) -> Iterator[Advance]:
        task = self.progress.add_task(text, total=total, counted=True)
        try:
            yield lambda n: self.progress.advance(task, n)
        finally:
            done = self.progress.tasks[task].completed
            self.progress.update(task, total=total or done, completed=total or done)


_display: Display = _Logged()


def stage(text: str) -> Any:
    """`with stage("fitting hist_gradient_boosting"):` around one long step."""
    return _display.stage(text)


def steps(text: str, total: int | None) -> Any:
    """`with steps("bootstrap resamples", 2000) as advance: ... advance(n)`; None: a count."""
    return _display.steps(text, total)


def line(text: str) -> bool:
    """Print a line above the drawing when one is shown (else False: print it yourself)."""
    return _display.line(text)


def drawing() -> bool:
    """True while stages and bars are drawn (a person watches): worth reporting detail."""
    return isinstance(_display, _Rich)


def on_terminal() -> bool:
    """A person is watching: stderr is a terminal, not CI, not a dumb terminal."""
    return (sys.stderr.isatty() and not os.environ.get("CI")
            and os.environ.get("TERM", "") != "dumb")


@contextmanager
def shown_on_terminal(*, quiet: bool = False) -> Iterator[None]:
    """Draw stages and bars while the block runs, if a person is watching and not quiet."""
    global _display
    if quiet or not on_terminal():
        yield
        return
    from rich.console import Console
    from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    console = Console(stderr=True)
    columns = (SpinnerColumn(finished_text="[green]done"), TextColumn("{task.description}"),
               BarColumn(bar_width=24), _count_column(), TimeElapsedColumn())
    previous = _display
    with Progress(*columns, console=console, redirect_stderr=True) as progress:
        _display = _Rich(progress)
        try:
            yield
        finally:
            _display = previous


def _count_column() -> Any:
    """`1,500/2,000` for a loop (`rows 12,000` without a total); nothing for a stage."""
    from rich.progress import ProgressColumn
    from rich.table import Column
    from rich.text import Text

    class Count(ProgressColumn):
        def render(self, task: Any) -> Text:
            if not task.fields.get("counted"):
                return Text("")
            done = int(task.completed)
            return Text(f"{done:,}/{int(task.total):,}" if task.total else f"{done:,}")

    return Count(table_column=Column(no_wrap=True, justify="right", min_width=13))
