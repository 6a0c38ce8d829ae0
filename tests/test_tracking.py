"""MLflow tracking through the worker process: runs end FINISHED or FAILED, never RUNNING."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from mlflow.tracking import MlflowClient

from fedgen.core.errors import TrackingError
from fedgen.tracking import liveness, mlflow_worker
from fedgen.tracking import trackers as tracking
from fedgen.tracking.trackers import InMemoryTracker, MlflowTracker, tracked_run


def _client(tmp_path: Path) -> MlflowClient:
    return MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")


def _only_run(tmp_path: Path) -> Any:
    client = _client(tmp_path)
    experiment = client.get_experiment_by_name("t")
    assert experiment is not None
    (run,) = client.search_runs([experiment.experiment_id])
    return run


@pytest.mark.slow
def test_run_round_trip_and_failed_status(tmp_path: Path) -> None:
    tracker = MlflowTracker(uri=None, experiment="t", launch_dir=tmp_path)
    with tracked_run(tracker, "ok", {"a.b": "1"}, {"k": "v"}) as run:
        run.log_history([(1, {"m": 0.5}), (2, {"m": 0.25})])
        run.log_text("hello", "notes/x.txt")
    with pytest.raises(RuntimeError), tracked_run(tracker, "boom", {}, {}):
        raise RuntimeError("job failed")
    tracking.flush()  # results are stored in the background; wait for them
    client = _client(tmp_path)
    exp = client.get_experiment_by_name("t")
    assert exp is not None
    assert exp.artifact_location == (tmp_path.resolve() / "mlruns").as_uri()
    runs = {r.info.run_name: r for r in client.search_runs([exp.experiment_id])}
    assert runs["ok"].info.status == "FINISHED"
    assert runs["boom"].info.status == "FAILED"
    assert runs["boom"].data.tags["fedgen.failure"] == "RuntimeError: job failed"
    assert "fedgen.failure" not in runs["ok"].data.tags
    assert runs["ok"].data.params == {"a.b": "1"}
    assert runs["ok"].data.tags["k"] == "v"
    assert runs["ok"].data.tags["fedgen.host"] == liveness.host()
    assert runs["ok"].data.tags["fedgen.pid"] == str(os.getpid())
    history = client.get_metric_history(runs["ok"].info.run_id, "m")
    assert [(m.step, m.value) for m in history] == [(1, 0.5), (2, 0.25)]
    text = client.download_artifacts(runs["ok"].info.run_id, "notes/x.txt", str(tmp_path))
    assert Path(text).read_text() == "hello"


def test_run_times_are_the_jobs_own_not_the_workers(tmp_path: Path) -> None:
    """The UI's Duration is the job's: start and end are taken when the job asks, however late
    the worker (still importing MLflow, or busy with artifacts) gets to the request."""
    tracker = MlflowTracker(uri=None, experiment="t", launch_dir=tmp_path)
    before_start = int(time.time() * 1000)
    tracker.start_run("timed", {}, {})
    after_start = int(time.time() * 1000)
    time.sleep(0.3)  # the job's work
    before_end = int(time.time() * 1000)
    tracker.end_run("FINISHED")
    after_end = int(time.time() * 1000)
    tracking.flush()
    info = _only_run(tmp_path).info
    assert before_start <= info.start_time <= after_start
    assert before_end <= info.end_time <= after_end
    assert info.end_time - info.start_time >= 300


def test_the_cohort_is_the_runs_dataset_input(tmp_path: Path) -> None:
    """What the UI's Datasets column shows: the cohort's name, digest, source and sizes, read
    back from a real store after a real (tiny) experiment."""
    from fedgen.data import SyntheticCohort
    from fedgen.experiment.pipeline import cohort_digest, dataset_info

    source = SyntheticCohort(n_individuals=60, n_snps=8, n_causal=2, n_reference=10)
    cohort = source.load(np.random.default_rng(0))
    info = dataset_info(source, cohort, cohort_digest(cohort), seed=3)
    other = SyntheticCohort(n_individuals=60, n_snps=8, n_causal=2, n_reference=10).load(
        np.random.default_rng(1)
    )
    assert cohort_digest(other) != cohort_digest(cohort)
    tracker = MlflowTracker(uri=None, experiment="t", launch_dir=tmp_path)
    with tracked_run(tracker, "with data", {}, {}) as run:
        run.log_dataset(info)
    tracking.flush()
    run_info = _only_run(tmp_path)
    (entry,) = _client(tmp_path).get_run(run_info.info.run_id).inputs.dataset_inputs
    assert entry.dataset.name == "synthetic"
    assert entry.dataset.digest == cohort_digest(cohort)[:16]
    assert entry.dataset.source_type == "code"
    assert json.loads(entry.dataset.source)["seed"] == 3
    assert json.loads(entry.dataset.profile) == {
        "individuals": 60,
        "snps": 8,
        "cases": int(np.count_nonzero(cohort.labels == 1)),
        "reference_individuals": 10,
    }
    assert [(t.key, t.value) for t in entry.tags] == [("mlflow.data.context", "training")]
    assert run_info.info.status == "FINISHED"


def test_per_client_metrics_reach_mlflow_only_when_asked(tmp_path: Path) -> None:
    metrics = {"gmia/auc": 0.6, "gmia/client_3/auc": 0.7, "alignment/client_accuracy": 0.5}
    for asked in (False, True):
        tracker = MlflowTracker(
            uri=None, experiment=f"t{asked}", launch_dir=tmp_path, per_client_metrics=asked
        )
        with tracked_run(tracker, "m", {}, {}) as run:
            run.log_metrics(metrics)
    tracking.flush()
    client = _client(tmp_path)
    for asked, expected in (
        (False, {"gmia/auc", "alignment/client_accuracy"}),
        (True, set(metrics)),
    ):
        experiment = client.get_experiment_by_name(f"t{asked}")
        assert experiment is not None
        (stored,) = client.search_runs([experiment.experiment_id])
        assert set(stored.data.metrics) == expected
    with pytest.raises(TrackingError, match="per_client_metrics"):
        MlflowTracker(uri=None, experiment="t", launch_dir=tmp_path, per_client_metrics="yes")  # type: ignore[arg-type]


def test_a_lost_artifact_fails_the_run_with_the_reason_and_the_next_flush(tmp_path: Path) -> None:
    tracker = MlflowTracker(uri=None, experiment="t", launch_dir=tmp_path)
    tracker.start_run("r", {}, {})
    tracker.log_file(tmp_path / "missing.csv", "logs")  # returns at once
    tracker.log_text("still stored", "ok.txt")
    tracker.end_run("FINISHED")
    with pytest.raises(TrackingError, match=r"artifact logs/missing\.csv of run 'r'"):
        tracking.flush()
    run = _only_run(tmp_path)
    assert run.info.status == "FAILED"  # not FINISHED: something it wrote was lost
    assert run.data.tags["fedgen.failure"].startswith("artifact logs/missing.csv not stored")
    assert "ok.txt" in [a.path for a in _client(tmp_path).list_artifacts(run.info.run_id)]


@pytest.mark.slow
def test_an_artifact_is_stored_as_it_was_when_logged(tmp_path: Path) -> None:
    tracker = MlflowTracker(uri=None, experiment="t", launch_dir=tmp_path)
    log = tmp_path / "attack_logs.csv"
    log.write_text("seed\n1\n")
    with tracked_run(tracker, "r", {}, {}) as run:
        run.log_file(log, "logs")
        log.write_text("seed\n2\n")  # another run rewrites the file before it is uploaded
    tracking.flush()
    run_id = _only_run(tmp_path).info.run_id
    stored = _client(tmp_path).download_artifacts(run_id, "logs/attack_logs.csv", str(tmp_path))
    assert Path(stored).read_text() == "seed\n1\n"


@pytest.mark.slow
def test_a_write_lost_after_the_run_ended_turns_it_failed(tmp_path: Path) -> None:
    tracker = MlflowTracker(uri=None, experiment="t", launch_dir=tmp_path)
    tracker.start_run("r", {}, {})
    sink = tracker.artifact_sink("figures")  # as the figure pool holds it
    tracker.end_run("FINISHED")
    tracking.flush()
    assert _only_run(tmp_path).info.status == "FINISHED"
    sink(tmp_path / "roc.png")  # a figure handed over after the end, and lost
    with pytest.raises(TrackingError, match=r"figures/roc\.png"):
        tracking.flush()
    run = _only_run(tmp_path)
    assert run.info.status == "FAILED"
    assert "figures/roc.png" in run.data.tags["fedgen.failure"]


@pytest.mark.slow
def test_worker_ends_a_run_failed_when_its_store_refuses_a_write(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The worker's own logic, in this process, with the store failing one artifact.
    store = mlflow_worker._Store()
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    store.open("s", uri, "t", (tmp_path / "mlruns").as_uri())
    run_id = store.start_run("s", "r", {}, {"p": "1"})["run_id"]
    client = store.runs[run_id].client
    real = client.log_artifact

    def log_artifact(run: str, path: str, artifact_path: str | None = None) -> None:
        if path.endswith("attack_logs.csv"):
            raise OSError(28, "No space left on device")
        real(run, path, artifact_path)

    monkeypatch.setattr(client, "log_artifact", log_artifact)
    (tmp_path / "attack_logs.csv").write_text("x")
    (tmp_path / "training_log.csv").write_text("y")
    store.log_history(run_id, [[1, {"m": 0.5}]])
    store.log_file(run_id, str(tmp_path / "training_log.csv"), "logs")
    with pytest.raises(mlflow_worker.RunWriteError, match="No space left on device"):
        store.log_file(run_id, str(tmp_path / "attack_logs.csv"), "logs")
    assert store.end_run(run_id, "FINISHED") == {"status": "FAILED"}
    run = _client(tmp_path).get_run(run_id)
    assert run.info.status == "FAILED"
    assert run.data.tags["fedgen.failure"] == (
        "artifact logs/attack_logs.csv not stored: OSError: [Errno 28] No space left on device"
    )
    assert run.data.metrics == {"m": 0.5}  # what could be stored was


@pytest.mark.parametrize(
    ("setup", "expected"),
    [
        ("bogus", "MLflow has no store for the scheme 'bogus'"),
        ("corrupt", "is not a readable MLflow SQLite database"),
        ("file_as_dir", "cannot create the directory"),
        ("artifacts_blocked", "cannot write artifacts to"),
        ("no_experiment", "tracking.experiment='' must be a non-empty name"),
    ],
)
def test_a_bad_store_fails_when_the_tracker_is_made(
    tmp_path: Path, setup: str, expected: str
) -> None:
    uri: str | None = None
    experiment = "t"
    if setup == "bogus":
        uri = "bogus://x"
    elif setup == "corrupt":
        (tmp_path / "mlflow.db").write_text("not a database")
    elif setup == "file_as_dir":
        (tmp_path / "blocker").write_text("")
        uri = f"sqlite:///{tmp_path / 'blocker' / 'mlflow.db'}"
    elif setup == "artifacts_blocked":
        (tmp_path / "mlruns").write_text("")  # e.g. a full or read-only artifact disk
    else:
        experiment = ""
    with pytest.raises(TrackingError, match=expected) as caught:
        MlflowTracker(uri=uri, experiment=experiment, launch_dir=tmp_path)
    assert "\n" not in str(caught.value)


@pytest.mark.slow
def test_an_unreachable_server_fails_within_the_timeout(tmp_path: Path) -> None:
    tracking.prestart_worker()
    assert tracking._worker is not None
    tracking._worker.ready.wait(120)  # the deadline counts from MLflow's import, done here
    start = time.monotonic()
    with pytest.raises(TrackingError, match=r"did not answer within 1 s.*tracking.timeout_s"):
        MlflowTracker(uri="http://127.0.0.1:9/", experiment="t", launch_dir=tmp_path, timeout_s=1)
    assert time.monotonic() - start < 10  # MLflow alone retries for minutes
    # The stuck worker was replaced: the next tracker works.
    MlflowTracker(uri=None, experiment="t", launch_dir=tmp_path)


@pytest.mark.slow
def test_opening_a_store_fails_runs_of_this_host_whose_process_is_gone(tmp_path: Path) -> None:
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    client = _client(tmp_path)
    experiment_id = client.create_experiment("t", (tmp_path / "mlruns").as_uri())
    here = liveness.host()
    runs = {
        "killed": client.create_run(experiment_id, tags=liveness.identity(dead.pid)),
        "alive": client.create_run(experiment_id, tags=liveness.identity()),
        "elsewhere": client.create_run(
            experiment_id, tags={"fedgen.host": here + "-other", "fedgen.pid": str(dead.pid)}
        ),
    }
    MlflowTracker(uri=None, experiment="t", launch_dir=tmp_path)  # any command opening it
    status = {k: client.get_run(r.info.run_id) for k, r in runs.items()}
    assert status["killed"].info.status == "FAILED"
    assert (
        status["killed"]
        .data.tags["fedgen.failure"]
        .startswith(f"process {dead.pid} on {here} ended without closing the run")
    )
    assert status["alive"].info.status == "RUNNING"
    assert status["elsewhere"].info.status == "RUNNING"  # its process cannot be seen from here


def test_a_recycled_pid_is_not_the_process_that_opened_the_run() -> None:
    me = liveness.identity()
    assert liveness.alive(os.getpid(), me.get("fedgen.pid_start"))
    if "fedgen.pid_start" in me:  # Linux: a different start time is a different process
        assert not liveness.alive(os.getpid(), str(int(me["fedgen.pid_start"]) + 1))


@pytest.mark.slow
def test_worker_fails_open_runs_when_the_parent_goes_away(tmp_path: Path) -> None:
    tracker = MlflowTracker(uri=None, experiment="t", launch_dir=tmp_path)
    tracker.start_run("orphan", {}, {})
    worker = tracking._worker
    assert worker is not None
    worker.close()  # as if the main process had died: the worker sees end-of-file
    runs = _client(tmp_path).search_runs(
        [_client(tmp_path).get_experiment_by_name("t").experiment_id]
    )
    assert [r.info.status for r in runs] == ["FAILED"]
    assert "ended before closing the run" in runs[0].data.tags["fedgen.failure"]


def test_in_memory_tracker_records_what_was_logged() -> None:
    tracker = InMemoryTracker()
    with pytest.raises(ValueError), tracked_run(tracker, "r", {"p": "1"}, {}) as run:
        run.log_history([(1, {"m": 1.0}), (2, {"m": 2.0})])
        raise ValueError
    assert tracker.runs[0]["metrics"] == {"m": [(1, 1.0), (2, 2.0)]}
    assert tracker.runs[0]["status"] == "FAILED"


def _ready_store(tmp_path: Path) -> Path:
    """A store that MLflow opened (and checked) once, as an earlier command leaves it."""
    MlflowTracker(uri=None, experiment="t", launch_dir=tmp_path)
    tracking.flush()
    return tmp_path / "mlflow.db"


def test_the_quick_check_vouches_only_for_a_store_as_mlflow_left_it(tmp_path: Path) -> None:
    import sqlite3

    from mlflow.store.db.utils import _get_latest_schema_revision

    from fedgen.tracking.precheck import schema_head, sqlite_store_ready

    assert schema_head() == _get_latest_schema_revision()
    db = _ready_store(tmp_path)
    experiment_id = _client(tmp_path).get_experiment_by_name("t").experiment_id
    assert sqlite_store_ready(db, "t") == experiment_id
    assert sqlite_store_ready(db, "unknown") is None  # MLflow must create it
    assert sqlite_store_ready(tmp_path / "none.db", "t") is None  # MLflow must create it
    holder = sqlite3.connect(db)
    holder.execute("BEGIN IMMEDIATE")  # another process is writing: not quick
    assert sqlite_store_ready(db, "t") is None
    holder.execute("ROLLBACK")
    (tmp_path / "mlruns").rename(tmp_path / "moved")  # no artifact directory
    assert sqlite_store_ready(db, "t") is None
    (tmp_path / "moved").rename(tmp_path / "mlruns")
    assert sqlite_store_ready(db, "t") == experiment_id
    holder.execute("UPDATE alembic_version SET version_num = 'older'")
    holder.commit()
    assert sqlite_store_ready(db, "t") is None  # another schema: MLflow says what to do
    holder.close()
    corrupt = tmp_path / "corrupt.db"
    corrupt.write_text("not a database")
    assert sqlite_store_ready(corrupt, "t") is None
    _client(tmp_path).delete_experiment(experiment_id)
    assert sqlite_store_ready(db, "t") is None


def test_quick_open_still_waits_for_a_store_it_cannot_vouch_for(tmp_path: Path) -> None:
    (tmp_path / "mlflow.db").write_text("not a database")
    with tracking.quick_open(), pytest.raises(TrackingError, match="not a readable MLflow"):
        MlflowTracker(uri=None, experiment="t", launch_dir=tmp_path)


def test_a_store_that_fails_after_the_quick_check_fails_the_next_flush(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from fedgen.tracking import precheck

    (tmp_path / "mlflow.db").write_text("not a database")
    monkeypatch.setattr(precheck, "sqlite_store_ready", lambda db, experiment: "1")
    with tracking.quick_open():
        tracker = MlflowTracker(uri=None, experiment="t", launch_dir=tmp_path)  # no wait
    assert tracker.experiment_id == "1"
    tracker.start_run("r", {}, {})
    tracker.log_metrics({"m": 1.0})
    tracker.end_run("FINISHED")
    with pytest.raises(TrackingError, match="not a readable MLflow SQLite database"):
        tracking.flush()  # the store's own error, not its sequels'
    tracking.flush()  # reported once


def test_quick_open_opens_a_good_store_and_logs_to_it(tmp_path: Path) -> None:
    _ready_store(tmp_path)
    if tracking._worker is not None:
        tracking._worker.stores.clear()  # as a new command's worker would
    with tracking.quick_open():
        tracker = MlflowTracker(uri=None, experiment="t", launch_dir=tmp_path)
    with tracked_run(tracker, "r", {"p": "1"}, {}):
        tracker.log_metrics({"m": 2.0})
    tracking.flush()
    run = _only_run(tmp_path)
    assert run.info.status == "FINISHED" and run.data.metrics == {"m": 2.0}
    assert tracker.experiment_id == run.info.experiment_id
