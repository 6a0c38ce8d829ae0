"""Parallel sweeps (Hydra's joblib launcher), the Optuna sweeper, and what jobs of a sweep share.

A sweep's jobs share the MLflow store, the training cache, the sweep's attack_logs.csv, its
parent run and its summary. Run by the joblib launcher they run in other processes, side by side:
the metrics must be those of the basic launcher, nothing lost, nothing trained twice.
"""

from __future__ import annotations

import csv
import json
import math
import multiprocessing
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from mlflow.tracking import MlflowClient

from fedgen.core.errors import ConfigError
from fedgen.core.records import FederationResult
from fedgen.experiment.cache import TrainingCache
from fedgen.experiment.objective import Objective
from tests.test_cache import KEY, assert_identical, make_result
from tests.test_cli import TINY, fedgen

OPTUNA_DP = Path(__file__).resolve().parents[1] / "conf" / "experiment" / "optuna_dp.yaml"
SWEEP = ["--multirun", *TINY, "attack=gmia", "seed=0,1", "threshold=0.3,0.5", "hydra.sweep.dir=s"]


def _job_metrics(sweep: Path) -> dict[tuple[str, str], dict[str, float]]:
    """Each job's final metrics (run.json), keyed by its seed and threshold."""
    out = {}
    for path in sorted(sweep.glob("*/run.json")):
        record = json.loads(path.read_text())
        out[record["params"]["seed"], record["params"]["threshold"]] = record["metrics"]
    return out


