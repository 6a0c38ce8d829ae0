"""The sweep validates each distinct composition once, and still fails before any job runs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.test_cli import TINY, fedgen


class _CountingLoader:
    """Stands in for Hydra's config loader: records what would be composed."""

    class _Repository:
        def group_exists(self, name: str) -> bool:
            return name in {"attack", "dataset", "evaluation", "federation/backend"}

    def __init__(self) -> None:
        self.repository = self._Repository()
        self.composed: list[list[str]] = []

    def load_sweep_config(self, master_config: Any, sweep_overrides: list[str]) -> None:
        self.composed.append(sweep_overrides)


def test_validation_composes_each_distinct_group_combination_once() -> None:
    from hydra_plugins.fedgen_sweeper import FedgenSweeper

    sweeper = FedgenSweeper(max_batch_size=None)
    loader = _CountingLoader()
    sweeper.hydra_context = type("Ctx", (), {"config_loader": loader})()  # type: ignore[assignment]
    sweeper.config = object()  # type: ignore[assignment]
    batch = [
        [f"attack={a}", f"threshold={t}", "seed=1"]
        for a in ("mia", "gmia")
        for t in ("0.3", "0.45", "0.5")
    ] + [["attack=gmia", "threshold=0.3", "hydra.job.chdir=true"], ["+extra=1", "threshold=0.3"]]
    sweeper.validate_batch_is_legal(batch)
    assert loader.composed == [
        ["attack=mia", "threshold=0.3", "seed=1"],
        ["attack=gmia", "threshold=0.3", "seed=1"],
        ["attack=gmia", "threshold=0.3", "hydra.job.chdir=true"],
        ["+extra=1", "threshold=0.3"],
    ]


@pytest.mark.slow
def test_a_bad_group_choice_fails_the_sweep_before_any_job(tmp_path: Path) -> None:
    out = fedgen(
        tmp_path,
        *TINY,
        "tracking=none",
        "hydra.sweep.dir=s",
        "attack=gmia,nosuch",
        "threshold=0.3,0.5",
        "--multirun",
    )
    assert out.returncode != 0
    assert "nosuch" in out.stderr
    assert not list((tmp_path / "s").glob("*/attack_logs.csv"))
