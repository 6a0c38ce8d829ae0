"""Experiment tracking behind one protocol: a real MLflow store, or an in-memory record."""

from __future__ import annotations

import atexit
import collections
import contextlib
import itertools
import json
import logging
import os
import queue
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import quote, unquote, urlencode, urlparse

from fedgen.core import lifecycle
from fedgen.core.errors import TrackingError
from fedgen.tracking.liveness import FAILURE_TAG, MAX_TAG_CHARS, identity

log = logging.getLogger("fedgen")

PARENT_RUN_FILE = ".mlflow_parent_run_id"
FINISHED, FAILED, KILLED = "FINISHED", "FAILED", "KILLED"
DEFAULT_TIMEOUT_S = 10.0
# Stores reached over the network: opening one waits tracking.timeout_s at most.
NETWORK_SCHEMES = ("http", "https", "databricks", "postgresql", "mysql", "mssql")


@dataclass(frozen=True)
class DatasetInfo:
    """What identifies a run's cohort, as an MLflow dataset (no data is uploaded).

    Attributes
    ----------
    name : str
        Short name shown in the UI (the file's name, or the generator's).
    digest : str
        Hex digest of the cohort's genotypes and labels (equal digests: equal cohorts).
    source_type, source : str
        Where it comes from: ``local`` and the file path, or ``code`` and the generator with its
        settings, as JSON.
    profile : dict of str to int
        Sizes: individuals, SNPs, cases, reference individuals.
    """

    name: str
    digest: str
    source_type: str
    source: str
    profile: dict[str, int]

    def entity(self) -> dict[str, str]:
        """The fields of ``mlflow.entities.Dataset``."""
        return {
            "name": self.name,
            "digest": self.digest,
            "source_type": self.source_type,
            "source": self.source,
            "profile": json.dumps(self.profile, sort_keys=True),
        }


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

    def log_dataset(self, dataset: DatasetInfo, context: str = "training") -> None:
        """Record the run's input data (MLflow: a dataset input, shown in the UI)."""
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
        """Close the run as ``FINISHED``, ``FAILED`` or ``KILLED`` (interrupted)."""
        ...


_PER_CLIENT = re.compile(r"^[^/]+/client_\d+/")


def is_headline(metric: str) -> bool:
    """Whether ``metric`` is logged to MLflow by default: all but the per-client breakdowns
    (``gmia/client_3/auc``), which stay in ``run.json`` and the report (100+ of a run's metrics
    that buried the headline ones in the UI; ``tracking.per_client_metrics=true`` logs them)."""
    return _PER_CLIENT.match(metric) is None


def _now_ms() -> int:
    """Now, in MLflow's unit (ms since the epoch): runs are timed by the job, not the worker."""
    return int(time.time() * 1000)


@contextmanager
def tracked_run(
    tracker: Tracker, name: str, params: Mapping[str, str], tags: Mapping[str, str]
) -> Iterator[Tracker]:
    """Open a run; it ends FINISHED, FAILED if the body raises, KILLED if it is interrupted
    (Ctrl-C, SIGTERM): never left RUNNING.

    A failed or killed run carries the reason in the tag ``fedgen.failure``. The exception
    that ended the body is the one raised, even if the run cannot be closed (the store is
    gone): an interrupt must stop the sweep, not turn into a failed job that lets it go on.
    """
    tracker.start_run(name, params, tags)
    try:
        yield tracker
    except BaseException as exc:
        reason = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        status = KILLED if isinstance(exc, KeyboardInterrupt) else FAILED
        try:
            tracker.set_tags({FAILURE_TAG: reason[:MAX_TAG_CHARS]})
            tracker.end_run(status)
        except Exception as closing:  # the next command's reaping closes it (liveness.py)
            log.error("the run %r could not be closed as %s: %s", name, status, closing)
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

    def log_dataset(self, dataset: DatasetInfo, context: str = "training") -> None:
        self.runs[-1].setdefault("datasets", []).append((dataset, context))

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


UI_ADDRESS = "http://127.0.0.1:5000"  # where ``mlflow ui`` serves by default
# MLflow 3 opens an experiment on its GenAI traces overview unless the URL (or the UI's global
# toggle) asks for model training; this query keeps the run list and run pages.
UI_QUERY = "workflowType=machine_learning"


