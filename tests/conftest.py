"""Shared fixtures: a tiny cohort and its split, and Hydra composition of the real config tree."""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from flwr.serverapp.strategy import FedAvg
from hydra import compose, initialize_config_module
from omegaconf import DictConfig

from fedgen.core.records import Cohort, Split
from fedgen.core.seeding import child_rng
from fedgen.data import SyntheticCohort, partition
from fedgen.federation import FederationSettings
from fedgen.federation.runners import InProcessRunner
from fedgen.federation.settings import Runner


@pytest.fixture(scope="session")
def tiny_cohort() -> Cohort:
    return SyntheticCohort(n_individuals=300, n_snps=20, n_causal=5).load(child_rng(0, "cohort"))


def make_split(cohort: Cohort, num_clients: int, seed: int = 0) -> Split:
    return partition(cohort.labels, num_clients, 0.2, child_rng(seed, "partition"))


def settings(
    num_clients: int,
    num_rounds: int,
    local_epochs: int = 1,
    backend: Runner | None = None,
    strategy: Callable[..., Any] | None = None,
) -> FederationSettings:
    """Federation settings as the default config builds them (Flower's FedAvg, every client)."""
    return FederationSettings(
        backend=backend or InProcessRunner(),
        strategy=strategy or functools.partial(FedAvg, fraction_train=1.0, fraction_evaluate=1.0),
        num_clients=num_clients,
        num_rounds=num_rounds,
        local_epochs=local_epochs,
    )


@pytest.fixture()
def compose_cfg() -> Iterator[Callable[..., DictConfig]]:
    """Compose the real config tree (as the CLI does) with overrides."""
    with initialize_config_module(config_module="fedgen.conf", version_base="1.3"):

        def _compose(*overrides: str) -> DictConfig:
            return compose(config_name="config", overrides=list(overrides))

        yield _compose


@pytest.fixture(autouse=True)
def _private_cache(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Keep the training cache of every test out of the user's cache directory."""
    monkeypatch.setenv("FEDGEN_CACHE_DIR", str(tmp_path_factory.mktemp("cache")))
