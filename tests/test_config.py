"""Every config option composes and builds; bad values give a ConfigError naming the key."""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from importlib.resources import files
from pathlib import Path
from typing import Any

import numpy as np
import pgenlib
import pytest
from bed_reader import to_bed
from hydra.utils import get_class
from omegaconf import DictConfig, OmegaConf

from fedgen.attacks import ConfidenceMIA, GradientLIA, GradientNormMIA
from fedgen.core.errors import ConfigError
from fedgen.data import SyntheticCohort
from fedgen.defenses import Defense
from fedgen.evaluation.pools import PaperPool
from fedgen.experiment.build import build_experiment, flatten, run_name
from fedgen.experiment.pipeline import Experiment
from fedgen.federation import FederationSettings
from fedgen.federation.runners import InProcessRunner
from fedgen.federation.strategy import sized_strategy
from fedgen.models import Model, SGDLogistic

Compose = Callable[..., DictConfig]

CONF = Path(str(files("fedgen.conf")))
# Hydra's own groups (job logging, the sweeper): not built by fedgen's builder.
HYDRA_GROUPS = ("hydra",)
# Values an option leaves mandatory (``???``), supplied so that it builds.
REQUIRED = {
    ("dataset", "csv"): ["dataset.path=x.csv"],
    ("dataset", "plink"): ["dataset.path=x"],
    ("dataset", "pgen"): ["dataset.path=x"],
    ("partition", "ancestry"): ["dataset.n_ancestry_groups=3"],
}
# Keys of a config node that tell Hydra how to build it rather than what to build.
HYDRA_KEYS = {"_target_", "_partial_", "_convert_", "_recursive_", "_args_"}


def write_plink_sets(prefix: Path) -> None:
    """A 2 x 1 cohort as a PLINK 1 (``.bed``) and a PLINK 2 (``.pgen``) file set."""
    to_bed(prefix.with_suffix(".bed"), np.array([[0], [2]], dtype=np.int8), {"pheno": [1, 2]})
    writer = pgenlib.PgenWriter(bytes(prefix.with_suffix(".pgen")), 2, variant_ct=1)
    writer.append_biallelic(np.array([0, 2], dtype=np.int8))
    writer.close()
    prefix.with_suffix(".pvar").write_text("#CHROM\tPOS\tID\tREF\tALT\n1\t1\trs1\tA\tG\n")
    prefix.with_suffix(".psam").write_text("#IID\tPHENO1\ni0\t1\ni1\t2\n")


def _build(cfg: DictConfig, tmp_path: Path) -> Experiment:
    return build_experiment(cfg, launch_dir=tmp_path, output_dir=tmp_path, overrides=[])


def _options() -> list[tuple[str, str]]:
    """Every option file of every config group (``conf/<group>/<option>.yaml``, nested too)."""
    found = []
    for path in sorted(CONF.rglob("*.yaml")):
        parts = path.relative_to(CONF).parts
        if len(parts) > 1 and parts[0] not in HYDRA_GROUPS:
            found.append(("/".join(parts[:-1]), path.stem))
    return found


OPTIONS = _options()


def _setting(built: Any, key: str, where: str) -> Any:
    """The value ``built`` holds for its config key ``key``: an attribute, or an entry of the
    mapping of settings it passes on (e.g. the scikit-learn arguments of a model)."""
    if isinstance(built, functools.partial):
        assert key in built.keywords, f"{where}: the partial does not set {key}"
        return built.keywords[key]
    if hasattr(built, key):
        return getattr(built, key)
    for value in vars(built).values():
        if isinstance(value, Mapping) and key in value:
            return value[key]
    pytest.fail(f"{where}: the {type(built).__name__} built from the config does not hold {key}")


def _check(built: Any, node: Mapping[str, Any], where: str) -> None:
    """``built`` is what the resolved config ``node`` says: its class and every setting."""
    target = node.get("_target_")
    if target is not None:
        cls = get_class(target)
        if node.get("_partial_"):
            assert isinstance(built, functools.partial), where
            assert built.func is cls, where
        else:
            assert type(built) is cls, (where, type(built), cls)
    for key, value in node.items():
        if key in HYDRA_KEYS:
            continue
        actual = _setting(built, key, where)
        if isinstance(value, Mapping) and "_target_" in value:
            _check(actual, value, f"{where}.{key}")
        elif isinstance(value, list):
            assert list(actual) == value, f"{where}.{key}"
        else:
            assert actual == value, f"{where}.{key}: built {actual!r}, config {value!r}"
            assert type(actual) is not bool or type(value) is bool, f"{where}.{key}"


