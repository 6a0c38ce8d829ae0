"""The background figure pool: every figure drawn and handed back, repeats copied, failures told."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest

from fedgen.figures import pool as figure_pool
from fedgen.figures.pool import FigureTask


def test_figures_are_drawn_in_the_background_and_repeats_are_copied(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    task = FigureTask(
        "gradient_norm_histogram", (rng.random(500), rng.random(500) < 0.8, 0.4, "subtitle")
    )
    other = FigureTask("client_auc_bars", ({"gmia": {0: 0.6, 1: 0.5}}, "subtitle"))
    done: list[Path] = []
    figure_pool.submit([task, other], tmp_path / "a", done.append)
    figure_pool.wait()
    assert sorted(p.name for p in done) == ["client_auc.png", "gradient_norm_histogram.png"]
    assert task.key() in figure_pool._drawn
    figure_pool.submit([task], tmp_path / "b", done.append)  # drawn before: copied at once
    assert done[-1] == tmp_path / "b" / "gradient_norm_histogram.png"
    figure_pool.wait()
    first = (tmp_path / "a" / "gradient_norm_histogram.png").read_bytes()
    assert first[:8] == b"\x89PNG\r\n\x1a\n"
    assert (tmp_path / "b" / "gradient_norm_histogram.png").read_bytes() == first
    # The background drawing equals drawing here.
    assert task.draw().data["member_counts"].sum() == (task.args[1]).sum()


def test_a_failing_figure_is_logged_and_does_not_block(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    done: list[Path] = []
    empty = (np.empty(0), np.empty(0, dtype=bool))
    bad = FigureTask("roc_curves", ({"gmia": empty}, {}, "subtitle"))  # no scores to draw
    with caplog.at_level(logging.ERROR, logger="fedgen"):
        figure_pool.submit([bad], tmp_path, done.append)
        figure_pool.wait()
    assert done == []
    assert "figure roc_curves failed" in caplog.text
