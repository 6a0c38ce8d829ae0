"""Draw figures in a background process, so that a job's figures barely delay it.

Rendering PNGs with matplotlib costs ~0.15 s per figure here, about 1.5 s for a job's set. The
job hands each figure to this pool as a :class:`FigureTask` (a function of :mod:`..plots`
and its arguments) and goes on; the pool draws it, writes the PNG atomically and calls back,
which logs the file to the job's run (MLflow accepts artifacts after a run has ended). In a
sweep, one job's figures are drawn while the next job runs. :func:`wait` blocks until every
figure is done; the CLI calls it before exiting.
"""

from __future__ import annotations

import atexit
import hashlib
import logging
import multiprocessing
import pickle
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fedgen.core.io import atomic_write_bytes
from fedgen.figures.base import Plot, save_png

log = logging.getLogger("fedgen")


@dataclass(frozen=True)
class FigureTask:
    """A call ``fedgen.figures.plots.<function>(*args, **kwargs)`` that returns a :class:`Plot`."""

    function: str
    args: tuple[Any, ...] = ()
    kwargs: dict[str, Any] = field(default_factory=dict)

    def key(self) -> str:
        """A digest of the call: equal keys draw equal figures."""
        payload = pickle.dumps((self.function, self.args, self.kwargs), protocol=5)
        return hashlib.sha256(payload).hexdigest()

    def draw(self) -> Plot:
        """Make the figure in this process."""
        from fedgen.figures import plots

        plot: Plot = getattr(plots, self.function)(*self.args, **self.kwargs)
        return plot


def _render(task: FigureTask, folder: str) -> str:
    return str(save_png(task.draw(), Path(folder)))


def _warm_up() -> None:
    from fedgen.figures import plots  # noqa: F401  (imports matplotlib before the first task)


WORKERS = 2  # on a 2-core machine the job is idle while its last figures are drawn
_executor: ProcessPoolExecutor | None = None
_lock = threading.Lock()
_idle = threading.Condition(_lock)
_outstanding = 0  # submitted figures whose callback has not finished yet
_drawn: dict[str, tuple[str, bytes]] = {}  # task key -> (file name, PNG) drawn in this process


def _in_worker() -> bool:
    """Whether this process is a worker of a parallel sweep (hydra/launcher=joblib): it draws
    in-process. Its jobs already run side by side, and a multiprocessing child waits for its
    own children before its exit handlers could end a pool: the sweep would hang."""
    return multiprocessing.parent_process() is not None


def start() -> None:
    """Start the drawing process now, so its imports overlap the job's training."""
    global _executor
    if _in_worker():
        return
    with _lock:
        if _executor is None:
            # spawn, not fork: the parent may run threads (Flower, MLflow's pipe), and a forked
            # child would inherit their locks.
            _executor = ProcessPoolExecutor(
                max_workers=WORKERS,
                mp_context=multiprocessing.get_context("spawn"),
                initializer=_warm_up,
            )
            for _ in range(WORKERS):  # processes start on demand: demand them now
                _executor.submit(_warm_up)
            atexit.register(wait)


def submit(tasks: Sequence[FigureTask], folder: Path, on_done: Callable[[Path], None]) -> None:
    """Draw ``tasks`` into ``folder`` in the background; call ``on_done(png_path)`` for each.

    A figure drawn before in this process from identical inputs (the cohort's PCA, say, in
    every job of a threshold sweep) is copied instead of drawn again.
    """
    global _outstanding
    start()
    for task in tasks:
        key = task.key()
        with _lock:
            drawn = _drawn.get(key)
            _outstanding += 1
        if drawn is not None:
            name, png = drawn
            copied: Future[str] = Future()
            atomic_write_bytes(folder / name, png)
            copied.set_result(str(folder / name))
            _callback(task, on_done, None)(copied)
            continue
        if _in_worker():
            future: Future[str] = Future()
            try:
                future.set_result(_render(task, str(folder)))
            except Exception as exc:  # reported by the callback, as from the pool
                future.set_exception(exc)
        else:
            assert _executor is not None
            future = _executor.submit(_render, task, str(folder))
        future.add_done_callback(_callback(task, on_done, key))


def _callback(
    task: FigureTask, on_done: Callable[[Path], None], key: str | None
) -> Callable[[Future[str]], None]:
    def done(future: Future[str]) -> None:
        global _outstanding
        try:
            path = Path(future.result())
            if key is not None:
                with _lock:
                    _drawn[key] = (path.name, path.read_bytes())
            on_done(path)
        except Exception as exc:  # a figure must not take the experiment down; say so loudly
            log.error("figure %s failed: %s: %s", task.function, type(exc).__name__, exc)
        finally:
            with _lock:
                _outstanding -= 1
                _idle.notify_all()

    return done


def wait() -> None:
    """Block until every submitted figure has been drawn and handed to its callback."""
    with _lock:
        _idle.wait_for(lambda: _outstanding == 0)
