"""The one place that turns the composed config into objects (Hydra ``_target_`` instantiation)."""

from __future__ import annotations

import functools
import os
import subprocess
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hydra.errors import InstantiationException
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import MissingMandatoryValue, OmegaConfBaseException

import fedgen
from fedgen.core.errors import ConfigError, FedgenError
from fedgen.data import IIDPartition
from fedgen.experiment.cache import TrainingCache, default_cache_dir
from fedgen.experiment.objective import Objective
from fedgen.experiment.pipeline import Experiment, Training
from fedgen.federation import FederationSettings
from fedgen.federation.settings import Deferred
from fedgen.models import Model

# Which top-level config keys determine the trained federation (and so the training cache key),
# and which act only after training. Every top-level key must be in exactly one of them (a test
# checks the composed config), so a new group cannot silently be left out of the cache key.
TRAINING_KEYS = ("dataset", "partition", "federation", "model", "defense", "seed")
POST_TRAINING_KEYS = (
    "attack",
    "evaluation",
    "tracking",
    "threshold",
    "objective",
    "figures",
    "cache",
    "cache_dir",
)
# Parts of a training group that cannot change the numbers (backends are bit-identical).
# Not part of what is trained: the backend (bit-identical results), and how many reference
# individuals a synthetic source draws after the cohort (the cohort's arrays, which key the
# cache too, are the same whatever their number).
_NOT_KEYED = {"federation": ("backend",), "dataset": ("n_reference",)}


def build_experiment(
    cfg: DictConfig,
    *,
    launch_dir: Path,
    output_dir: Path,
    sweep_dir: Path | None = None,
    overrides: Sequence[str] = (),
    job: str = "",
) -> Experiment:
    """Instantiate every config group and collect what the run logs about itself."""
    parts = check_config(cfg)
    resolved, training, attacks = parts.resolved, parts.training, parts.attacks
    threshold, objective, evaluation = parts.threshold, parts.objective, parts.evaluation
    tags = {"fedgen.version": fedgen.__version__}
    commit = _git_commit()
    if commit:
        tags["fedgen.git_commit"] = commit
    if sweep_dir is not None:
        tags["fedgen.sweep_dir"] = str(sweep_dir)
    params = flatten({str(k): v for k, v in resolved.items() if k != "hydra"})
    params["attack"] = ",".join(a.name for a in attacks) or "none"
    params["defense"] = ",".join(d.name for d in training.defenses) or "none"
    params["evaluation"] = evaluation.name
    return Experiment(
        training=training,
        tracker=build_tracker(cfg, launch_dir=launch_dir, sweep_dir=sweep_dir),
        run_name=run_name(
            overrides,
            [a.name for a in attacks],
            float(threshold),
            swept=swept_keys(overrides, sweep_dir),
        ),
        params=params,
        tags=tags,
        artifacts={
            "config/config.yaml": OmegaConf.to_yaml(cfg, resolve=True),
            "config/overrides.yaml": OmegaConf.to_yaml(OmegaConf.create(list(overrides))),
        },
        output_dir=output_dir,
        attacks=attacks,
        threshold=float(threshold),
        objective=objective,
        evaluation=evaluation,
        cache=_cache(resolved.get("cache", True), resolved.get("cache_dir")),
        training_material=training_material(resolved),
        sweep_dir=sweep_dir,
        job=job,
        figures=_flag("figures", resolved.get("figures", True)),
    )


@dataclass(frozen=True)
class Parts:
    """A job's config, resolved and checked, with the objects that need no store or paths."""

    resolved: dict[Any, Any]
    training: Training
    attacks: tuple[Any, ...]
    evaluation: Any
    threshold: float
    objective: str


