"""Run independent pieces of numpy work on several cores: the first here, the rest in forks.

Threads do not help the stacked reference training (:mod:`fedgen.models.stacked`): it makes
thousands of small numpy calls per second, so the GIL is rarely free (two threads of small
``np.matmul`` calls took twice one thread's time), and two threads ran slower than one.
Forked children share the parent's arrays copy-on-write (nothing is pickled on the way in),
compute their piece and send the result back through a pipe, pickled; the parent computes the
first piece meanwhile.

Only on Linux (``os.fork``; macOS's system libraries are not fork-safe) and only when more than
one piece is asked for; elsewhere every piece runs here, one after the other. Callers make the
pieces' results independent of how they are distributed, so the numbers are the same either way.

A child ignores SIGINT (the parent handles Ctrl-C and kills its children), dies with its parent
(``PR_SET_PDEATHSIG``), never runs the parent's ``atexit`` or signal handlers (``os._exit``),
and a failure in it is raised in the parent as a :class:`RuntimeError` naming the child's error.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import pickle
import signal
import sys
import traceback
from collections.abc import Callable, Sequence
from typing import TypeVar, cast

T = TypeVar("T")
R = TypeVar("R")

_PR_SET_PDEATHSIG = 1


def available_cores() -> int:
    """CPUs this process may run on (its affinity mask), at least 1."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


def can_fork() -> bool:
    """True where :func:`fork_map` runs pieces in forked children (Linux)."""
    return sys.platform.startswith("linux") and hasattr(os, "fork")


def _child(fn: Callable[[T], R], item: T, write_fd: int) -> None:
    """The forked child's whole life: compute ``fn(item)``, send it, exit without cleanup."""
    code = 1
    try:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
        try:
            message: tuple[str, object] = ("ok", fn(item))
        except BaseException:  # everything goes back to the parent
            message = ("error", traceback.format_exc())
        with os.fdopen(write_fd, "wb") as out:
            pickle.dump(message, out, protocol=pickle.HIGHEST_PROTOCOL)
        code = 0
    finally:
        os._exit(code)


def fork_map(fn: Callable[[T], R], items: Sequence[T]) -> list[R]:
    """``[fn(item) for item in items]``, the first item in this process and each other one in
    a forked child of its own, all at once (one after the other where :func:`can_fork` is
    False or there is one item).

    ``fn`` must not rely on side effects: a child's changes to memory stay in the child. The
    results come back in order.

    Raises
    ------
    RuntimeError
        A child failed (its traceback is in the message) or died without a result.
    """
    if len(items) <= 1 or not can_fork():
        return [fn(item) for item in items]
    children: list[tuple[int, int]] = []  # (pid, read end of its pipe)
    try:
        for item in items[1:]:
            read_fd, write_fd = os.pipe()
            pid = os.fork()
            if pid == 0:  # pragma: no cover - runs in the child, which never returns
                os.close(read_fd)
                _child(fn, item, write_fd)
            os.close(write_fd)
            children.append((pid, read_fd))
        results = [fn(items[0])]
        while children:
            pid, read_fd = children.pop(0)
            results.append(cast(R, _collect(pid, read_fd)))
        return results
    finally:
        for pid, read_fd in children:  # only on an exception in this process: stop the rest
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
            with contextlib.suppress(OSError):
                os.close(read_fd)
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, 0)


def _collect(pid: int, read_fd: int) -> object:
    """The result child ``pid`` sends through ``read_fd``, after it has exited."""
    try:
        with os.fdopen(read_fd, "rb") as pipe:
            message = pickle.load(pipe)
    except (EOFError, pickle.UnpicklingError):
        message = None
    _, status = os.waitpid(pid, 0)
    if message is None:
        raise RuntimeError(
            f"a worker process (pid {pid}) died without a result "
            f"({_describe(status)}); out of memory? retry with one process"
        )
    kind, value = message
    if kind == "error":
        raise RuntimeError(f"a worker process (pid {pid}) failed:\n{value}")
    return value


def _describe(status: int) -> str:
    if os.WIFSIGNALED(status):
        return f"killed by {signal.Signals(os.WTERMSIG(status)).name}"
    return f"exit status {os.waitstatus_to_exitcode(status)}"