def ui_url(experiment_id: str, run_id: str | None = None, address: str = UI_ADDRESS) -> str:
    """The MLflow UI's page of an experiment's run list (or of one run), in model-training mode.

    For example ``http://127.0.0.1:5000/#/experiments/1/runs?workflowType=machine_learning``.
    """
    route = f"experiments/{experiment_id}/runs" + (f"/{run_id}" if run_id else "")
    return f"{address.rstrip('/')}/#/{route}?{UI_QUERY}"


# The UI folds a parent run's children under it unless the list is sorted by something other
# than start time: sorted by run name, a sweep's jobs are listed one row each.
SORT_BY_NAME = {"orderByKey": "tags.`mlflow.runName`", "orderByAsc": "true"}


def sweep_url(experiment_id: str, sweep_dir: str, address: str = UI_ADDRESS) -> str:
    """The MLflow UI's run list of one sweep: its parent and every job, one row each.

    Filtered on the ``fedgen.sweep_dir`` tag (unless the path holds a quote, which MLflow's
    filter syntax cannot carry) and sorted by run name, in model-training mode.
    """
    query = dict(SORT_BY_NAME)
    if "'" not in sweep_dir:
        query["searchFilter"] = f"tags.`fedgen.sweep_dir` = '{sweep_dir}'"
    encoded = urlencode(query, quote_via=quote)
    return f"{address.rstrip('/')}/#/experiments/{experiment_id}/runs?{UI_QUERY}&{encoded}"


def ui_command(uri: str) -> str | None:
    """The command that serves the MLflow UI of the store ``uri``; None for a tracking server
    (it serves its own UI at ``uri``)."""
    if urlparse(uri).scheme.lower() in ("http", "https"):
        return None
    mlflow = Path(sys.executable).parent / "mlflow"
    program = str(mlflow) if mlflow.exists() else "mlflow"
    return f"{program} ui --backend-store-uri {uri}"


def sqlite_path(uri: str) -> Path | None:
    """The database file of a ``sqlite:///`` URI (absolute after four slashes), else None."""
    prefix = "sqlite:///"
    return Path(unquote(uri[len(prefix) :])).resolve() if uri.startswith(prefix) else None


class _Timeout(Exception):
    """The worker did not answer in time."""


# How the worker is started; tests put a wrapper here that injects store failures.
WORKER_COMMAND = [sys.executable, "-m", "fedgen.tracking.mlflow_worker"]
STARTUP_TIMEOUT_S = 300.0  # importing MLflow on a loaded machine, not the store's answer
INTERRUPTED_CLOSE_S = 5.0  # after Ctrl-C/SIGTERM: how long MLflow may take to store the rest


