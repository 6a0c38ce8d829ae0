"""Draw figures in a background process, so that a job's figures barely delay it.

Rendering PNGs with matplotlib costs ~0.15 s per figure here, about 1.5 s for a job's set. The
job hands each figure to this pool as a :class:`FigureTask` (a function of :mod:`..plots`
and its arguments) and goes on; the pool draws it, writes the PNG atomically and calls back,
which logs the file to the job's run (MLflow accepts artifacts after a run has ended). In a
sweep, one job's figures are drawn while the next job runs. :func:`wait` blocks until every
figure is done; the CLI calls it before exiting.

The drawing processes ignore Ctrl-C and SIGTERM and die with the main process
(:mod:`fedgen.core.lifecycle`); on an interrupt the CLI calls :func:`abort`, which ends them at
once and drops the figures not drawn yet.
"""

from __future__ import annotations

import atexit
import hashlib
import itertools
import logging
import multiprocessing
import os
import pickle
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fedgen.core import lifecycle, progress
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


def _child_start(parent: int) -> None:
    """In each drawing process: Ctrl-C and SIGTERM are the main process's to handle (it ends
    us with SIGKILL: a PNG is written atomically); die with it."""
    lifecycle.become_child(parent, ignore=lifecycle.STOP_SIGNALS)
    # One BLAS thread: a figure's matrices are small, and the job and the other drawing process
    # have the other cores. Multi-threaded OpenBLAS spun here for 0.8 s on the default
    # cohort's PCA (0.03 s with one thread).
    from threadpoolctl import threadpool_limits

    threadpool_limits(1)
    _warm_up()


WORKERS = 2  # on a 2-core machine the job is idle while its last figures are drawn
_executor: ProcessPoolExecutor | None = None
_lock = threading.Lock()
_idle = threading.Condition(_lock)
_outstanding: set[int] = set()  # submitted figures whose callback has not finished yet
_tickets = itertools.count()
_drawn: dict[str, tuple[str, bytes]] = {}  # task key -> (file name, PNG) drawn in this process
_at_exit_registered: list[bool] = []


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
            # child would inherit their locks. Made outside signals_blocked: the executor
            # starts multiprocessing's resource tracker, which unblocks signals when started.
            executor = ProcessPoolExecutor(
                max_workers=WORKERS,
                mp_context=multiprocessing.get_context("spawn"),
                initializer=_child_start,
                initargs=(os.getpid(),),
            )
            with lifecycle.signals_blocked():
                for _ in range(WORKERS):  # processes start on demand: demand them now
                    executor.submit(_warm_up)
            if not _at_exit_registered:
                atexit.register(_at_exit)
                _at_exit_registered.append(True)
            _executor = executor


def submit(tasks: Sequence[FigureTask], folder: Path, on_done: Callable[[Path], None]) -> None:
    """Draw ``tasks`` into ``folder`` in the background; call ``on_done(png_path)`` for each.

    A figure drawn before in this process from identical inputs (the cohort's PCA, say, in
    every job of a threshold sweep) is copied instead of drawn again.
    """
    start()
    for task in tasks:
        key = task.key()
        with _lock:
            drawn = _drawn.get(key)
            ticket = next(_tickets)
            _outstanding.add(ticket)
        if drawn is not None:
            name, png = drawn
            copied: Future[str] = Future()
            atomic_write_bytes(folder / name, png)
            copied.set_result(str(folder / name))
            _callback(task, on_done, None, ticket)(copied)
            continue
        future = _submit(_render, task, str(folder))
        future.add_done_callback(_callback(task, on_done, key, ticket))


def _submit(fn: Callable[[FigureTask, str], str], task: FigureTask, folder: str) -> Future[str]:
    """Submit to the pool; a pool whose process died (killed from outside) is replaced once."""
    global _executor
    if _in_worker():
        drawn: Future[str] = Future()
        try:
            drawn.set_result(fn(task, folder))
        except Exception as exc:  # reported by the callback, as from the pool
            drawn.set_exception(exc)
        return drawn
    for attempt in (1, 2):
        executor = _executor
        assert executor is not None
        try:
            with lifecycle.signals_blocked():
                return executor.submit(fn, task, folder)
        except BrokenProcessPool:
            if attempt == 2:
                raise
            log.warning("a figure-drawing process died; starting new ones")
            with _lock:
                if _executor is executor:
                    _executor = None
            executor.shutdown(wait=False, cancel_futures=True)
            start()
    raise AssertionError("unreachable")


def _callback(
    task: FigureTask, on_done: Callable[[Path], None], key: str | None, ticket: int
) -> Callable[[Future[str]], None]:
    def done(future: Future[str]) -> None:
        try:
            with _lock:
                if ticket not in _outstanding:
                    return  # dropped by abort(): nothing to report
            path = Path(future.result())
            if key is not None:
                with _lock:
                    _drawn[key] = (path.name, path.read_bytes())
            on_done(path)
        # BaseException: this runs in the executor's own thread, which must survive whatever the
        # drawing process sent back, or every later figure (and wait()) would hang.
        except BaseException as exc:  # a figure must not take the experiment down; say so loudly
            if lifecycle.received() is None:  # else abort() tells, once
                log.error("figure %s failed: %s: %s", task.function, type(exc).__name__, exc)
        finally:
            with _lock:
                _outstanding.discard(ticket)
                _idle.notify_all()

    return done


def wait() -> None:
    """Block until every submitted figure has been drawn and handed to its callback (a
    progress bar counts them down when drawing is still under way)."""
    with _lock:
        pending = len(_outstanding)
    if not pending:
        return
    with progress.step("figures", total=pending) as done, _lock:
        left = pending
        while _outstanding:
            _idle.wait()
            now = len(_outstanding)
            if now < left:
                done(left - now)
                left = now


def abort() -> int:
    """Stop drawing now: kill the drawing processes and drop the figures not drawn yet.

    Returns how many figures were dropped.
    """
    global _executor
    with _lock:
        executor, _executor = _executor, None
        dropped = len(_outstanding)
        _outstanding.clear()
        _idle.notify_all()
    if executor is None:
        return dropped
    # The executor has no public handle on its processes; _processes exists since Python 3.2.
    procs = list((getattr(executor, "_processes", None) or {}).values())
    executor.shutdown(wait=False, cancel_futures=True)
    for proc in procs:
        if proc.is_alive():
            proc.kill()  # they ignore SIGTERM; nothing of theirs needs closing
    for proc in procs:
        proc.join(timeout=2.0)
    if dropped:
        log.warning("%d figure(s) not drawn: interrupted", dropped)
    return dropped


def _at_exit() -> None:
    """At exit: wait for the figures, unless the command was interrupted (then drop them)."""
    if lifecycle.received() is not None:
        abort()
    else:
        wait()
