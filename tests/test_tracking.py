"""MLflow tracking through the worker process: runs end FINISHED or FAILED, never RUNNING."""

from __future__ import annotations

from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from fedgen.core.errors import TrackingError
from fedgen.tracking import trackers as tracking
from fedgen.tracking.trackers import InMemoryTracker, MlflowTracker, tracked_run


def _client(tmp_path: Path) -> MlflowClient:
    return MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")


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
    assert runs["ok"].data.params == {"a.b": "1"}
    assert runs["ok"].data.tags["k"] == "v"
    history = client.get_metric_history(runs["ok"].info.run_id, "m")
    assert [(m.step, m.value) for m in history] == [(1, 0.5), (2, 0.25)]
    text = client.download_artifacts(runs["ok"].info.run_id, "notes/x.txt", str(tmp_path))
    assert Path(text).read_text() == "hello"


def test_an_error_in_background_logging_is_raised_at_the_next_flush(tmp_path: Path) -> None:
    tracker = MlflowTracker(uri=None, experiment="t", launch_dir=tmp_path)
    tracker.start_run("r", {}, {})
    tracker.log_file(tmp_path / "missing.csv", "logs")  # returns at once
    tracker.log_text("still stored", "ok.txt")
    with pytest.raises(TrackingError, match="MLflow log_file failed"):
        tracking.flush()
    tracker.end_run("FINISHED")
    tracking.flush()
    client = _client(tmp_path)
    (run,) = client.search_runs([client.get_experiment_by_name("t").experiment_id])
    assert run.info.status == "FINISHED"
    assert "ok.txt" in [a.path for a in client.list_artifacts(run.info.run_id)]


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


def test_in_memory_tracker_records_what_was_logged() -> None:
    tracker = InMemoryTracker()
    with pytest.raises(ValueError), tracked_run(tracker, "r", {"p": "1"}, {}) as run:
        run.log_history([(1, {"m": 1.0}), (2, {"m": 2.0})])
        raise ValueError
    assert tracker.runs[0]["metrics"] == {"m": [(1, 1.0), (2, 2.0)]}
    assert tracker.runs[0]["status"] == "FAILED"