class _Worker:
    """The parent's end of :mod:`.mlflow_worker`: requests in order, replies in order.

    ``send`` does not wait for the reply, so the worker writes a job's metrics and artifacts
    while this process goes on (e.g. Hydra composes the next job of a sweep). ``result`` waits
    for one request's reply only (and those before it); ``call`` and ``drain`` first collect
    every outstanding reply and raise the first error among them. A thread reads the replies,
    so that a wait can have a deadline; a worker that misses one is killed and replaced.
    """

    def __init__(self) -> None:
        # Signals blocked until the worker ignores them: a Ctrl-C or SIGTERM to the process
        # group is this process's to handle, and closing the runs needs the worker alive.
        hurry = (signal.SIGUSR1,) if hasattr(signal, "SIGUSR1") else ()
        with lifecycle.signals_blocked((*lifecycle.STOP_SIGNALS, *hurry)):
            self.proc = subprocess.Popen(
                WORKER_COMMAND, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
            )
        self.lock = threading.Lock()
        self.pending: collections.deque[tuple[int, str]] = collections.deque()
        self.wanted: dict[int, dict[str, Any] | None] = {}
        self.errors: list[TrackingError] = []
        self.tickets = itertools.count()
        self.lines: queue.Queue[str | None] = queue.Queue()
        self.ready = threading.Event()  # MLflow is imported: the worker answers from now on
        self.abandoned = False
        self.stores: dict[tuple[str, str], str] = {}  # (uri, experiment) -> key, once checked
        # Requests whose reply no one waits for but which must not fail unnoticed (an ``open``
        # that a quick check vouched for): ticket -> what to do with a good reply.
        self.deferred: dict[int, Callable[[dict[str, Any]], None]] = {}
        self.experiment_ids: dict[str, str] = {}  # store key -> the experiment's MLflow id
        self._staging: Path | None = None
        self._staged = itertools.count()
        self._stage_lock = threading.Lock()  # figures are staged from the pool's threads
        self._reader = threading.Thread(target=self._read_lines, daemon=True)
        self._reader.start()
        lifecycle.on_interrupt(self.hurry)

    def hurry(self) -> None:
        """Interrupted: have the worker skip the metrics and artifacts still queued (SIGUSR1)."""
        if self.alive() and hasattr(signal, "SIGUSR1"):
            self.proc.send_signal(signal.SIGUSR1)

    def alive(self) -> bool:
        return not self.abandoned and self.proc.poll() is None

    def _read_lines(self) -> None:
        assert self.proc.stdout is not None
        try:
            for line in self.proc.stdout:
                if not self.ready.is_set():
                    self.ready.set()  # the first line says MLflow is imported
                    continue
                self.lines.put(line)
        except (OSError, ValueError):
            pass
        finally:
            self.ready.set()
            self.lines.put(None)

    def send(self, op: str, *, want_reply: bool = False, **args: Any) -> int:
        """Queue a request; its reply is read later. Returns a ticket for :meth:`result`."""
        with self.lock, lifecycle.deferred():  # a half-written request would hang the pipe
            self._write(op, args)
            ticket = next(self.tickets)
            self.pending.append((ticket, op))
            if want_reply:
                self.wanted[ticket] = None
            return ticket

    def result(self, ticket: int, timeout: float | None = None) -> dict[str, Any]:
        """The reply to the request ``ticket`` (sent with ``want_reply``), once it has come.

        With ``timeout``, waits that many seconds at most once the worker is ready; then the
        worker is killed (its replies would no longer match the requests) and
        :class:`_Timeout` is raised.
        """
        deadline = None
        if timeout is not None:
            self.ready.wait(STARTUP_TIMEOUT_S)
            deadline = time.monotonic() + timeout
        with self.lock:
            while self.wanted.get(ticket) is None:
                self._read_next(deadline)
            reply = self.wanted.pop(ticket)
            failed = self._settle_deferred()
        if failed:  # the store itself failed: that is the error to report, not its sequels
            raise failed[0]
        assert reply is not None
        if "error" in reply:
            raise TrackingError(reply["error"])
        return reply

    def call(self, op: str, timeout: float | None = None, **args: Any) -> dict[str, Any]:
        """Send a request and wait for its reply, after the replies still outstanding."""
        self.drain()
        return self.result(self.send(op, want_reply=True, **args), timeout)

    def drain(self, timeout: float | None = None) -> None:
        """Wait until the worker has answered every request; raise the first error.

        With ``timeout``, a worker that has not answered within that many seconds is killed
        and :class:`_Timeout` is raised.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        with self.lock:
            while self.pending:
                self._read_next(deadline)
            errors, self.errors = [*self._settle_deferred(), *self.errors], []
        if errors:
            raise errors[0]

    def defer(self, ticket: int, on_reply: Callable[[dict[str, Any]], None]) -> None:
        """No one waits for the reply to ``ticket`` (sent with ``want_reply``); once it has
        come, the next :meth:`drain` or :meth:`result` hands it to ``on_reply``, or raises
        its error first of all."""
        with self.lock:
            self.deferred[ticket] = on_reply

    def _settle_deferred(self) -> list[TrackingError]:
        """The errors of the deferred requests answered by now; good replies to their
        callbacks. Called with the lock held."""
        errors: list[TrackingError] = []
        for ticket in [t for t in self.deferred if self.wanted.get(t) is not None]:
            on_reply = self.deferred.pop(ticket)
            reply = self.wanted.pop(ticket)
            assert reply is not None
            if "error" in reply:
                errors.append(TrackingError(reply["error"]))
            else:
                on_reply(reply)
        return errors

    def stage(self, path: Path) -> Path:
        """A private copy of ``path``, made now: what is stored is what was logged, even if
        the file is rewritten (or removed) before the worker gets to it."""
        with self._stage_lock:
            if self._staging is None:
                self._staging = Path(tempfile.mkdtemp(prefix="fedgen-artifacts-"))
            folder = self._staging / str(next(self._staged))
        folder.mkdir()
        copy = folder / path.name
        try:
            shutil.copyfile(path, copy)
        except BaseException:
            shutil.rmtree(folder, ignore_errors=True)
            raise
        return copy

    def _write(self, op: str, args: Mapping[str, Any]) -> None:
        assert self.proc.stdin is not None
        if self.abandoned:
            raise self._exited()
        try:
            self.proc.stdin.write(json.dumps({"op": op, **args}) + "\n")
            self.proc.stdin.flush()
        except OSError:
            raise self._exited() from None

    def _read_next(self, deadline: float | None) -> None:
        ticket, op = self.pending[0]  # replies come in the order of the requests
        try:
            if deadline is None:
                line = self.lines.get()
            else:
                line = self.lines.get(timeout=max(0.0, deadline - time.monotonic()))
        except queue.Empty:
            self._abandon()
            raise _Timeout(op) from None
        if line is None:
            self.lines.put(None)  # every later read sees the end too
            raise self._exited()
        self.pending.popleft()
        reply: dict[str, Any] = json.loads(line)
        if ticket in self.wanted:
            self.wanted[ticket] = reply
        elif "error" in reply:
            self.errors.append(TrackingError(reply["error"]))

    def _abandon(self) -> None:
        """Kill a worker that missed a deadline; the next tracker starts a new one."""
        self.abandoned = True
        self.proc.kill()
        self.proc.wait()
        self.pending.clear()

    @staticmethod
    def _exited() -> TrackingError:
        return TrackingError(
            "the MLflow tracking process exited (its error is printed above); "
            "check tracking.uri, or run with tracking=none"
        )

    def close(self) -> None:
        """Wait for the outstanding replies, then end the worker (it fails any open run).

        After an interrupt, waits :data:`INTERRUPTED_CLOSE_S` at most, then kills it: the runs
        it had not closed yet are marked FAILED by the next command that opens the store.
        """
        interrupted = lifecycle.received() is not None
        budget = INTERRUPTED_CLOSE_S if interrupted else None
        if interrupted:
            self.hurry()  # again: a worker started after the interrupt was not told
        if not self.abandoned:
            try:
                self.drain(budget)
            except TrackingError as exc:
                print(f"fedgen: error: {exc}", file=sys.stderr)
            except _Timeout:
                print(
                    f"fedgen: error: MLflow did not store the last results within {budget:g} s "
                    "of the interrupt; the runs still open are marked FAILED by the next "
                    "fedgen command",
                    file=sys.stderr,
                )
        if self.proc.stdin is not None and not self.proc.stdin.closed:
            with contextlib.suppress(OSError):  # a killed worker: the pipe is broken
                self.proc.stdin.close()
        if not self.abandoned:
            try:
                self.proc.wait(timeout=budget or 60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._reader.join(timeout=10)
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        if self._staging is not None:
            shutil.rmtree(self._staging, ignore_errors=True)


_worker: _Worker | None = None
# Set by the command (:func:`quick_open`): a store that a quick check vouches for is opened
# while the job goes on. Trackers made otherwise (tests, the API) open it before returning.
_quick_open = False


@contextmanager
def quick_open() -> Iterator[None]:
    """Within: an existing local SQLite store that :func:`.precheck.sqlite_store_ready`
    vouches for is checked by MLflow in the background, not before the tracker is made.

    The command's guarantee that a bad store fails before any training holds for what the
    quick check verifies (the database, its schema, the experiment, the artifact directory);
    a store it cannot vouch for is waited for as before. If MLflow's own check fails after
    all (the disk filled up in between, say), the job's results are kept and the command ends
    with that error (:func:`flush`).
    """
    global _quick_open
    before, _quick_open = _quick_open, True
    try:
        yield
    finally:
        _quick_open = before


def prestart_worker() -> None:
    """Start the MLflow process now, so its imports overlap the caller's own start-up."""
    global _worker
    if _worker is None or not _worker.alive():
        _worker = _Worker()
        atexit.register(_worker.close)


