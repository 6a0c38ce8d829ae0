"""Every config option composes and builds; bad values give a ConfigError naming the key."""

from __future__ import annotations

from collections.abc import Callable
from importlib.resources import files
from pathlib import Path

import pytest
from omegaconf import DictConfig
from sklearn.linear_model import SGDClassifier

from fedgen.attacks import ConfidenceMIA, GradientLIA, GradientNormMIA
from fedgen.core.errors import ConfigError
from fedgen.data import CsvCohort, SyntheticCohort
from fedgen.evaluation.pools import BalancedPool, PaperPool
from fedgen.experiment.build import build_experiment, flatten, run_name
from fedgen.federation.runners import InProcessRunner, RayRunner
from fedgen.tracking.trackers import InMemoryTracker, MlflowTracker

Compose = Callable[..., DictConfig]


def _build(cfg: DictConfig, tmp_path: Path) -> object:
    return build_experiment(cfg, launch_dir=tmp_path, output_dir=tmp_path, overrides=[])


def _options(group: str) -> list[str]:
    folder = files("fedgen.conf").joinpath(group)
    return sorted(p.name[:-5] for p in folder.iterdir() if p.name.endswith(".yaml"))


def test_every_option_of_every_group_composes_and_builds(
    compose_cfg: Compose, tmp_path: Path
) -> None:
    expected = {
        "dataset": {"synthetic_snp": SyntheticCohort, "tiny": SyntheticCohort, "csv": CsvCohort},
        "tracking": {"mlflow": MlflowTracker, "none": InMemoryTracker},
        "federation/backend": {"inprocess": InProcessRunner, "ray": RayRunner},
    }
    for group, classes in expected.items():
        assert set(_options(group)) == set(classes), group
        for option, cls in classes.items():
            extra = ["dataset.path=x.csv"] if option == "csv" else []
            exp = _build(compose_cfg(f"{group}={option}", *extra), tmp_path)
            attr = {"dataset": "dataset", "tracking": "tracker"}.get(group)
            built = getattr(exp, attr) if attr else exp.federation.backend  # type: ignore[attr-defined]
            assert isinstance(built, cls), (group, option)
    for group in ("model", "federation"):
        for option in _options(group):
            assert _build(compose_cfg(f"{group}={option}"), tmp_path) is not None
    attacks = {"all": ["mia", "gmia", "lia"], "mia": ["mia"], "gmia": ["gmia"], "lia": ["lia"]}
    assert set(_options("attack")) == set(attacks)
    for option, names in attacks.items():
        exp = _build(compose_cfg(f"attack={option}"), tmp_path)
        assert [a.name for a in exp.attacks] == names  # type: ignore[attr-defined]
        assert exp.params["attack"] == ",".join(names)  # type: ignore[attr-defined]
    evaluations = {"paper": PaperPool, "balanced": BalancedPool}
    assert set(_options("evaluation")) == set(evaluations)
    for option, cls in evaluations.items():
        exp = _build(compose_cfg(f"evaluation={option}"), tmp_path)
        assert isinstance(exp.evaluation, cls)  # type: ignore[attr-defined]
        assert exp.params["evaluation"] == option  # type: ignore[attr-defined]


def test_default_config_is_the_reference_study(compose_cfg: Compose, tmp_path: Path) -> None:
    exp = build_experiment(compose_cfg(), launch_dir=tmp_path, output_dir=tmp_path)
    assert exp.dataset == SyntheticCohort(n_individuals=20_000, n_snps=100)
    fed = exp.federation
    assert (fed.num_clients, fed.num_rounds, fed.local_epochs, fed.test_fraction) == (5, 10, 1, 0.2)
    assert isinstance(fed.backend, InProcessRunner)
    assert isinstance(exp.model, SGDClassifier) and exp.model.loss == "log_loss"
    assert exp.params["federation.num_clients"] == "5"
    assert exp.params["dataset.n_snps"] == "100"
    assert exp.tracker.uri == f"sqlite:///{tmp_path.resolve() / 'mlflow.db'}"  # type: ignore[attr-defined]
    assert [type(a) for a in exp.attacks] == [ConfidenceMIA, GradientNormMIA, GradientLIA]
    assert exp.threshold == 0.5 and exp.params["threshold"] == "0.5"
    assert isinstance(exp.evaluation, PaperPool)
    assert exp.cache is not None


@pytest.mark.parametrize(
    ("override", "key"),
    [
        ("federation.num_clients=0", "federation.num_clients"),
        ("federation.num_rounds=-1", "federation.num_rounds"),
        ("federation.test_fraction=1.5", "federation.test_fraction"),
        ("dataset.n_causal=500", "dataset.n_causal"),
        ("dataset.prevalence=0", "dataset.prevalence"),
        ("seed=-3", "seed"),
        ("threshold=1.5", "threshold"),
        ("threshold=abc", "threshold"),
        ("cache=maybe", "cache"),
        ("attack.gmia.model=server", "attack.gmia.model"),
        ("attack.lia.aux_fraction=1", "attack.lia.aux_fraction"),
        ("evaluation.n_bootstrap=-1", "evaluation.n_bootstrap"),
    ],
)
def test_bad_values_name_their_key(
    compose_cfg: Compose, tmp_path: Path, override: str, key: str
) -> None:
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        _build(compose_cfg(override), tmp_path)


def test_missing_csv_path_says_how_to_set_it(compose_cfg: Compose, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"dataset\.path"):
        _build(compose_cfg("dataset=csv"), tmp_path)


def test_unknown_model_argument_is_a_config_error(compose_cfg: Compose, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="model"):
        _build(compose_cfg("+model.no_such_option=1"), tmp_path)


def test_tracking_uri_precedence(
    compose_cfg: Compose, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "sqlite:////env/store.db")
    exp = _build(compose_cfg(), tmp_path)
    assert exp.tracker.uri == "sqlite:////env/store.db"  # type: ignore[attr-defined]
    exp = _build(compose_cfg("tracking.uri=sqlite:////cfg/store.db"), tmp_path)
    assert exp.tracker.uri == "sqlite:////cfg/store.db"  # type: ignore[attr-defined]


def test_flatten_and_run_name() -> None:
    assert flatten({"a": {"b": 1, "c": {"d": None}}, "e": "x"}) == {
        "a.b": "1",
        "a.c.d": "null",
        "e": "x",
    }
    assert run_name([], ["mia", "gmia", "lia"], 0.5) == "mia,gmia,lia t=0.5"
    assert run_name(
        [
            "attack=gmia",
            "threshold=0.45",
            "seed=1",
            "hydra.verbose=true",
            "federation.num_clients=3",
        ],
        ["gmia"],
        0.45,
    ) == ("gmia t=0.45 seed=1 federation.num_clients=3")
