"""The command line for real: Hydra multirun in a subprocess, an MLflow store, clear errors."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

TINY = ["dataset=tiny", "federation.num_rounds=2"]


def fedgen(
    cwd: Path, *args: str, extra_env: dict[str, str] | None = None, timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    """``python -m fedgen <args>`` in ``cwd`` with its own training cache and MLflow store."""
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    env["FEDGEN_CACHE_DIR"] = str(cwd / "cache")
    env.update(extra_env or {})
    return subprocess.run(
        [sys.executable, "-m", "fedgen", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


@pytest.mark.slow
def test_multirun_makes_tagged_runs_in_one_store(tmp_path: Path) -> None:
    out = fedgen(
        tmp_path,
        "--multirun",
        *TINY,
        "seed=0,1",
        "federation.num_clients=2,3",
        "hydra.sweep.dir=sweep",
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.count("round 2/2") == 4
    # fedgen's one line per round, not Flower's own chatter (its logger resets to DEBUG when
    # imported, which happens only once a job trains).
    for chatter in ("Starting FedAvg strategy", "configure_train", "[ROUND"):
        assert chatter not in out.stdout + out.stderr
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("fedgen")
    assert experiment is not None
    runs = client.search_runs([experiment.experiment_id])
    parents = [r for r in runs if r.data.tags.get("fedgen.role") == "sweep"]
    children = [r for r in runs if r.data.tags.get("fedgen.role") != "sweep"]
    assert len(parents) == 1 and len(children) == 4
    sweep_dir = str((tmp_path / "sweep").resolve())
    assert all(r.info.status == "FINISHED" for r in runs)
    combos = set()
    for run in children:
        assert run.data.tags["fedgen.sweep_dir"] == sweep_dir
        assert run.data.tags["mlflow.parentRunId"] == parents[0].info.run_id
        assert run.data.tags["fedgen.version"]
        params = run.data.params
        combos.add((params["seed"], params["federation.num_clients"]))
        assert params["dataset.n_individuals"] == "300"
        history = client.get_metric_history(run.info.run_id, "fed/test_accuracy")
        assert sorted(m.step for m in history) == [1, 2]
        artifacts = {a.path for a in client.list_artifacts(run.info.run_id, "config")}
        assert artifacts == {"config/config.yaml", "config/overrides.yaml"}
    assert combos == {("0", "2"), ("0", "3"), ("1", "2"), ("1", "3")}
    # The sweep's parent run is a run name users can find, and the jobs wrote their CSV logs.
    assert len(list((tmp_path / "sweep").glob("*/training_log.csv"))) == 4


@pytest.mark.slow
def test_threshold_sweep_trains_once_and_logs_every_threshold(tmp_path: Path) -> None:
    # The line every user starts with, on the tiny cohort.
    out = fedgen(
        tmp_path, *TINY, "hydra.sweep.dir=s", "attack=gmia", "threshold=0.3,0.45,0.5", "--multirun"
    )
    assert out.returncode == 0, out.stderr
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("fedgen")
    assert experiment is not None
    everything = client.search_runs([experiment.experiment_id])
    runs = [r for r in everything if r.data.tags.get("fedgen.role") != "sweep"]
    assert len(runs) == 3
    by_threshold = {r.data.params["threshold"]: r for r in runs}
    assert set(by_threshold) == {"0.3", "0.45", "0.5"}
    assert sorted(r.data.tags["fedgen.training_cache"] for r in runs) == ["hit", "hit", "miss"]
    rows = list(csv.DictReader((tmp_path / "s" / "attack_logs.csv").read_text().splitlines()))
    assert len(rows) == 3
    for row in rows:
        run = by_threshold[row["threshold"]]
        assert run.data.params["attack"] == "gmia"
        metrics = run.data.metrics
        assert float(row["precision"]) == metrics["gmia/precision"]
        assert float(row["recall"]) == metrics["gmia/recall"]
        assert float(row["f1_score"]) == metrics["gmia/f1"]
        for key in ("auc", "advantage", "trivial_f1", "member_share"):
            assert f"gmia/{key}" in metrics
        # Per-client breakdowns stay out of MLflow (tracking.per_client_metrics), in run.json.
        assert "gmia/client_0/auc" not in metrics
        job = json.loads((tmp_path / "s" / row["job"] / "run.json").read_text())
        assert "gmia/client_0/auc" in job["metrics"]
        assert row["run_name"] == run.info.run_name
    # A looser threshold calls more candidates members: recall cannot fall.
    recalls = [by_threshold[t].data.metrics["gmia/recall"] for t in ("0.3", "0.45", "0.5")]
    assert recalls == sorted(recalls)
    # Threshold-free metrics do not depend on the threshold.
    assert len({r.data.metrics["gmia/auc"] for r in runs}) == 1
    assert "gmia" in out.stdout and "trivial F1" in out.stdout


@pytest.mark.slow
def test_same_seed_same_logged_numbers(tmp_path: Path) -> None:
    logs = []
    for name in ("a", "b"):
        out = fedgen(tmp_path, *TINY, "tracking=none", f"hydra.run.dir={name}")
        assert out.returncode == 0, out.stderr
        logs.append((tmp_path / name / "training_log.csv").read_text())
    assert logs[0] == logs[1]


@pytest.mark.slow
@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["no_such_key=1"], "no_such_key"),
        (["dataset=no_such_dataset"], "no_such_dataset"),
        (["federation.num_clients=200"], "federation.num_clients=200 is too large"),
        (["federation.num_clients=abc"], "federation.num_clients"),
    ],
)
def test_bad_input_is_one_clear_error_and_writes_nothing(
    tmp_path: Path, args: list[str], expected: str
) -> None:
    out = fedgen(tmp_path, *TINY, *args)
    assert out.returncode != 0
    assert expected in out.stderr
    assert "Traceback" not in out.stderr
    assert not (tmp_path / "mlflow.db").exists() or _no_runs(tmp_path)


@pytest.mark.slow
def test_corrupt_csv_names_file_row_and_column(tmp_path: Path) -> None:
    good = "snp_a,snp_b,sex,label\n" + "0,1,1,0\n2,1,0,1\n" * 10
    (tmp_path / "cohort.csv").write_text(good + "1,3,0,1\n")
    out = fedgen(tmp_path, "dataset=csv", "dataset.path=cohort.csv", "federation.num_clients=1")
    assert out.returncode == 2
    assert "cohort.csv, row 21, column 'snp_b': '3'" in out.stderr
    (tmp_path / "cohort.csv").write_text(good + "1,1,0,\n")
    out = fedgen(tmp_path, "dataset=csv", "dataset.path=cohort.csv", "federation.num_clients=1")
    assert out.returncode == 2
    assert "row 21, column 'label': a missing value" in out.stderr
    assert _no_runs(tmp_path)


def _no_runs(tmp_path: Path) -> bool:
    db = tmp_path / "mlflow.db"
    if not db.exists():
        return True
    client = MlflowClient(f"sqlite:///{db}")
    experiment = client.get_experiment_by_name("fedgen")
    return experiment is None or not client.search_runs([experiment.experiment_id])