@pytest.mark.slow
def test_joblib_sweep_matches_the_basic_launcher_and_loses_nothing(tmp_path: Path) -> None:
    basic, parallel = tmp_path / "basic", tmp_path / "joblib"
    basic.mkdir()
    parallel.mkdir()
    out = fedgen(basic, *SWEEP, "tracking=none", "figures=false")
    assert out.returncode == 0, out.stderr
    # Two workers, jobs 0 and 1 (seed 0) need the same federation at the same time.
    out = fedgen(parallel, *SWEEP, "hydra/launcher=joblib", "hydra.launcher.n_jobs=2")
    assert out.returncode == 0, out.stderr
    assert "Joblib.Parallel(n_jobs=2" in out.stdout + out.stderr

    expected, got = _job_metrics(basic / "s"), _job_metrics(parallel / "s")
    assert len(expected) == 4 and got == expected  # bit-identical, every job

    client = MlflowClient(f"sqlite:///{parallel / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("fedgen")
    assert experiment is not None
    runs = client.search_runs([experiment.experiment_id])
    (parent,) = [r for r in runs if r.data.tags.get("fedgen.role") == "sweep"]
    jobs = [r for r in runs if r.data.tags.get("fedgen.role") != "sweep"]
    assert len(jobs) == 4 and all(r.info.status == "FINISHED" for r in runs)
    # The jobs ran in other processes, and still name the parent by its real id.
    assert {r.data.tags["fedgen.pid"] for r in jobs} != {parent.data.tags["fedgen.pid"]}
    assert all(r.data.tags["mlflow.parentRunId"] == parent.info.run_id for r in jobs)
    # Each federation trained once: the job that waited on the lock loaded it.
    caches = sorted(r.data.tags["fedgen.training_cache"] for r in jobs)
    assert caches == ["hit", "hit", "miss", "miss"]
    for run in jobs:
        metrics = expected[run.data.params["seed"], run.data.params["threshold"]]
        assert run.data.metrics["gmia/auc"] == metrics["gmia/auc"]
        logged = {a.path for a in client.list_artifacts(run.info.run_id, "figures")}
        assert "figures/roc.png" in logged  # drawn in the worker, logged before it returned
    summary = {a.path for a in client.list_artifacts(parent.info.run_id, "summary")}
    assert {"summary/summary.csv", "summary/attack_logs.csv"} <= summary

    # The sweep's shared table: one row per job, none lost or doubled.
    rows = list(csv.DictReader((parallel / "s" / "attack_logs.csv").read_text().splitlines()))
    assert sorted(r["job"] for r in rows) == ["0", "1", "2", "3"]
    table = list(csv.DictReader((parallel / "s" / "summary.csv").read_text().splitlines()))
    assert len(table) == 4


@pytest.mark.slow
def test_optuna_searches_the_dp_noise_for_the_constrained_objective(tmp_path: Path) -> None:
    out = fedgen(
        tmp_path,
        "--multirun",
        "hydra/sweeper=optuna",
        "experiment=optuna_dp",
        "dataset.n_individuals=300",
        "dataset.n_snps=20",
        "dataset.n_causal=5",
        "federation.num_rounds=2",
        "hydra.sweeper.n_trials=3",
        "hydra.sweeper.sampler.n_startup_trials=2",
        "tracking=none",
        "figures=false",
        "hydra.sweep.dir=s",
    )
    assert out.returncode == 0, out.stderr
    preset = yaml.safe_load(OPTUNA_DP.read_text())
    objective = Objective.parse(preset["objective"])
    trials = []
    for path in sorted((tmp_path / "s").glob("*/run.json")):
        record = json.loads(path.read_text())
        noise = float(record["params"]["defense.client_dp.noise_multiplier"])
        assert 0.001 <= noise <= 1.0
        trials.append((objective.value(record["metrics"]), noise))
    assert len(trials) == 3
    result = yaml.safe_load((tmp_path / "s" / "optimization_results.yaml").read_text())
    best_value, best_noise = min(trials)
    assert result["best_value"] == pytest.approx(best_value)
    assert result["best_params"]["defense.client_dp.noise_multiplier"] == pytest.approx(best_noise)


def test_a_constrained_objective_returns_the_metric_only_when_the_constraint_holds() -> None:
    objective = Objective.parse("mia/auc if fed/test_accuracy >= 0.6 else 1")
    assert objective.metrics == ("mia/auc", "fed/test_accuracy")
    assert objective.value({"mia/auc": 0.55, "fed/test_accuracy": 0.6}) == 0.55
    assert objective.value({"mia/auc": 0.55, "fed/test_accuracy": 0.59}) == 1.0
    assert objective.value({"mia/auc": 0.55, "fed/test_accuracy": math.nan}) == 1.0
    below = Objective.parse("fed/test_accuracy if gmia/auc<0.7 else -1.5e0")
    assert below.value({"fed/test_accuracy": 0.8, "gmia/auc": 0.69}) == 0.8
    assert below.value({"fed/test_accuracy": 0.8, "gmia/auc": 0.7}) == -1.5
    assert Objective.parse("gmia/client_3/auc").value({"gmia/client_3/auc": 0.5}) == 0.5
    assert Objective.parse(objective.text) == objective


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("mia/auc if fed/test_accuracy >= 0.6", "neither a metric name nor"),
        ("mia/auc if fed/test_accuracy => 0.6 else 1", "neither a metric name nor"),
        ("", "neither a metric name nor"),
    ],
)
def test_a_malformed_objective_is_one_clear_error(text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        Objective.parse(text)


def test_an_objective_metric_the_run_did_not_log_is_named_with_the_closest() -> None:
    objective = Objective.parse("mia/auc if fed/test_acuracy >= 0.6 else 1")
    with pytest.raises(ConfigError, match=r"'fed/test_acuracy'.*did you mean fed/test_accuracy"):
        objective.value({"mia/auc": 0.5, "fed/test_accuracy": 0.7})


def _train_slowly(directory: str, marker: str) -> FederationResult:
    """Stands in for a job's training: slow, and leaves a mark each time it runs."""
    with open(marker, "a") as handle:
        handle.write("trained\n")
    time.sleep(1.5)
    return make_result()


def _load_or_train(directory: str, marker: str, out: str, second: bool) -> None:
    while second and not Path(marker).exists():  # the first is training now
        time.sleep(0.01)
    result, hit = TrainingCache(Path(directory)).load_or_train(
        KEY, lambda: _train_slowly(directory, marker)
    )
    Path(out).write_text(json.dumps({"hit": hit, "rounds": len(result.rounds)}))


def test_two_processes_needing_one_federation_train_it_once(tmp_path: Path) -> None:
    cache_dir, marker = tmp_path / "cache", tmp_path / "trained.txt"
    context = multiprocessing.get_context("spawn")
    procs = [
        context.Process(
            target=_load_or_train,
            args=(str(cache_dir), str(marker), str(tmp_path / f"{i}.json"), i == 1),
        )
        for i in range(2)
    ]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=120)
        assert p.exitcode == 0
    # Once: the second asked while the first was training, and waited for it.
    assert marker.read_text() == "trained\n"
    outcomes: list[dict[str, Any]] = [
        json.loads((tmp_path / f"{i}.json").read_text()) for i in range(2)
    ]
    assert sorted(o["hit"] for o in outcomes) == [False, True]
    assert all(o["rounds"] == 3 for o in outcomes)
    stored = TrainingCache(cache_dir).load(KEY)
    assert stored is not None
    assert_identical(stored, make_result())
    assert np.isfinite(stored.rounds[-1].metrics["fed/test_accuracy"])