def _check_experiment(cfg: DictConfig, exp: Experiment, tmp_path: Path) -> None:
    """Everything the composed ``cfg`` asks for is what ``build_experiment`` built."""
    resolved = OmegaConf.to_container(cfg, resolve=True)
    assert isinstance(resolved, dict)
    training = exp.training
    assert exp.seed == training.seed == resolved["seed"]
    _check(training.dataset, resolved["dataset"], "dataset")
    assert hasattr(training.dataset, "load")
    assert isinstance(training.federation, FederationSettings)
    _check(training.federation, resolved["federation"], "federation")
    strategy = sized_strategy(training.federation.strategy, training.federation.num_clients)
    assert isinstance(strategy, get_class(resolved["federation"]["strategy"]["_target_"]))
    assert isinstance(training.model, Model)
    _check(training.model, resolved["model"], "model")
    defenses = resolved.get("defense") or {}
    assert [d.name for d in training.defenses] == list(defenses)
    for defense, (name, node) in zip(training.defenses, defenses.items(), strict=True):
        assert isinstance(defense, Defense)
        _check(defense, node, f"defense.{name}")
    attacks = resolved.get("attack") or {}
    assert [a.name for a in exp.attacks] == list(attacks)
    for attack, (name, node) in zip(exp.attacks, attacks.items(), strict=True):
        _check(attack, node, f"attack.{name}")
    assert exp.evaluation is not None
    _check(exp.evaluation, resolved["evaluation"], "evaluation")
    tracking = dict(resolved["tracking"])
    if "uri" in tracking and tracking["uri"] is None:  # no URI: a store in the launch directory
        tracking["uri"] = f"sqlite:///{tmp_path.resolve() / 'mlflow.db'}"
    _check(exp.tracker, tracking, "tracking")
    assert exp.threshold == resolved["threshold"]
    assert exp.objective == resolved["objective"]
    assert exp.figures is resolved["figures"]
    assert (exp.cache is not None) is resolved["cache"]
    if exp.cache is not None and resolved["cache_dir"] is not None:
        assert exp.cache.directory == Path(resolved["cache_dir"])
    # Logged as MLflow params: the flattened config, the attack and defense lists, evaluation.
    assert exp.params == {
        **flatten(resolved),
        "attack": ",".join(attacks) or "none",
        "defense": ",".join(resolved.get("defense") or {}) or "none",
        "evaluation": exp.evaluation.name,
    }


def test_the_option_files_are_found() -> None:
    groups = {group for group, _ in OPTIONS}
    assert {
        "attack",
        "dataset",
        "defense",
        "evaluation",
        "federation",
        "federation/backend",
        "model",
        "tracking",
    } <= groups
    assert {("federation/backend", "ray"), ("model", "mlp"), ("dataset", "csv")} <= set(OPTIONS)
    assert not any(group.startswith(HYDRA_GROUPS) for group in groups)
    assert set(REQUIRED) <= set(OPTIONS)


@pytest.mark.parametrize(("group", "option"), OPTIONS, ids=[f"{g}={o}" for g, o in OPTIONS])
def test_every_option_of_every_group_builds_what_it_says(
    compose_cfg: Compose,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    group: str,
    option: str,
) -> None:
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "x.csv").write_text("snp_a,label\n0,1\n2,0\n")  # the csv option's file
    if (group, option) in (("dataset", "plink"), ("dataset", "pgen")):
        write_plink_sets(tmp_path / "x")  # the plink and pgen options' file sets
    # An option of a group is checked with everything else at its default; an experiment
    # preset (`@package _global_`) is checked in every group it sets.
    cfg = compose_cfg(f"{group}={option}", *REQUIRED.get((group, option), []))
    _check_experiment(cfg, _build(cfg, tmp_path), tmp_path)


def test_default_config_is_the_reference_study(compose_cfg: Compose, tmp_path: Path) -> None:
    exp = build_experiment(compose_cfg(), launch_dir=tmp_path, output_dir=tmp_path)
    assert exp.training.dataset == SyntheticCohort(
        n_individuals=20_000, n_snps=100, n_reference=20_000
    )
    fed = exp.federation
    assert (fed.num_clients, fed.num_rounds, fed.local_epochs, fed.test_fraction) == (5, 10, 1, 0.2)
    assert isinstance(fed.backend, InProcessRunner)
    model = exp.training.model
    assert type(model) is SGDLogistic and model.name == "sgd_logistic"
    assert model.sgd == {"loss": "log_loss"}  # scikit-learn's defaults otherwise
    assert exp.training.defenses == ()
    assert exp.objective == "fed/test_accuracy"
    assert [a.threshold for a in exp.attacks] == [0.5, 0.5, 0.5]
    assert [a.observer for a in exp.attacks] == ["public", "public", "server"]
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
        ("+attack.gmia.model=server", "attack.gmia.model"),
        ("attack.gmia.observer=hospital", "attack.gmia.observer"),
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
    ) == ("seed=1 · num_clients=3 · gmia t=0.45")