def check_config(cfg: DictConfig) -> Parts:
    """Resolve ``cfg``, check every value and build what can be built without running.

    Used by every job, and for every job of a sweep before the first one starts
    (:mod:`fedgen.experiment.preflight`). Opens no store and allocates no cohort.

    Raises
    ------
    ConfigError
        The first value that cannot work, named with its key and the fix.
    """
    try:
        resolved = OmegaConf.to_container(cfg, resolve=True, throw_on_missing=True)
    except MissingMandatoryValue as exc:
        raise ConfigError(f"{exc.full_key} is not set; pass {exc.full_key}=<value>") from exc
    except OmegaConfBaseException as exc:
        raise ConfigError(f"invalid config: {exc}") from exc
    assert isinstance(resolved, dict)
    training = build_training(cfg)
    check_memory(training.dataset)
    check_source = getattr(training.dataset, "check", None)
    if callable(check_source):
        check_source()  # a file source: that it exists and has the columns it needs
    threshold = resolved.get("threshold")
    if isinstance(threshold, bool) or not isinstance(threshold, int | float):
        raise ConfigError(f"threshold={threshold!r} must be a number in [0, 1]")
    if not 0.0 <= threshold <= 1.0:
        raise ConfigError(f"threshold={threshold!r} must be in [0, 1]")
    attacks = tuple(
        _instantiate(node, f"attack.{name}", name=str(name))
        for name, node in (cfg.get("attack") or {}).items()
    )
    evaluation = _instantiate(cfg.evaluation, "evaluation")
    objective = resolved.get("objective", "fed/test_accuracy")
    if not isinstance(objective, str) or not objective:
        raise ConfigError(f"objective={objective!r} must be a metric name, e.g. gmia/auc")
    for metric in Objective.parse(objective).metrics:
        if metric.split("/")[0] not in ("fed", *(a.name for a in attacks)):
            raise ConfigError(
                f"objective={objective!r} names no metric of this run: it must start with fed/ "
                f"or with an attack that runs ({', '.join(a.name for a in attacks) or 'none'}/)"
            )
    _check_observers(training, attacks)
    for key in ("figures", "cache"):
        _flag(key, resolved.get(key, True))
    cache_dir = resolved.get("cache_dir")
    if cache_dir is not None and not isinstance(cache_dir, str):
        raise ConfigError(f"cache_dir={cache_dir!r} must be a path or null")
    return Parts(resolved, training, attacks, evaluation, float(threshold), objective)


# Bytes per genotype cell a run holds at its peak: the int8 cohort, one client's rows in float64
# at a time and the attacks' bounded chunks (measured: 3.0 GiB for 42,000 x 50,000 with mia and
# gmia, ~1.5 bytes a cell; benchmarks/bench_memory.py). LIA, phenotype and LiRA's reference
# panel still make whole float64 copies.
_BYTES_PER_CELL = 2


def check_memory(dataset: object) -> None:
    """Refuse a synthetic cohort that cannot fit in this machine's memory, before allocating it.

    The estimate is ``(n_individuals + n_reference) x n_snps`` cells at ~2 bytes each (the int8
    genotypes, and float64 only a client or a chunk at a time); above the machine's physical
    memory the run would only swap or be killed.
    """
    n = getattr(dataset, "n_individuals", None)
    p = getattr(dataset, "n_snps", None)
    if not isinstance(n, int) or not isinstance(p, int):
        return
    m = getattr(dataset, "n_reference", 0)
    cells = (n + (m if isinstance(m, int) else 0)) * p
    need = cells * _BYTES_PER_CELL
    total = _physical_memory()
    if total and need > total:
        raise ConfigError(
            f"dataset of {n:,} individuals x {p:,} SNPs needs about {need / 2**30:,.1f} GiB of "
            f"memory and this machine has {total / 2**30:,.1f} GiB; use fewer "
            "dataset.n_individuals or dataset.n_snps (or dataset.n_reference)"
        )


def _physical_memory() -> int:
    try:
        return int(os.sysconf("SC_PAGE_SIZE")) * int(os.sysconf("SC_PHYS_PAGES"))
    except (ValueError, OSError, AttributeError):
        return 0


