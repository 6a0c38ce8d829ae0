"""A child process that owns the MLflow client: JSON requests on stdin, JSON replies on stdout.

Importing MLflow's SQL tracking store and opening it costs more than fedgen's whole default
experiment. Started at the beginning of a command, this process pays that on the other core
while the main process composes the config and trains, and the main process never imports
MLflow at all. If the main process goes away with a run still open (crash, kill), the worker
sees end-of-file and marks that run FAILED: no run is left RUNNING.

Requests (one JSON object a line) and their replies:
``open {uri, experiment, artifact_location}`` -> ``{}``;
``start_run {name, tags, params, handle?}`` -> ``{run_id}`` (later requests may name the run by
its ``handle`` instead of its id);
``log_history {run_id, steps: [[step, {key: value}], ...]}``;
``log_text {run_id, text, artifact_file}``; ``log_file {run_id, path, artifact_dir}``;
``end_run {run_id, status}``. A failure replies ``{"error": message}``.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import Any, TextIO

from fedgen.tracking.trackers import sqlite_path


class _Store:
    def __init__(self) -> None:
        from mlflow.tracking import MlflowClient

        self._client_cls = MlflowClient
        self.client: Any = None
        self.experiment_id: str | None = None
        self.open_runs: set[str] = set()
        # The parent names a run it has not heard the id of yet by a handle of its own.
        self.handles: dict[str, str] = {}

    def open(self, uri: str, experiment: str, artifact_location: str | None) -> dict[str, Any]:
        from filelock import FileLock

        lock_path = sqlite_path(uri)
        if lock_path is None:
            self._open(uri, experiment, artifact_location)
        else:
            # Concurrent first creation of an MLflow SQLite store races on its schema.
            lock_path.parent.mkdir(parents=True, exist_ok=True)
            with FileLock(str(lock_path) + ".lock", timeout=300):
                self._open(uri, experiment, artifact_location)
        return {}

    def _open(self, uri: str, experiment: str, artifact_location: str | None) -> None:
        self.client = self._client_cls(tracking_uri=uri)
        found = self.client.get_experiment_by_name(experiment)
        if found is not None:
            self.experiment_id = str(found.experiment_id)
        else:
            self.experiment_id = str(self.client.create_experiment(experiment, artifact_location))

    def start_run(
        self, name: str, tags: dict[str, str], params: dict[str, str], handle: str | None = None
    ) -> dict[str, Any]:
        from mlflow.entities import Param

        # A tag may name another run by its handle (a sweep's parent run): use its id.
        tags = {k: self.handles.get(v, v) for k, v in tags.items()}
        run = self.client.create_run(self.experiment_id, tags=tags, run_name=name)
        run_id = str(run.info.run_id)
        self.open_runs.add(run_id)
        if handle is not None:
            self.handles[handle] = run_id
        items = [Param(k, str(v)[:6000]) for k, v in params.items()]
        for i in range(0, len(items), 100):  # MLflow's per-batch limit on params
            self.client.log_batch(run_id, params=items[i : i + 100])
        return {"run_id": run_id}

    def log_history(self, run_id: str, steps: list[list[Any]]) -> dict[str, Any]:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        items = [Metric(k, float(v), now, int(step)) for step, m in steps for k, v in m.items()]
        for i in range(0, len(items), 1000):  # MLflow's per-batch limit on metrics
            self.client.log_batch(run_id, metrics=items[i : i + 1000])
        return {}

    def set_tags(self, run_id: str, tags: dict[str, str]) -> dict[str, Any]:
        from mlflow.entities import RunTag

        items = [RunTag(k, str(v)[:8000]) for k, v in tags.items()]
        for i in range(0, len(items), 100):
            self.client.log_batch(run_id, tags=items[i : i + 100])
        return {}

    def log_text(self, run_id: str, text: str, artifact_file: str) -> dict[str, Any]:
        self.client.log_text(run_id, text, artifact_file)
        return {}

    def log_file(self, run_id: str, path: str, artifact_dir: str | None) -> dict[str, Any]:
        self.client.log_artifact(run_id, path, artifact_dir)
        return {}

    def end_run(self, run_id: str, status: str) -> dict[str, Any]:
        self.client.set_terminated(run_id, status)
        self.open_runs.discard(run_id)
        return {}

    def fail_open_runs(self) -> None:
        for run_id in list(self.open_runs):
            self.end_run(run_id, "FAILED")


def serve(requests: TextIO, replies: TextIO) -> None:
    """Answer requests until end-of-file, then fail any run left open."""
    store = _Store()
    try:
        for line in requests:
            request = json.loads(line)
            op = request.pop("op")
            if "run_id" in request:
                request["run_id"] = store.handles.get(request["run_id"], request["run_id"])
            try:
                reply = getattr(store, op)(**request)
            except Exception as exc:  # reported to the caller, which raises it
                reply = {"error": f"{type(exc).__name__}: {exc}"}
            replies.write(json.dumps(reply) + "\n")
            replies.flush()
    finally:
        if store.client is not None:
            store.fail_open_runs()


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING)
    logging.getLogger("alembic").setLevel(logging.WARNING)
    # "Creating initial MLflow database tables..." is news to no one running fedgen.
    logging.getLogger("mlflow.store.db.utils").setLevel(logging.WARNING)
    out = sys.stdout
    sys.stdout = sys.stderr  # anything MLflow prints must not corrupt the reply stream
    serve(sys.stdin, out)
