"""What a job imports: one that reuses a cached federation imports neither Flower nor Ray.

The command writes the top-level names of its imported modules at exit when
``FEDGEN_IMPORTS_FILE`` is set (:mod:`fedgen.cli`); the first command trains (so it must import
Flower, or the check below could never fail), the second is a threshold sweep whose every job
reuses that federation from the training cache.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from omegaconf import DictConfig, OmegaConf

from fedgen.core.errors import ConfigError
from fedgen.experiment.build import build_training
from fedgen.federation import FederationSettings
from fedgen.federation.runners import InProcessRunner
from fedgen.federation.settings import Deferred
from tests.test_cli import fedgen

TINY = ["dataset=tiny", "federation.num_rounds=2", "tracking=none", "attack=gmia"]
TRAINING_ONLY = ("flwr", "ray", "grpc")


def _fedgen(cwd: Path, imports: Path, *args: str) -> subprocess.CompletedProcess[str]:
    extra = {"FEDGEN_IMPORTS_FILE": str(imports)}
    return fedgen(cwd, *args, extra_env=extra, timeout=600)


def test_cache_hit_sweep_imports_no_flower_or_ray(tmp_path: Path) -> None:
    trained = _fedgen(tmp_path, tmp_path / "train.txt", *TINY, "figures=false")
    assert trained.returncode == 0, trained.stderr
    first = set((tmp_path / "train.txt").read_text().split())
    assert {"fedgen", "flwr", "sklearn"} <= first  # training imports Flower: the oracle can fail

    sweep = _fedgen(
        tmp_path,
        tmp_path / "sweep.txt",
        *TINY,
        "threshold=0.3,0.5",
        "hydra.sweep.dir=sweep",
        "--multirun",
    )
    assert sweep.returncode == 0, sweep.stderr
    log = sweep.stdout + sweep.stderr
    assert log.count("trained federation reused from the cache") == 2, log
    assert "round 1/2" not in log  # nothing trained
    modules = set((tmp_path / "sweep.txt").read_text().split())
    assert "fedgen" in modules and "sklearn" in modules  # the file lists this process's imports
    assert not modules & set(TRAINING_ONLY), sorted(modules & set(TRAINING_ONLY))


def _federation_cfg(**backend: object) -> DictConfig:
    cfg = OmegaConf.create(
        {
            "seed": 0,
            "dataset": {"_target_": "fedgen.data.SyntheticCohort", "n_individuals": 40},
            "model": {"_target_": "fedgen.models.SGDLogistic"},
            "federation": {
                "_target_": "fedgen.federation.FederationSettings",
                "num_clients": 2,
                "backend": {"_target_": "fedgen.federation.runners.InProcessRunner", **backend},
                "strategy": {
                    "_target_": "flwr.serverapp.strategy.FedAvg",
                    "_partial_": True,
                    "fraction_train": 1.0,
                },
            },
        }
    )
    assert isinstance(cfg, DictConfig)
    return cfg


def test_backend_and_strategy_are_built_on_first_read() -> None:
    training = build_training(_federation_cfg())
    fed = training.federation
    assert isinstance(fed, FederationSettings) and fed.num_clients == 2
    assert isinstance(object.__getattribute__(fed, "backend"), Deferred)
    backend = fed.backend
    assert isinstance(backend, InProcessRunner)
    assert fed.backend is backend  # built once, then kept
    assert not isinstance(object.__getattribute__(fed, "backend"), Deferred)
    strategy = fed.strategy(min_train_nodes=2, min_evaluate_nodes=2, min_available_nodes=2)
    assert type(strategy).__name__ == "FedAvg" and strategy.fraction_train == 1.0


def test_a_bad_backend_is_a_config_error_when_read() -> None:
    training = build_training(_federation_cfg(no_such_option=1))
    with pytest.raises(ConfigError, match=r"federation\.backend"):
        _ = training.federation.backend
