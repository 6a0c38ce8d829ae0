"""Stopping: the first Ctrl-C or SIGTERM stops fedgen at once; its helpers never outlive it.

The main process calls :func:`install`: the first SIGINT or SIGTERM raises :class:`Interrupted`
(a :class:`KeyboardInterrupt`) in the main thread, so that every ``with``/``finally`` on the way
out closes what it opened (the tracked run ends KILLED); later signals only say that fedgen is
stopping. A watchdog ends the process :data:`GRACE_S` seconds after the first signal whatever
still runs, so that no interrupt ever needs a second one.

Helper processes (the MLflow worker, the figure-drawing processes) are started inside
:func:`signals_blocked` and call :func:`become_child` first thing: a Ctrl-C sent to the
terminal's process group then reaches only the main process, which closes the helpers in order;
and they exit when the main process is gone, even if it was killed with SIGKILL.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)
GRACE_S = 15.0  # from the first signal to the process's end, at most, whatever hangs
POLL_S = 0.25  # how often a helper checks that its parent is alive (where prctl is missing)
_PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


class Interrupted(KeyboardInterrupt):
    """The process got SIGINT or SIGTERM: stop the job and the sweep, close every run."""

    def __init__(self, signum: int) -> None:
        super().__init__(f"interrupted by {signal.Signals(signum).name}")
        self.signum = signum

    @property
    def exit_code(self) -> int:
        """The shell's code for death by this signal: 130 for SIGINT, 143 for SIGTERM."""
        return 128 + self.signum


_received: int | None = None  # the first stop signal, once it came
_pending: int | None = None  # a signal that came inside deferred(), raised at its end
_deferring = 0
_told = False
_on_interrupt: list[Callable[[], None]] = []


def on_interrupt(callback: Callable[[], None]) -> None:
    """Call ``callback()`` at the first stop signal, before anything else is done (e.g. tell a
    helper to hurry). It must be quick and must not raise."""
    _on_interrupt.append(callback)


def install() -> None:
    """In the main process: SIGINT and SIGTERM raise :class:`Interrupted` once."""
    for signum in STOP_SIGNALS:
        signal.signal(signum, _handle)


def received() -> int | None:
    """The first stop signal this process got (``signal.SIGINT``...), else None."""
    return _received


def _handle(signum: int, frame: object) -> None:
    global _pending, _told
    if _received is not None:
        if not _told:
            _told = True
            print(
                f"fedgen: stopping already (runs are being closed; at most {GRACE_S:g} s)",
                file=sys.stderr,
            )
        return
    if _deferring:
        _pending = signum
        return
    _stop(signum)


def _stop(signum: int) -> None:
    global _received
    _received = signum
    for callback in _on_interrupt:
        with contextlib.suppress(Exception):
            callback()
    watchdog = threading.Timer(GRACE_S, _force_exit, args=(128 + signum,))
    watchdog.daemon = True
    watchdog.start()
    raise Interrupted(signum)


def _force_exit(code: int) -> None:
    print(
        f"fedgen: still running {GRACE_S:g} s after the interrupt: exiting now (runs left "
        "open are marked FAILED by the next fedgen command)",
        file=sys.stderr,
    )
    sys.stderr.flush()
    os._exit(code)


@contextlib.contextmanager
def deferred() -> Iterator[None]:
    """An interrupt that comes inside the block is raised at its end (in the main thread).

    For a few statements that must not be cut in half, such as one request written to a pipe.
    """
    global _deferring, _pending
    if threading.current_thread() is not threading.main_thread():
        yield  # signals are handled in the main thread only
        return
    _deferring += 1
    try:
        yield
    finally:
        _deferring -= 1
        if not _deferring and _pending is not None and _received is None:
            signum, _pending = _pending, None
            _stop(signum)


@contextlib.contextmanager
def signals_blocked(signals: tuple[int, ...] = STOP_SIGNALS) -> Iterator[None]:
    """Start helper processes inside: they begin with ``signals`` blocked (the mask is
    inherited), so a Ctrl-C cannot kill one before :func:`become_child` ignores it. A signal
    that comes meanwhile reaches this process when the block ends."""
    if not hasattr(signal, "pthread_sigmask"):
        yield
        return
    old = signal.pthread_sigmask(signal.SIG_BLOCK, signals)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


def become_child(
    parent: int,
    ignore: tuple[int, ...] = (signal.SIGINT,),
    on_orphaned: Callable[[], None] | None = None,
) -> None:
    """First thing in a helper process started by ``parent`` (its pid).

    The signals in ``ignore`` are ignored, so that only the parent decides when the helper
    ends. When the parent is gone, ``on_orphaned()`` runs in a watching thread (default:
    exit at once); without ``on_orphaned`` the helper is also killed by the kernel the moment
    its parent dies (Linux ``PR_SET_PDEATHSIG``).
    """
    for signum in ignore:
        signal.signal(signum, signal.SIG_IGN)
    if hasattr(signal, "pthread_sigmask"):
        signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)
    action = on_orphaned if on_orphaned is not None else _exit_orphaned
    if on_orphaned is None:
        _die_with_parent()
    if os.getppid() != parent:  # gone before we got here
        action()
        return
    threading.Thread(target=_watch, args=(parent, action), daemon=True).start()


def _exit_orphaned() -> None:
    os._exit(1)


def _watch(parent: int, action: Callable[[], None]) -> None:
    while os.getppid() == parent:
        time.sleep(POLL_S)
    action()


def _die_with_parent() -> bool:
    """Ask Linux to SIGKILL this process when its parent dies; False where it cannot."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return int(libc.prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)) == 0
    except (OSError, AttributeError):
        return False
