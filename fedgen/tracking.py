"""Experiment tracking behind one protocol: a real MLflow store, or an in-memory record."""

from __future__ import annotations

import atexit
import json
import os
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import unquote

from fedgen.errors import TrackingError

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

    def log_history(self, steps: Sequence[tuple[int, Mapping[str, float]]]) -> None:
        """Record metrics at several steps (e.g. every FedAvg round), in one batch."""
        ...

    def set_tags(self, tags: Mapping[str, str]) -> None:
        """Add or overwrite tags of the open run."""
        ...

    def log_text(self, text: str, artifact_file: str) -> None:
        """Store ``text`` as the artifact ``artifact_file`` (a relative path)."""
        ...

    def log_file(self, path: Path, artifact_dir: str | None = None) -> None:
        """Store a local file as an artifact under ``artifact_dir``."""
        ...

    def artifact_sink(self, artifact_dir: str | None) -> Callable[[Path], None]:
        """A function that logs a file to this run under ``artifact_dir``, also once the run
        has ended and from another thread (for artifacts made in the background)."""
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
            {
                "name": name,
                "params": dict(params),
                "tags": dict(tags),
                "metrics": {},
                "artifacts": {},
                "status": "RUNNING",
            }
        )

    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        history = self.runs[-1]["metrics"]
        for key, value in metrics.items():
            history.setdefault(key, []).append((step, float(value)))

    def log_history(self, steps: Sequence[tuple[int, Mapping[str, float]]]) -> None:
        for step, metrics in steps:
            self.log_metrics(metrics, step)

    def set_tags(self, tags: Mapping[str, str]) -> None:
        self.runs[-1]["tags"].update(tags)

    def log_text(self, text: str, artifact_file: str) -> None:
        self.runs[-1]["artifacts"][artifact_file] = text

    def log_file(self, path: Path, artifact_dir: str | None = None) -> None:
        key = f"{artifact_dir}/{path.name}" if artifact_dir else path.name
        self.runs[-1]["artifacts"][key] = path.read_bytes()

    def artifact_sink(self, artifact_dir: str | None) -> Callable[[Path], None]:
        artifacts = self.runs[-1]["artifacts"]

        def sink(path: Path) -> None:
            key = f"{artifact_dir}/{path.name}" if artifact_dir else path.name
            artifacts[key] = path.read_bytes()

        return sink

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
    """The database file of a ``sqlite:///`` URI (absolute after four slashes), else None."""
    prefix = "sqlite:///"
    return Path(unquote(uri[len(prefix) :])).resolve() if uri.startswith(prefix) else None


