"""Experiment tracking behind one protocol: a real MLflow store, or an in-memory record."""

from __future__ import annotations

import atexit
import collections
import itertools
import json
import os
import subprocess
import sys
import threading
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import unquote

from fedgen.core.errors import TrackingError

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
        self.artifact_sink(artifact_dir)(path)

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
    """The parent's end of :mod:`.mlflow_worker`: requests in order, replies in order.

    ``send`` does not wait for the reply, so the worker writes a job's metrics and artifacts
    while this process goes on (e.g. Hydra composes the next job of a sweep). ``result`` waits
    for one request's reply only (and those before it); ``call`` and ``drain`` first collect
    every outstanding reply and raise the first error among them.
    """

    def __init__(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "fedgen.tracking.mlflow_worker"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        self.lock = threading.Lock()
        self.pending: collections.deque[tuple[int, str]] = collections.deque()
        self.wanted: dict[int, dict[str, Any] | None] = {}
        self.errors: list[TrackingError] = []
        self.tickets = itertools.count()

    def send(self, op: str, *, want_reply: bool = False, **args: Any) -> int:
        """Queue a request; its reply is read later. Returns a ticket for :meth:`result`."""
        with self.lock:
            self._write(op, args)
            ticket = next(self.tickets)
            self.pending.append((ticket, op))
            if want_reply:
                self.wanted[ticket] = None
            return ticket

    def result(self, ticket: int) -> dict[str, Any]:
        """The reply to the request ``ticket`` (sent with ``want_reply``), once it has come."""
        with self.lock:
            while self.wanted.get(ticket) is None:
                self._read_next()
            reply = self.wanted.pop(ticket)
        assert reply is not None
        if "error" in reply:
            raise TrackingError(reply["error"])
        return reply

    def call(self, op: str, **args: Any) -> dict[str, Any]:
        """Send a request and wait for its reply, after the replies still outstanding."""
        self.drain()
        return self.result(self.send(op, want_reply=True, **args))

    def drain(self) -> None:
        """Wait until the worker has answered every request; raise the first error."""
        with self.lock:
            while self.pending:
                self._read_next()
            errors, self.errors = self.errors, []
        if errors:
            raise errors[0]

    def _write(self, op: str, args: Mapping[str, Any]) -> None:
        assert self.proc.stdin is not None
        try:
            self.proc.stdin.write(json.dumps({"op": op, **args}) + "\n")
            self.proc.stdin.flush()
        except OSError:
            raise self._exited() from None

    def _read_next(self) -> None:
        assert self.proc.stdout is not None
        ticket, op = self.pending.popleft()
        try:
            line = self.proc.stdout.readline()
        except OSError:
            line = ""
        if not line:
            raise self._exited()
        reply: dict[str, Any] = json.loads(line)
        if "error" in reply:
            reply["error"] = f"MLflow {op} failed: {reply['error']}"
        if ticket in self.wanted:
            self.wanted[ticket] = reply
        elif "error" in reply:
            self.errors.append(TrackingError(reply["error"]))

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

    MLflow's client runs in a child process (:mod:`.mlflow_worker`) that the CLI starts
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
        self._handle: str | None = None  # names the open run in requests to the worker
        self._ticket: int | None = None  # the start_run request, whose reply holds the run id
        self._run_id: str | None = None
        self._opened = False

    @property
    def handle(self) -> str | None:
        """The open run's name for this process's MLflow worker (known at once), else None."""
        return self._handle

    @property
    def run_id(self) -> str | None:
        """The open run's MLflow id (waits for MLflow to have created the run), else None."""
        if self._handle is None:
            return None
        if self._run_id is None and self._ticket is not None:
            self._run_id = str(_get_worker().result(self._ticket)["run_id"])
        return self._run_id

    def _worker(self) -> _Worker:
        worker = _get_worker()
        if not self._opened:
            db = sqlite_path(self.uri)
            location = (db.parent / "mlruns").as_uri() if db is not None else None
            worker.send(
                "open", uri=self.uri, experiment=self.experiment, artifact_location=location
            )
            self._opened = True
        return worker

    def _send(self, op: str, **args: Any) -> None:
        """A request answered later: MLflow stores it while the job goes on."""
        self._worker().send(op, **args)

    def start_run(self, name: str, params: Mapping[str, str], tags: Mapping[str, str]) -> None:
        """Ask MLflow for the run and go on at once: later requests name it by a handle."""
        all_tags = dict(tags)
        parent = self._parent_run_id()
        if parent:
            all_tags["mlflow.parentRunId"] = parent
        handle = f"fedgen-run-{uuid.uuid4().hex}"
        self._ticket = self._worker().send(
            "start_run",
            want_reply=True,
            name=name,
            tags=all_tags,
            params=dict(params),
            handle=handle,
        )
        self._handle, self._run_id = handle, None

    def _parent_run_id(self) -> str | None:
        if self.sweep_dir is None:
            return None
        marker = self.sweep_dir / PARENT_RUN_FILE
        return marker.read_text().strip() if marker.is_file() else None

    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        self.log_history([(step or 0, metrics)])

    def log_history(self, steps: Sequence[tuple[int, Mapping[str, float]]]) -> None:
        payload = [[step, {k: float(v) for k, v in m.items()}] for step, m in steps]
        self._send("log_history", run_id=self._handle, steps=payload)

    def set_tags(self, tags: Mapping[str, str]) -> None:
        self._send("set_tags", run_id=self._handle, tags=dict(tags))

    def log_text(self, text: str, artifact_file: str) -> None:
        self._send("log_text", run_id=self._handle, text=text, artifact_file=artifact_file)

    def log_file(self, path: Path, artifact_dir: str | None = None) -> None:
        self.artifact_sink(artifact_dir)(path)

    def artifact_sink(self, artifact_dir: str | None) -> Callable[[Path], None]:
        run_id, worker = self._handle, self._worker()

        def sink(path: Path) -> None:
            worker.send("log_file", run_id=run_id, path=str(path), artifact_dir=artifact_dir)

        return sink

    def end_run(self, status: str) -> None:
        if self._handle is not None:
            handle, self._handle, self._ticket = self._handle, None, None
            self._send("end_run", run_id=handle, status=status)
