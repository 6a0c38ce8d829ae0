"""Progress bars: shown on a terminal, quiet in pipes, tests and under disabled job logging."""

from __future__ import annotations

import io
import logging
import os
import pty
import select
import subprocess
import sys
from pathlib import Path

import pytest

from fedgen.core import progress
from tests.test_cli import TINY


class _Terminal(io.StringIO):
    """A text stream that says it is a terminal (what rich and :func:`enabled` look at)."""

    def isatty(self) -> bool:
        return True


def test_environment_variable_forces_either_way(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(progress.ENV, "1")
    assert progress.enabled()
    monkeypatch.setenv(progress.ENV, "0")
    monkeypatch.setattr(sys, "stderr", _Terminal())
    assert not progress.enabled()


def test_shown_only_on_a_terminal_with_fedgen_logging_on(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(progress.ENV, raising=False)
    logger = logging.getLogger("fedgen")
    level, disabled = logger.level, logger.disabled
    try:
        logger.setLevel(logging.INFO)
        monkeypatch.setattr(sys, "stderr", io.StringIO())
        assert not progress.enabled()  # a pipe or a file
        monkeypatch.setattr(sys, "stderr", _Terminal())
        assert progress.enabled()
        logger.setLevel(logging.ERROR)  # what job_logging=disabled leaves
        assert not progress.enabled()
        logger.setLevel(logging.INFO)
        logger.disabled = True
        assert not progress.enabled()
    finally:
        logger.setLevel(level)
        logger.disabled = disabled


def test_forced_bars_count_what_was_done(monkeypatch: pytest.MonkeyPatch) -> None:
    err = io.StringIO()
    monkeypatch.setattr(sys, "stderr", err)
    monkeypatch.setenv(progress.ENV, "1")
    with progress.step("outer rounds", 4) as done:
        done(1)
        progress.advance("outer rounds", 2)  # by name, from code with no handle
        progress.advance("no such step")  # nothing open by that name: no-op
        assert list(progress.track(["a", "b", "c"], "inner items")) == ["a", "b", "c"]
    text = err.getvalue()
    # A step that ends early is shown complete; the inner one counted its three items.
    assert "outer rounds" in text and "4/4" in text
    assert "inner items" in text and "3/3" in text
    assert progress._display.progress is None and not progress._display.tasks


def test_quiet_steps_cost_nothing_and_advance_is_a_no_op(monkeypatch: pytest.MonkeyPatch) -> None:
    err = io.StringIO()
    monkeypatch.setattr(sys, "stderr", err)
    monkeypatch.setenv(progress.ENV, "0")
    with progress.step("rounds", 3) as done:
        done(5)
        progress.advance("rounds")
    assert list(progress.track(range(3), "x")) == [0, 1, 2]
    assert err.getvalue() == ""
    assert progress._display.progress is None


def test_log_lines_go_through_the_bar_and_handlers_are_restored(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(sys, "stderr", _Terminal())
    monkeypatch.setenv(progress.ENV, "1")
    handler = logging.StreamHandler(sys.__stdout__)
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        with progress.step("rounds", 2):
            assert handler.stream is not sys.__stdout__  # routed through the live display
            handler.stream.write("a log line that is longer than any terminal " * 5 + "\n")
        assert handler.stream is sys.__stdout__
    finally:
        root.removeHandler(handler)
    shown = sys.stderr.getvalue()  # type: ignore[attr-defined]
    # Printed above the bar, whole: not cut into the display's width.
    assert ("a log line that is longer than any terminal " * 5).rstrip() in shown


def test_a_failing_step_closes_the_display(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "stderr", io.StringIO())
    monkeypatch.setenv(progress.ENV, "1")
    with pytest.raises(ValueError), progress.step("rounds", 2):
        raise ValueError("boom")
    assert progress._display.progress is None and progress._display.depth == 0


def _on_a_terminal(cwd: Path, *args: str) -> tuple[int, str]:
    """Run ``python -m fedgen`` with stderr on a pseudo-terminal; its exit code and stderr."""
    env = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_TRACKING_URI", progress.ENV)}
    env["FEDGEN_CACHE_DIR"] = str(cwd / "cache")
    env["COLUMNS"] = "120"
    master, slave = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-m", "fedgen", *args],
        cwd=cwd,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=slave,
    )
    os.close(slave)
    chunks: list[bytes] = []
    while True:
        ready, _, _ = select.select([master], [], [], 120)
        if not ready:
            proc.kill()
            break
        try:
            data = os.read(master, 65536)
        except OSError:  # the child closed the terminal
            break
        if not data:
            break
        chunks.append(data)
    os.close(master)
    return proc.wait(timeout=60), b"".join(chunks).decode(errors="replace")


@pytest.mark.slow
def test_a_run_on_a_terminal_shows_bars_unless_job_logging_is_disabled(tmp_path: Path) -> None:
    args = [*TINY, "tracking=none", "figures=false", "attack=[mia,gmia]"]
    code, shown = _on_a_terminal(tmp_path, *args)
    assert code == 0, shown
    assert "training rounds" in shown and "attacks" in shown
    code, quiet = _on_a_terminal(tmp_path, *args, "hydra/job_logging=disabled")
    assert code == 0, quiet
    assert "training rounds" not in quiet and "━" not in quiet