class _Worker:
    """The parent's end of :mod:`fedgen.mlflow_worker`: requests in order, replies in order.

    ``send`` does not wait for the reply, so the worker writes a job's metrics and artifacts
    while this process goes on (e.g. Hydra composes the next job of a sweep). ``call`` and
    ``drain`` first collect every outstanding reply and raise the first error among them.
    """

    def __init__(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "fedgen.mlflow_worker"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        self.lock = threading.Lock()
        self.pending: list[str] = []

    def send(self, op: str, **args: Any) -> None:
        """Queue a request whose reply is checked later (by ``call`` or ``drain``)."""
        with self.lock:
            self._write(op, args)
            self.pending.append(op)

    def call(self, op: str, **args: Any) -> dict[str, Any]:
        """Send a request and wait for its reply, after the replies still outstanding."""
        with self.lock:
            self._drain()
            self._write(op, args)
            return self._read(op)

    def drain(self) -> None:
        """Wait until the worker has answered every request; raise the first error."""
        with self.lock:
            self._drain()

    def _write(self, op: str, args: Mapping[str, Any]) -> None:
        assert self.proc.stdin is not None
        try:
            self.proc.stdin.write(json.dumps({"op": op, **args}) + "\n")
            self.proc.stdin.flush()
        except OSError:
            raise self._exited() from None

    def _read(self, op: str) -> dict[str, Any]:
        assert self.proc.stdout is not None
        try:
            line = self.proc.stdout.readline()
        except OSError:
            line = ""
        if not line:
            raise self._exited()
        reply: dict[str, Any] = json.loads(line)
        if "error" in reply:
            raise TrackingError(f"MLflow {op} failed: {reply['error']}")
        return reply

    def _drain(self) -> None:
        pending, self.pending = self.pending, []
        first: TrackingError | None = None
        for op in pending:
            try:
                self._read(op)
            except TrackingError as exc:
                first = first or exc
        if first is not None:
            raise first

    @staticmethod
    def _exited() -> TrackingError:
        return TrackingError(
            "the MLflow tracking process exited (its error is printed above); "
            "check tracking.uri, or run with tracking=none"
        )

    def close(self) -> None:
        try:
            self.drain()
        except TrackingError as exc:
            print(f"fedgen: error: {exc}", file=sys.stderr)
        if self.proc.stdin is not None and not self.proc.stdin.closed:
            self.proc.stdin.close()
        self.proc.wait(timeout=60)
        if self.proc.stdout is not None:
            self.proc.stdout.close()


_worker: _Worker | None = None


def prestart_worker() -> None:
    """Start the MLflow process now, so its imports overlap the caller's own start-up."""
    global _worker
    if _worker is None or _worker.proc.poll() is not None:
        _worker = _Worker()
        atexit.register(_worker.close)


def flush() -> None:
    """Wait until everything sent to MLflow is stored; raise :class:`TrackingError` if not."""
    if _worker is not None and _worker.proc.poll() is None:
        _worker.drain()


def _get_worker() -> _Worker:
    prestart_worker()
    assert _worker is not None
    return _worker


class MlflowTracker:
    """Logs to an MLflow tracking store (``tracking=mlflow``).

    MLflow's client runs in a child process (:mod:`fedgen.mlflow_worker`) that the CLI starts
    first thing, so that importing and opening the store overlap the run. With the default
    local SQLite store, new experiments keep their artifacts in ``mlruns/`` beside the
    database, so ``mlflow ui`` run from the launch directory shows everything.
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
        self.run_id: str | None = None
        self._opened = False

    def _worker(self) -> _Worker:
        worker = _get_worker()
        if not self._opened:
            db = sqlite_path(self.uri)
            location = (db.parent / "mlruns").as_uri() if db is not None else None
            worker.call(
                "open", uri=self.uri, experiment=self.experiment, artifact_location=location
            )
            self._opened = True
        return worker

    def _call(self, op: str, **args: Any) -> dict[str, Any]:
        """A request whose reply is needed now (e.g. the new run's id)."""
        return self._worker().call(op, **args)

    def _send(self, op: str, **args: Any) -> None:
        """A request answered later: MLflow stores it while the job goes on."""
        self._worker().send(op, **args)

    def start_run(self, name: str, params: Mapping[str, str], tags: Mapping[str, str]) -> None:
        all_tags = dict(tags)
        parent = self._parent_run_id()
        if parent:
            all_tags["mlflow.parentRunId"] = parent
        reply = self._call("start_run", name=name, tags=all_tags, params=dict(params))
        self.run_id = str(reply["run_id"])

    def _parent_run_id(self) -> str | None:
        if self.sweep_dir is None:
            return None
        marker = self.sweep_dir / PARENT_RUN_FILE
        return marker.read_text().strip() if marker.is_file() else None

    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        self.log_history([(step or 0, metrics)])

    def log_history(self, steps: Sequence[tuple[int, Mapping[str, float]]]) -> None:
        payload = [[step, {k: float(v) for k, v in m.items()}] for step, m in steps]
        self._send("log_history", run_id=self.run_id, steps=payload)

    def set_tags(self, tags: Mapping[str, str]) -> None:
        self._send("set_tags", run_id=self.run_id, tags=dict(tags))

    def log_text(self, text: str, artifact_file: str) -> None:
        self._send("log_text", run_id=self.run_id, text=text, artifact_file=artifact_file)

    def log_file(self, path: Path, artifact_dir: str | None = None) -> None:
        self._send("log_file", run_id=self.run_id, path=str(path), artifact_dir=artifact_dir)

    def artifact_sink(self, artifact_dir: str | None) -> Callable[[Path], None]:
        run_id, worker = self.run_id, self._worker()

        def sink(path: Path) -> None:
            worker.send("log_file", run_id=run_id, path=str(path), artifact_dir=artifact_dir)

        return sink

    def end_run(self, status: str) -> None:
        if self.run_id is not None:
            run_id, self.run_id = self.run_id, None
            self._send("end_run", run_id=run_id, status=status)
