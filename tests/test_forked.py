"""fork_map: pieces of work in forked children, results in order, failures named, no orphans."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from fedgen.core import forked
from fedgen.core.forked import fork_map

pytestmark = pytest.mark.skipif(not forked.can_fork(), reason="fork_map forks on Linux only")


def _children() -> set[int]:
    """This process's live child processes (Linux), zombies excluded."""
    out: set[int] = set()
    for task in Path(f"/proc/{os.getpid()}/task").iterdir():
        for pid in (task / "children").read_text().split():
            stat = Path(f"/proc/{pid}/stat").read_text()
            if stat.rsplit(")", 1)[1].split()[0] != "Z":
                out.add(int(pid))
    return out


def test_results_come_back_in_order_from_other_processes() -> None:
    before = _children()  # e.g. drawing processes of earlier tests
    data = np.arange(12.0)  # shared copy-on-write with the children

    def piece(i: int) -> tuple[int, float]:
        return os.getpid(), float(data[i::4].sum())

    got = fork_map(piece, range(4))
    assert [s for _, s in got] == [float(data[i::4].sum()) for i in range(4)]
    pids = [pid for pid, _ in got]
    assert pids[0] == os.getpid() and len(set(pids)) == 4  # the first here, three forks
    assert _children() <= before  # no child of fork_map's left


def _raise(i: int) -> int:
    raise ValueError(f"bad piece {i}")


def _die(i: int) -> int:
    os.kill(os.getpid(), signal.SIGKILL)
    return i


@pytest.mark.parametrize(
    ("fail", "message"),
    [(_raise, "(?s)failed:.*ValueError: bad piece 1"), (_die, "died without a result.*SIGKILL")],
)
def test_a_child_that_fails_or_dies_is_an_error_naming_why(
    fail: Callable[[int], int], message: str
) -> None:
    before = _children()  # e.g. drawing processes of earlier tests

    def piece(i: int) -> int:
        return fail(i) if i == 1 else i

    with pytest.raises(RuntimeError, match=message):
        fork_map(piece, range(3))
    assert _children() <= before  # no child of fork_map's left


def test_a_failure_here_stops_the_children() -> None:
    before = _children()  # e.g. drawing processes of earlier tests

    def piece(i: int) -> int:
        if i == 0:
            raise KeyboardInterrupt  # e.g. Ctrl-C while the parent computes its piece
        time.sleep(60)
        return i

    start = time.monotonic()
    with pytest.raises(KeyboardInterrupt):
        fork_map(piece, range(3))
    assert time.monotonic() - start < 30  # the sleeping children were killed, not waited for
    assert _children() <= before  # no child of fork_map's left


def test_one_piece_or_no_fork_runs_here(monkeypatch: pytest.MonkeyPatch) -> None:
    assert fork_map(lambda i: os.getpid(), range(1)) == [os.getpid()]
    monkeypatch.setattr(forked, "can_fork", lambda: False)
    assert fork_map(lambda i: os.getpid(), range(3)) == [os.getpid()] * 3