def build_training(cfg: DictConfig) -> Training:
    """Instantiate what determines training: seed, data, partition, federation, model, defenses."""
    seed = cfg.get("seed")
    if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
        raise ConfigError(f"seed={seed!r} must be a non-negative integer")
    federation = _federation(cfg.federation)
    if not isinstance(federation, FederationSettings):
        raise ConfigError(f"`federation` built a {type(federation).__name__}, not settings")
    model = _instantiate(cfg.model, "model")
    if not isinstance(model, Model):
        raise ConfigError(
            f"`model` built a {type(model).__name__}, which is not a fedgen model; use one of "
            "the model config options (e.g. model=sgd_logistic, model=mlp)"
        )
    defenses = tuple(
        _instantiate(node, f"defense.{name}", name=str(name))
        for name, node in (cfg.get("defense") or {}).items()
    )
    dataset = _instantiate(cfg.dataset, "dataset")
    partition = _instantiate(cfg.partition, "partition") if "partition" in cfg else IIDPartition()
    if not callable(getattr(partition, "split", None)):
        raise ConfigError(
            f"`partition` built a {type(partition).__name__}, which is not a fedgen partition; "
            "use one of the partition config options (e.g. partition=iid, partition=dirichlet)"
        )
    check_source = getattr(partition, "check_source", None)
    if callable(check_source):
        check_source(dataset)  # e.g. ancestry silos need a cohort with ancestry groups
    return Training(
        seed=seed,
        dataset=dataset,
        federation=federation,
        model=model,
        defenses=defenses,
        partition=partition,
    )


# Parts of the federation built only when training runs (they import Flower, or Ray): a job whose
# federation comes from the training cache, and the preflight of a sweep, never import them.
_DEFERRED = ("backend", "strategy")


def _federation(node: DictConfig) -> Any:
    """The ``federation`` group's settings, its backend and strategy built when first used.

    A mistake in either (a misspelt ``_target_``) is a :class:`ConfigError` when training
    starts, not before.
    """
    try:
        resolved = OmegaConf.to_container(node, resolve=True)
    except OmegaConfBaseException as exc:
        raise ConfigError(f"invalid `federation` config: {exc}") from exc
    assert isinstance(resolved, dict)
    later = {
        key: resolved.pop(key)
        for key in _DEFERRED
        if isinstance(resolved.get(key), dict) and "_target_" in resolved[key]
    }
    deferred = {
        key: Deferred(functools.partial(_instantiate, sub, f"federation.{key}"))
        for key, sub in later.items()
    }
    return _instantiate(resolved, "federation", **deferred)


def _check_observers(training: Training, attacks: Sequence[Any]) -> None:
    """Fail before training when an attack cannot attack this model (its ``check_model``).

    (Attacks by the server under secure aggregation run on the aggregate, which stands in for
    each client's model: see :mod:`fedgen.attacks.observers`.)
    """
    for attack in attacks:
        check_model = getattr(attack, "check_model", None)
        if check_model is not None:
            check_model(training.model)


def training_material(resolved: Mapping[Any, Any]) -> dict[str, Any]:
    """The resolved training configs that key the cache (backends left out)."""
    material: dict[str, Any] = {}
    for key in TRAINING_KEYS:
        value = resolved.get(key)
        if isinstance(value, Mapping):
            value = {k: v for k, v in value.items() if k not in _NOT_KEYED.get(key, ())}
        material[key] = value
    return material


