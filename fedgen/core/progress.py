"""Progress bars for the steps that can take more than a few seconds.

One ``rich`` progress display on stderr, shared by nested steps (simulation, loading, training
rounds, attacks, reference models, figures). Code deep in a layer reports with :func:`advance`
by the step's name, so it needs no handle on the display; with no such step open it is a no-op.

When it shows
-------------
- ``FEDGEN_PROGRESS=0``: never; ``FEDGEN_PROGRESS=1``: always (also when stderr is not a
  terminal: the final state of each bar is printed once, which is what the tests read).
- Otherwise only on an interactive stderr with fedgen's logger enabled at INFO, so it is quiet
  under ``hydra/job_logging=disabled``, in tests, in CI logs and in pipes.

While a bar is shown, the console log handlers write through the display, so log lines (one per
training round) appear above the bar instead of being torn by it.
"""

from __future__ import annotations

import io
import logging
import os
import sys
from collections.abc import Callable, Iterable, Iterator, Sized
from contextlib import contextmanager
from typing import IO, TYPE_CHECKING, TypeVar

if TYPE_CHECKING:
    from rich.progress import Progress, TaskID

__all__ = ["advance", "enabled", "step", "track"]

T = TypeVar("T")

ENV = "FEDGEN_PROGRESS"


class _Display:
    """The one live display and its open steps (name -> task), outermost first."""

    def __init__(self) -> None:
        self.progress: Progress | None = None
        self.tasks: dict[str, list[TaskID]] = {}
        self.depth = 0
        self.streams: list[tuple[logging.StreamHandler[IO[str]], IO[str]]] = []


_display = _Display()


def enabled() -> bool:
    """Whether progress is shown now (see the module docstring)."""
    setting = os.environ.get(ENV, "").strip()
    if setting in ("0", "1"):
        return setting == "1"
    logger = logging.getLogger("fedgen")
    if logger.disabled or not logger.isEnabledFor(logging.INFO):
        return False
    stream = sys.stderr
    return bool(stream is not None and hasattr(stream, "isatty") and stream.isatty())


@contextmanager
def step(name: str, total: int | None = None) -> Iterator[Callable[[int], None]]:
    """Show a bar named ``name`` (``total`` items, or a spinner if None) while the block runs.

    Yields ``advance(n=1)``; code elsewhere may call :func:`advance` with the same ``name``.
    """
    if not enabled():
        yield _nothing
        return
    _open()
    assert _display.progress is not None
    task = _display.progress.add_task(name, total=total)
    _display.tasks.setdefault(name, []).append(task)

    def done(n: int = 1) -> None:
        _advance_task(task, n)

    try:
        yield done
    finally:
        _display.tasks[name].remove(task)
        if not _display.tasks[name]:
            del _display.tasks[name]
        _finish(task)
        _close()


def advance(name: str, n: int = 1) -> None:
    """Advance the innermost open step called ``name`` by ``n``; nothing if none is open."""
    tasks = _display.tasks.get(name)
    if tasks:
        _advance_task(tasks[-1], n)


def track(items: Iterable[T], name: str, total: int | None = None) -> Iterator[T]:
    """Yield ``items`` while a bar named ``name`` counts them."""
    if total is None and isinstance(items, Sized):
        total = len(items)
    with step(name, total) as done:
        for item in items:
            yield item
            done(1)


def _nothing(n: int = 1) -> None:
    return None


def _advance_task(task: TaskID, n: int) -> None:
    if _display.progress is not None:
        _display.progress.advance(task, n)


def _finish(task: TaskID) -> None:
    """Fill a finished bar (a step may end early or have had no total), then drop it when the
    display is interactive (the log lines say what was done)."""
    progress = _display.progress
    if progress is None:
        return
    found = [t for t in progress.tasks if t.id == task]
    if found and found[0].total is not None:
        progress.update(task, completed=found[0].total)
    if progress.console.is_terminal:
        progress.remove_task(task)


def _open() -> None:
    _display.depth += 1
    if _display.depth > 1:
        return
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        SpinnerColumn,
        TextColumn,
        TimeElapsedColumn,
    )

    console = Console(file=sys.stderr)
    _display.progress = Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=console.is_terminal,
        redirect_stdout=console.is_terminal,
        redirect_stderr=console.is_terminal,
    )
    _display.progress.start()
    if console.is_terminal:
        _route_log_handlers()


def _close() -> None:
    _display.depth -= 1
    if _display.depth > 0 or _display.progress is None:
        return
    progress, _display.progress = _display.progress, None
    try:
        progress.stop()
    finally:
        for handler, stream in _display.streams:
            handler.setStream(stream)
        _display.streams.clear()


class _AboveTheBars(io.TextIOBase):
    """A text stream whose complete lines the live display prints above its bars, unwrapped
    (a terminal wraps them as it would have; copied text keeps its lines whole)."""

    def __init__(self, progress: Progress) -> None:
        self._progress = progress
        self._pending = ""

    def write(self, text: str) -> int:
        from rich.text import Text

        lines = (self._pending + text).split("\n")
        self._pending = lines.pop()
        for line in lines:
            self._progress.console.print(Text(line), soft_wrap=True)
        return len(text)

    def flush(self) -> None:
        if self._pending:
            self.write("\n")


def _route_log_handlers() -> None:
    """Point console log handlers (Hydra's, bound to the real stdout/stderr) at the display,
    so a log line is printed above the bar instead of tearing it."""
    assert _display.progress is not None
    originals = {id(sys.__stdout__), id(sys.__stderr__), id(sys.stdout), id(sys.stderr)}
    above = _AboveTheBars(_display.progress)
    seen: set[int] = set()
    for logger in (logging.getLogger(), logging.getLogger("fedgen")):
        for handler in logger.handlers:
            if id(handler) in seen or isinstance(handler, logging.FileHandler):
                continue
            seen.add(id(handler))
            if isinstance(handler, logging.StreamHandler) and id(handler.stream) in originals:
                old = handler.setStream(above)
                if old is not None:
                    _display.streams.append((handler, old))
