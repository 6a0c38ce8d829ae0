"""Experiment tracking behind one protocol: a real MLflow store, or an in-memory record."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import unquote, urlparse

PARENT_RUN_FILE = ".mlflow_parent_run_id"
FINISHED, FAILED = "FINISHED", "FAILED"


class Tracker(Protocol):
    """Where a job's params, metrics and artifacts go. One run at a time."""

    def start_run(self, name: str, params: Mapping[str, str], tags: Mapping[str, str]) -> None:
        """Open a run and record its params and tags."""
        ...

    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        """Record metrics (at ``step``, e.g. the FedAvg round), in one batch."""
        ...

    def log_text(self, text: str, artifact_file: str) -> None:
        """Store ``text`` as the artifact ``artifact_file`` (a relative path)."""
        ...

    def log_file(self, path: Path, artifact_dir: str | None = None) -> None:
        """Store a local file as an artifact under ``artifact_dir``."""
        ...

    def end_run(self, status: str) -> None:
        """Close the run as ``FINISHED`` or ``FAILED``."""
        ...


@contextmanager
def tracked_run(
    tracker: Tracker, name: str, params: Mapping[str, str], tags: Mapping[str, str]
) -> Iterator[Tracker]:
    """Open a run; it ends FINISHED, or FAILED if the body raises (never left RUNNING)."""
    tracker.start_run(name, params, tags)
    try:
        yield tracker
    except BaseException:
        tracker.end_run(FAILED)
        raise
    tracker.end_run(FINISHED)


@dataclass
class InMemoryTracker:
    """Keeps everything in memory (``tracking=none``); tests read it back."""

    runs: list[dict[str, Any]] = field(default_factory=list)

    def start_run(self, name: str, params: Mapping[str, str], tags: Mapping[str, str]) -> None:
        self.runs.append(
            {"name": name, "params": dict(params), "tags": dict(tags), "metrics": {},
             "artifacts": {}, "status": "RUNNING"}
        )

    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        history = self.runs[-1]["metrics"]
        for key, value in metrics.items():
            history.setdefault(key, []).append((step, float(value)))

    def log_text(self, text: str, artifact_file: str) -> None:
        self.runs[-1]["artifacts"][artifact_file] = text

    def log_file(self, path: Path, artifact_dir: str | None = None) -> None:
        key = f"{artifact_dir}/{path.name}" if artifact_dir else path.name
        self.runs[-1]["artifacts"][key] = path.read_bytes()

    def end_run(self, status: str) -> None:
        self.runs[-1]["status"] = status


def resolve_uri(uri: str | None, launch_dir: Path) -> str:
    """The config's URI, else ``$MLFLOW_TRACKING_URI``, else a SQLite store in ``launch_dir``."""
    if uri:
        return uri
    env = os.environ.get("MLFLOW_TRACKING_URI")
    if env:
        return env
    return f"sqlite:///{launch_dir.resolve() / 'mlflow.db'}"


def sqlite_path(uri: str) -> Path | None:
    """The database file of a ``sqlite:///`` URI, else None."""
    if not uri.startswith("sqlite:///"):
        return None
    return Path(unquote(urlparse(uri).path))


class MlflowTracker:
    """Logs to an MLflow tracking store (``tracking=mlflow``) through ``MlflowClient``.

    With the default local SQLite store, new experiments keep their artifacts in ``mlruns/``
    beside the database, so ``mlflow ui`` run from the launch directory shows everything.
    A file lock guards the store's first creation: concurrent creation of an MLflow SQLite
    store races on its schema migration.
    """

    def __init__(
        self,
        uri: str | None,
        experiment: str,
        launch_dir: Path,
        sweep_dir: Path | None = None,
    ) -> None:
        self.uri = resolve_uri(uri, launch_dir)
        self.experiment = experiment
        self.sweep_dir = sweep_dir
        self._client: Any = None
        self._experiment_id: str | None = None
        self.run_id: str | None = None

    def _connect(self) -> tuple[Any, str]:
        if self._client is None or self._experiment_id is None:
            from filelock import FileLock
            from mlflow.tracking import MlflowClient

            db = sqlite_path(self.uri)
            if db is None:
                self._client = MlflowClient(tracking_uri=self.uri)
                self._experiment_id = self._experiment(None)
            else:
                db.parent.mkdir(parents=True, exist_ok=True)
                with FileLock(str(db) + ".lock", timeout=300):
                    self._client = MlflowClient(tracking_uri=self.uri)
                    self._experiment_id = self._experiment((db.parent / "mlruns").as_uri())
        return self._client, self._experiment_id

    def _experiment(self, artifact_location: str | None) -> str:
        found = self._client.get_experiment_by_name(self.experiment)
        if found is not None:
            return str(found.experiment_id)
        return str(self._client.create_experiment(self.experiment, artifact_location))

    def start_run(self, name: str, params: Mapping[str, str], tags: Mapping[str, str]) -> None:
        from mlflow.entities import Param

        client, experiment_id = self._connect()
        all_tags = dict(tags)
        parent = self._parent_run_id()
        if parent:
            all_tags["mlflow.parentRunId"] = parent
        run = client.create_run(experiment_id, tags=all_tags, run_name=name)
        self.run_id = run.info.run_id
        items = [Param(k, str(v)[:6000]) for k, v in params.items()]
        for i in range(0, len(items), 100):  # MLflow's per-batch limit on params
            client.log_batch(self.run_id, params=items[i : i + 100])

    def start_parent(self, name: str, tags: Mapping[str, str]) -> str:
        """Open a sweep's parent run and return its id (left open until ``end_run``)."""
        client, experiment_id = self._connect()
        run = client.create_run(experiment_id, tags=dict(tags), run_name=name)
        self.run_id = str(run.info.run_id)
        return self.run_id

    def _parent_run_id(self) -> str | None:
        if self.sweep_dir is None:
            return None
        marker = self.sweep_dir / PARENT_RUN_FILE
        return marker.read_text().strip() if marker.is_file() else None

    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        from mlflow.entities import Metric

        client, _ = self._connect()
        now = int(time.time() * 1000)
        items = [Metric(k, float(v), now, step or 0) for k, v in metrics.items()]
        for i in range(0, len(items), 1000):  # MLflow's per-batch limit on metrics
            client.log_batch(self.run_id, metrics=items[i : i + 1000])

    def log_text(self, text: str, artifact_file: str) -> None:
        client, _ = self._connect()
        client.log_text(self.run_id, text, artifact_file)

    def log_file(self, path: Path, artifact_dir: str | None = None) -> None:
        client, _ = self._connect()
        client.log_artifact(self.run_id, str(path), artifact_dir)

    def end_run(self, status: str) -> None:
        if self.run_id is not None:
            client, _ = self._connect()
            client.set_terminated(self.run_id, status)
            self.run_id = None