def _flag(key: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise ConfigError(f"{key}={value!r} must be true or false")
    return value


def _cache(enabled: Any, directory: Any) -> TrainingCache | None:
    if not _flag("cache", enabled):
        return None
    if directory is not None and not isinstance(directory, str):
        raise ConfigError(f"cache_dir={directory!r} must be a path or null")
    return TrainingCache(Path(directory).expanduser() if directory else default_cache_dir())


def build_tracker(cfg: DictConfig, *, launch_dir: Path, sweep_dir: Path | None) -> Any:
    """Instantiate the ``tracking`` group with the run-time paths it needs."""
    if cfg.tracking.get("_target_") == "fedgen.tracking.MlflowTracker":
        return _instantiate(cfg.tracking, "tracking", launch_dir=launch_dir, sweep_dir=sweep_dir)
    return _instantiate(cfg.tracking, "tracking")


def _instantiate(node: Any, group: str, **runtime: Any) -> Any:
    try:
        return instantiate(node, **runtime)
    except InstantiationException as exc:
        cause: BaseException | None = exc
        while cause is not None:
            if isinstance(cause, FedgenError):
                raise cause from None
            cause = cause.__cause__
        raise ConfigError(f"cannot build `{group}` from its config: {exc}") from exc
    except OmegaConfBaseException as exc:
        raise ConfigError(f"invalid `{group}` config: {exc}") from exc


def flatten(tree: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    """Nested config as ``{"federation.num_clients": "5", ...}`` (MLflow params)."""
    out: dict[str, str] = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.update(flatten(value, f"{name}."))
        else:
            out[name] = "null" if value is None else str(value)
    return out


def swept_keys(overrides: Sequence[str], sweep_dir: Path | None) -> set[str]:
    """The keys of a sweep job's overrides whose value the sweep chose (for its run name).

    A value is chosen by the sweep when ``<sweep dir>/multirun.yaml`` (Hydra's basic sweeper
    writes it) lists the key with several values (``federation.num_clients=2,5,10``,
    ``seed=range(3)``) or not at all (a sweeper's own parameters). Outside a sweep, or
    without that file, none.
    """
    path = sweep_dir / "multirun.yaml" if sweep_dir is not None else None
    if path is None or not path.is_file():
        return set()
    try:
        stat = path.stat()
        given = _sweep_overrides(str(path), stat.st_mtime_ns, stat.st_size)
    except Exception:  # an unreadable file only costs the order of a name
        return set()
    keys = [o.partition("=")[0].lstrip("+~") for o in overrides]
    return {k for k in keys if given.get(k, True)}


@functools.lru_cache(maxsize=4)
def _sweep_overrides(path: str, mtime_ns: int, size: int) -> dict[str, bool]:
    """:func:`sweep_choices` of the sweep's ``multirun.yaml``; parsed once per sweep (Hydra's
    parser costs 0.06 s a job), again only if the file changes."""
    task = OmegaConf.select(OmegaConf.load(path), "hydra.overrides.task")
    return sweep_choices(str(line) for line in task or ())


def sweep_choices(overrides: Iterable[str]) -> dict[str, bool]:
    """Each override's key (``+``/``~`` dropped) -> whether it lists several values
    (``federation.num_clients=2,5,10``, ``seed=range(3)``), read by Hydra's own parser; lines
    Hydra cannot read are left out (they cannot be swept either)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parser = OverridesParser.create()
    given: dict[str, bool] = {}
    for line in overrides:
        try:
            (parsed,) = parser.parse_overrides([line])
        except Exception:
            continue
        given[parsed.get_key_element().lstrip("+~")] = parsed.is_sweep_override()
    return given


def run_name(
    overrides: Sequence[str],
    attacks: Sequence[str] = (),
    threshold: float = 0.5,
    swept: Collection[str] = (),
) -> str:
    """A run's name in the MLflow UI: what differs first and short, then attacks and threshold.

    Each override shows as the last part of its key and its value, so the runs of a sweep tell
    themselves apart at a glance: ``["federation.num_clients=10", "attack=gmia"]`` gives
    ``num_clients=10 · gmia t=0.45``. The ``swept`` keys (those a sweep chose) come first,
    and the attacks and threshold right after them when the sweep chose either. Keys whose last
    parts clash keep their full path; more than three attacks show as their number
    (``9 attacks``); the name stays within 90 characters.
    """
    skip = ("hydra.", "tracking.", "attack=", "threshold=")
    pairs = []
    for override in overrides:
        key, sep, value = override.lstrip("+~").partition("=")
        if sep and not override.lstrip("+~").startswith(skip):
            pairs.append((key, value if len(value) <= 24 else value[:23] + "…"))
    pairs.sort(key=lambda kv: kv[0] not in swept)  # stable: the sweep's values first
    last = [key.rsplit(".", 1)[-1] for key, _ in pairs]
    shown = [
        f"{short if last.count(short) == 1 else key}={value}"
        for short, (key, value) in zip(last, pairs, strict=True)
    ]
    listed = ",".join(attacks)
    named = listed if len(attacks) <= 3 and len(listed) <= 30 else f"{len(attacks)} attacks"
    attack = f"{named or 'no attack'} t={threshold:g}"
    lead = sum(key in swept for key, _ in pairs) if {"attack", "threshold"} & set(swept) else None
    parts = [*shown, attack] if lead is None else [*shown[:lead], attack, *shown[lead:]]
    name = " · ".join(parts)
    return name if len(name) <= 90 else name[:89] + "…"


def _git_commit() -> str | None:
    source = Path(fedgen.__file__).resolve().parent.parent
    try:
        out = subprocess.run(
            ["git", "-C", str(source), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None