def flush() -> None:
    """Wait until everything sent to MLflow is stored; raise :class:`TrackingError` if not
    (also if the worker died with requests unanswered)."""
    if _worker is not None and not _worker.abandoned:
        _worker.drain()


def _get_worker() -> _Worker:
    prestart_worker()
    assert _worker is not None
    return _worker


def _warn_reaped(reply: Mapping[str, Any]) -> None:
    """Say which dead runs opening the store marked FAILED (the ``open`` reply's ``reaped``)."""
    reaped = reply.get("reaped") or []
    if reaped:
        log.warning(
            "marked %d run(s) FAILED whose process on this host is gone: %s",
            len(reaped),
            ", ".join(reaped),
        )


class MlflowTracker:
    """Logs to an MLflow tracking store (``tracking=mlflow``).

    MLflow's client runs in a child process (:mod:`.mlflow_worker`) that the CLI starts
    first thing, so that importing MLflow overlaps the command's start-up. The store is opened,
    written once and cleared of dead runs when the tracker is made (once per store and
    process), so that a bad store stops the command before any work; a network store that
    does not answer within ``timeout_s`` seconds fails it too. Within :func:`quick_open` (the
    command), an existing local SQLite store that :mod:`.precheck` vouches for is opened by
    MLflow while the job goes on, instead of after MLflow's ~2.7 s import. With the default
    local SQLite store, new experiments keep their artifacts in ``mlruns/`` beside the
    database, so ``mlflow ui`` run from the launch directory shows everything.
    """

    def __init__(
        self,
        uri: str | None,
        experiment: str,
        launch_dir: Path,
        sweep_dir: Path | None = None,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        per_client_metrics: bool = False,
    ) -> None:
        if not isinstance(experiment, str) or not experiment.strip():
            raise TrackingError(
                f"tracking.experiment={experiment!r} must be a non-empty name, e.g. "
                "tracking.experiment=fedgen"
            )
        if isinstance(timeout_s, bool) or not isinstance(timeout_s, int | float) or timeout_s <= 0:
            raise TrackingError(f"tracking.timeout_s={timeout_s!r} must be a positive number")
        self.uri = resolve_uri(uri, launch_dir)
        self.experiment = experiment
        self.sweep_dir = sweep_dir
        self.timeout_s = float(timeout_s)
        if not isinstance(per_client_metrics, bool):
            raise TrackingError(
                f"tracking.per_client_metrics={per_client_metrics!r} must be true or false"
            )
        self.per_client_metrics = per_client_metrics
        self._handle: str | None = None  # names the open run in requests to the worker
        self._ticket: int | None = None  # the start_run request, whose reply holds the run id
        self._run_id: str | None = None
        # The last run ended: its id, else the start_run request whose reply holds it.
        self._last: tuple[str | None, _Worker | None, int | None] = (None, None, None)
        self._store = self._open()

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

    def _open(self) -> str:
        """Open the store in the worker (once per store and worker) and check it; its key."""
        worker = _get_worker()
        key = worker.stores.get((self.uri, self.experiment))
        if key is not None:
            return key
        key = f"store-{len(worker.stores)}"
        db = sqlite_path(self.uri)
        location = (db.parent / "mlruns").as_uri() if db is not None else None
        network = urlparse(self.uri).scheme.lower() in NETWORK_SCHEMES
        request = {
            "store": key,
            "uri": self.uri,
            "experiment": self.experiment,
            "artifact_location": location,
            "timeout_s": self.timeout_s,
        }
        if _quick_open and db is not None:
            from fedgen.tracking.precheck import sqlite_store_ready

            experiment_id = sqlite_store_ready(db, self.experiment)
            if experiment_id is not None:  # MLflow opens it while the job goes on
                worker.defer(worker.send("open", want_reply=True, **request), _warn_reaped)
                worker.stores[(self.uri, self.experiment)] = key
                worker.experiment_ids[key] = experiment_id
                return key
        try:
            reply = worker.call("open", timeout=self.timeout_s if network else None, **request)
        except _Timeout:
            raise TrackingError(
                f"the MLflow store {self.uri} did not answer within {self.timeout_s:g} s; start "
                "it or check tracking.uri, raise tracking.timeout_s, or run with tracking=none"
            ) from None
        _warn_reaped(reply)
        worker.stores[(self.uri, self.experiment)] = key
        worker.experiment_ids[key] = str(reply.get("experiment_id", ""))
        return key

    @property
    def experiment_id(self) -> str:
        """The MLflow id of ``tracking.experiment`` in the store."""
        return _get_worker().experiment_ids.get(self._store, "")

    def where(self) -> list[str]:
        """Console lines naming the last run ended, its store and the UI page that shows it."""
        run_id, worker, ticket = self._last
        known = worker is not None and worker.alive() and ticket in worker.wanted
        if run_id is None and known and worker is not None and ticket is not None:
            with contextlib.suppress(TrackingError):
                run_id = str(worker.result(ticket)["run_id"])
                self._last = (run_id, None, None)
        if run_id is None:
            return []
        lines = [f"MLflow run {run_id} in experiment {self.experiment} ({self.uri})"]
        command = ui_command(self.uri)
        address = UI_ADDRESS if command else self.uri
        url = ui_url(self.experiment_id, run_id, address)
        lines.append(f"see it: {command} then open {url}" if command else f"see it: open {url}")
        return lines

    def sweep_where(self, sweep_dir: Path) -> str:
        """A console line: the command and URL that show the runs of the sweep ``sweep_dir``."""
        command = ui_command(self.uri)
        url = sweep_url(self.experiment_id, str(sweep_dir), UI_ADDRESS if command else self.uri)
        return f"see its runs: {command} then open {url}" if command else f"see its runs: {url}"

    def _worker(self) -> _Worker:
        worker = _get_worker()
        if worker.stores.get((self.uri, self.experiment)) != self._store:
            raise TrackingError(
                f"the MLflow tracking process was restarted; the store {self.uri} is no longer "
                "open in it: rerun"
            )
        return worker

    def _send(self, op: str, **args: Any) -> None:
        """A request answered later: MLflow stores it while the job goes on."""
        self._worker().send(op, **args)

    def start_run(self, name: str, params: Mapping[str, str], tags: Mapping[str, str]) -> None:
        """Ask MLflow for the run and go on at once: later requests name it by a handle.

        The run is tagged with this host and process (:mod:`.liveness`), so that a later
        command marks it FAILED if the process dies without closing it.
        """
        all_tags = {**identity(), **tags}
        parent = self._parent_run_id()
        if parent:
            all_tags["mlflow.parentRunId"] = parent
        handle = f"fedgen-run-{uuid.uuid4().hex}"
        self._ticket = self._worker().send(
            "start_run",
            want_reply=True,
            store=self._store,
            name=name,
            tags=all_tags,
            params=dict(params),
            handle=handle,
            start_time=_now_ms(),
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
        keep = (lambda k: True) if self.per_client_metrics else is_headline
        payload = [[step, {k: float(v) for k, v in m.items() if keep(k)}] for step, m in steps]
        self._send("log_history", run_id=self._handle, steps=payload)

    def set_tags(self, tags: Mapping[str, str]) -> None:
        self._send("set_tags", run_id=self._handle, tags=dict(tags))

    def log_dataset(self, dataset: DatasetInfo, context: str = "training") -> None:
        self._send("log_dataset", run_id=self._handle, dataset=dataset.entity(), context=context)

    def log_text(self, text: str, artifact_file: str) -> None:
        self._send("log_text", run_id=self._handle, text=text, artifact_file=artifact_file)

    def log_file(self, path: Path, artifact_dir: str | None = None) -> None:
        self.artifact_sink(artifact_dir)(path)

    def artifact_sink(self, artifact_dir: str | None) -> Callable[[Path], None]:
        """Logs the file as it is when the sink is called: a private copy is made at once,
        so a file rewritten afterwards (by this run or another) cannot take its place."""
        run_id, worker = self._handle, self._worker()

        def sink(path: Path) -> None:
            name = f"{artifact_dir}/{path.name}" if artifact_dir else path.name
            try:
                copy = worker.stage(path)
            except OSError as exc:  # the run must not end FINISHED without it
                reason = f"{type(exc).__name__}: {exc}"
                worker.send("fail", run_id=run_id, what=f"artifact {name}", reason=reason)
                return
            worker.send(
                "log_file", run_id=run_id, path=str(copy), artifact_dir=artifact_dir, staged=True
            )

        return sink

    def end_run(self, status: str) -> None:
        """Close the run as ``status``; the worker makes it FAILED if anything was lost."""
        if self._handle is not None:
            self._last = (self._run_id, _get_worker(), self._ticket)
            handle, self._handle, self._ticket = self._handle, None, None
            self._send("end_run", run_id=handle, status=status, end_time=_now_ms())
