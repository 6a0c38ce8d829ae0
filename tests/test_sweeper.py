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


def test_a_job_differing_in_values_only_gets_the_config_hydra_composes() -> None:
    from hydra import initialize_config_module
    from hydra._internal.config_loader_impl import ConfigLoaderImpl
    from hydra.core.global_hydra import GlobalHydra
    from hydra.types import RunMode
    from omegaconf import OmegaConf

    from fedgen.experiment.sweep import SweepConfigs

    jobs = [
        ["attack=gmia", "threshold=0.3", "seed=1", "+model.alpha=0.001"],
        ["attack=gmia", "threshold=0.3", "seed=1", "+model.alpha=0.001"],  # the same again
        ["attack=gmia", "threshold=0.5", "seed=1", "+model.alpha=0.001"],  # values only
        ["attack=gmia", "threshold=0.5", "seed=7", "+model.alpha=0.001"],
        ["attack=mia", "threshold=0.5", "seed=7", "+model.alpha=0.001"],  # a group: composed
        ["attack=mia", "threshold=1", "seed=7", "+model.alpha=0.001"],  # an int for a float
        ["attack=mia", "threshold=1", "seed=7", "+model.alpha=0.01"],  # an addition: composed
        ["attack=mia", "threshold=0.2", "seed=7", "+model.alpha=0.01"],
        ["attack=mia", "threshold=0.2", "seed=7", "hydra.job.chdir=true"],  # hydra: composed
    ]
    composed: list[list[str]] = []

    def compose(loader: Any, master: Any, overrides: list[str]) -> Any:
        composed.append(overrides)
        return ConfigLoaderImpl.load_sweep_config(loader, master, overrides)

    with initialize_config_module("fedgen.conf", version_base="1.3"):
        loader = GlobalHydra.instance().config_loader()
        master = loader.load_configuration(
            "config", ["attack=gmia,mia", "threshold=0.3,0.5", "seed=1,7"], RunMode.MULTIRUN
        )
        configs = SweepConfigs()
        for overrides in jobs:
            got = configs.load(loader, compose, master, overrides)
            want = loader.load_sweep_config(master, overrides)
            assert OmegaConf.to_yaml(got) == OmegaConf.to_yaml(want), overrides
            for node in ("", "hydra", "hydra.overrides"):
                a, b = OmegaConf.select(got, node) or got, OmegaConf.select(want, node) or want
                assert OmegaConf.is_struct(a) == OmegaConf.is_struct(b)
                assert OmegaConf.is_readonly(a) == OmegaConf.is_readonly(b)
            got.hydra.job.num = 99  # what the launcher and the job do to it stays theirs
    assert composed == [jobs[0], jobs[4], jobs[6], jobs[8]]
