"""A child process that owns the MLflow client: JSON requests on stdin, JSON replies on stdout.

Importing MLflow's SQL tracking store and opening it costs more than fedgen's whole default
experiment. Started at the beginning of a command, this process pays that on the other core
while the main process composes the config, and the main process never imports MLflow at all.

Once MLflow is imported, the worker writes ``{"ready": true}``; then it answers every request,
in order, with one line. Requests and their replies:
``open {store, uri, experiment, artifact_location, timeout_s}`` -> ``{reaped: [run ids],
experiment_id}``: opens the store, writes to it once (an experiment tag; also
``mlflow.experimentKind``, if unset, so that MLflow UIs that read it show the runs table) and to
its artifact root, and marks FAILED the runs of this host whose process is gone
(:mod:`.liveness`);
``start_run {store, name, tags, params, handle?, start_time?}`` -> ``{run_id}`` (later requests
may name the run by its ``handle`` instead of its id);
``log_history {run_id, steps: [[step, {key: value}], ...]}``; ``set_tags {run_id, tags}``;
``log_text {run_id, text, artifact_file}``;
``log_dataset {run_id, dataset: {name, digest, source_type, source, schema?, profile?},
context}``;
``log_file {run_id, path, artifact_dir, staged?}`` (a staged file is a private copy, deleted
once stored); ``fail {run_id, what, reason}`` (something the parent could not hand over);
``end_run {run_id, status, end_time?}`` -> ``{status}``. Times are the job's clock in ms (the
worker may reach a request seconds later). A failure replies ``{"error": one line}``.

**Honest end status.** A run ends FINISHED only if everything written to it was stored. Every
failed write is remembered with the run; ``end_run`` then ends it FAILED, whatever was asked,
with the reason in the tag ``fedgen.failure``; a write that fails after the run ended (a figure
stored in the background) turns a FINISHED run FAILED. If the main process goes away with a run
still open (crash, kill), the worker sees end-of-file and marks that run FAILED; if both die at
once, the next command that opens the store does (:func:`.liveness.reap_dead_runs`).

**Signals.** The worker ignores SIGINT and SIGTERM: a Ctrl-C (or the SIGTERM of ``timeout``,
SLURM or systemd) sent to the whole process group is the main process's to handle, and it
needs the worker to close its runs as KILLED. The worker ends at end-of-file, which comes when
the main process closes the pipe or dies; if its parent is gone and the pipe stays open
regardless (a forked grandchild holding it), it exits :data:`ORPHAN_GRACE_S` seconds later.
On an interrupt the main process sends SIGUSR1 (*hurry*): metrics and artifacts still queued
are skipped, each recorded as lost with its run (a KILLED run stays KILLED; any other run ends
FAILED), so that closing the runs takes a moment, not the seconds a long job's metrics take.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import re
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO
from urllib.parse import unquote, urlparse

from fedgen.core import lifecycle
from fedgen.tracking.liveness import FAILURE_TAG, MAX_TAG_CHARS, reap_dead_runs
from fedgen.tracking.trackers import NETWORK_SCHEMES, sqlite_path

READY = {"ready": True}
ORPHAN_GRACE_S = 10.0  # parent gone: time to close the open runs before exiting anyway
HURRY = getattr(signal, "SIGUSR1", None)  # the main process was interrupted: skip bulk writes
# MLflow 3's UIs that read it open an experiment of this kind on its runs table (model
# training), not on the GenAI traces overview. MLflow 3.17's UI goes by its own global
# toggle instead, which ``?workflowType=machine_learning`` in the URL sets (trackers.ui_url).
EXPERIMENT_KIND_TAG = "mlflow.experimentKind"
MODEL_TRAINING_KIND = "custom_model_development"
_hurry = threading.Event()  # set by HURRY: runs that lose writes end KILLED
_skip = threading.Event()  # set by HURRY or when the parent is gone: skip metrics and artifacts


def one_line(exc: BaseException) -> str:
    """``Type: first line of the message``, short: MLflow's errors carry SQL and tracebacks."""
    text = str(exc).strip()
    first = next((line.strip() for line in text.splitlines() if line.strip()), "")
    message = f"{type(exc).__name__}: {first}" if first else type(exc).__name__
    return message if len(message) <= 400 else message[:397] + "..."


@dataclass
class _Run:
    client: Any
    name: str
    uri: str
    ended: str | None = None  # the status it was ended with, once ended
    failures: list[str] = field(default_factory=list)
    reason: str = ""  # why the parent ends it so (its own fedgen.failure tag), if it said

    def failure_tag(self) -> str:
        more = f" (and {len(self.failures) - 1} more)" if len(self.failures) > 1 else ""
        lost = self.failures[0] + more
        return (f"{self.reason}; {lost}" if self.reason else lost)[:MAX_TAG_CHARS]


class RunWriteError(Exception):
    """A write to a run failed: the run is (or will be) FAILED; the message says what was lost."""


class StoreError(Exception):
    """The store cannot be opened or written; the message names the cause and the fix."""


class _Store:
    def __init__(self) -> None:
        from mlflow.tracking import MlflowClient

        # SQLAlchemy and Alembic are most of the cost of opening a local store: import them
        # now, while the main process starts, not when it waits for the store to be checked.
        with contextlib.suppress(ImportError):
            import mlflow.store.tracking.sqlalchemy_store  # noqa: F401

        self._client_cls = MlflowClient
        self.stores: dict[str, tuple[Any, str, str]] = {}  # key -> (client, experiment id, uri)
        self.runs: dict[str, _Run] = {}
        # The parent names a run it has not heard the id of yet by a handle of its own.
        self.handles: dict[str, str] = {}
        self.lost: dict[str, str] = {}  # handle -> why its run was not created

    # -- opening -----------------------------------------------------------------------------

    def open(
        self,
        store: str,
        uri: str,
        experiment: str,
        artifact_location: str | None,
        timeout_s: float = 10.0,
    ) -> dict[str, Any]:
        scheme = urlparse(uri).scheme.lower()
        if scheme in ("http", "https"):
            # Bound every later request too, not only the parent's wait for this one.
            os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", str(max(1, math.ceil(timeout_s))))
            os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "3")
            os.environ.setdefault("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "1")
        try:
            client, experiment_id = self._open_locked(uri, experiment, artifact_location)
            self._write_check(client, experiment_id)
            reaped = reap_dead_runs(client)
        except StoreError:
            raise
        except Exception as exc:
            raise StoreError(_explain(uri, exc)) from None
        self.stores[store] = (client, experiment_id, uri)
        return {"reaped": reaped, "experiment_id": experiment_id}

    def _open_locked(
        self, uri: str, experiment: str, artifact_location: str | None
    ) -> tuple[Any, str]:
        from filelock import FileLock

        db = sqlite_path(uri)
        if db is None:
            return self._open(uri, experiment, artifact_location)
        try:
            db.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreError(
                f"cannot create the directory {db.parent} of the MLflow store {uri} "
                f"({one_line(exc)}); choose a writable place with tracking.uri=sqlite:///<path>"
            ) from None
        if db.exists() and not os.access(db, os.W_OK):
            raise StoreError(
                f"the MLflow store {db} is read-only; make it writable or choose another "
                "with tracking.uri=sqlite:///<path>"
            )
        # Concurrent first creation of an MLflow SQLite store races on its schema.
        with FileLock(str(db) + ".lock", timeout=300):
            return self._open(uri, experiment, artifact_location)

    def _open(self, uri: str, experiment: str, artifact_location: str | None) -> tuple[Any, str]:
        client = self._client_cls(tracking_uri=uri)
        found = client.get_experiment_by_name(experiment)
        if found is not None:
            return client, str(found.experiment_id)
        return client, str(client.create_experiment(experiment, artifact_location))

    @staticmethod
    def _write_check(client: Any, experiment_id: str) -> None:
        """Write to the store and to its artifact root once, before any work depends on it."""
        from fedgen.tracking.liveness import host

        stamp = f"{time.strftime('%Y-%m-%dT%H:%M:%S')} {host()} pid {os.getppid()}"
        client.set_experiment_tag(experiment_id, "fedgen.last_opened", stamp)
        found = client.get_experiment(experiment_id)
        if EXPERIMENT_KIND_TAG not in (found.tags or {}):  # a kind chosen in the UI is kept
            client.set_experiment_tag(experiment_id, EXPERIMENT_KIND_TAG, MODEL_TRAINING_KIND)
        location = found.artifact_location or ""
        parsed = urlparse(location)
        if parsed.scheme not in ("", "file"):
            return  # a remote artifact store: its first upload tells
        root = Path(unquote(parsed.path) if parsed.scheme == "file" else location)
        try:
            root.mkdir(parents=True, exist_ok=True)
            with tempfile.NamedTemporaryFile(dir=root, prefix=".fedgen-check-"):
                pass
        except OSError as exc:
            raise StoreError(
                f"cannot write artifacts to {root} ({one_line(exc)}); free space or fix its "
                "permissions, or choose another store with tracking.uri"
            ) from None

    # -- runs ----------------------------------------------------------------------------------

    def start_run(
        self,
        store: str,
        name: str,
        tags: dict[str, str],
        params: dict[str, str],
        handle: str | None = None,
        start_time: int | None = None,
    ) -> dict[str, Any]:
        from mlflow.entities import Param

        client, experiment_id, uri = self.stores[store]
        # A tag may name another run by its handle (a sweep's parent run): use its id.
        tags = {k: self.handles.get(v, v) for k, v in tags.items()}
        try:
            # The job's clock, not ours: this process may reach the request seconds later.
            run = client.create_run(experiment_id, start_time=start_time, tags=tags, run_name=name)
        except Exception as exc:
            reason = f"run {name!r} was not created ({one_line(exc)})"
            if handle is not None:
                self.lost[handle] = reason
            raise RunWriteError(f"{reason}; check the store {uri}") from None
        run_id = str(run.info.run_id)
        self.runs[run_id] = _Run(client, name, uri)
        if handle is not None:
            self.handles[handle] = run_id
        items = [Param(k, str(v)[:6000]) for k, v in params.items()]
        with self._writing(run_id, "its params"):
            for i in range(0, len(items), 100):  # MLflow's per-batch limit on params
                client.log_batch(run_id, params=items[i : i + 100])
        return {"run_id": run_id}

    def log_history(self, run_id: str, steps: list[list[Any]]) -> dict[str, Any]:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        items = [Metric(k, float(v), now, int(step)) for step, m in steps for k, v in m.items()]
        run = self.runs[run_id]
        with self._writing(run_id, f"{len(items)} metric values"):
            for i in range(0, len(items), 1000):  # MLflow's per-batch limit on metrics
                if self._skipped(run_id, f"{len(items) - i} metric values"):
                    break
                run.client.log_batch(run_id, metrics=items[i : i + 1000])
        return {}

    def set_tags(self, run_id: str, tags: dict[str, str]) -> dict[str, Any]:
        from mlflow.entities import RunTag

        items = [RunTag(k, str(v)[:8000]) for k, v in tags.items()]
        run = self.runs[run_id]
        run.reason = tags.get(FAILURE_TAG, run.reason)
        with self._writing(run_id, f"tags {', '.join(sorted(tags))}"):
            for i in range(0, len(items), 100):
                run.client.log_batch(run_id, tags=items[i : i + 100])
        return {}

    def log_dataset(self, run_id: str, dataset: dict[str, str], context: str) -> dict[str, Any]:
        """The cohort as the run's dataset input (the UI's Datasets column)."""
        from mlflow.entities import Dataset, DatasetInput, InputTag

        entry = DatasetInput(Dataset(**dataset), tags=[InputTag("mlflow.data.context", context)])
        run = self.runs[run_id]
        with self._writing(run_id, f"dataset {dataset['name']}"):
            run.client.log_inputs(run_id, datasets=[entry])
        return {}

    def log_text(self, run_id: str, text: str, artifact_file: str) -> dict[str, Any]:
        if self._skipped(run_id, f"artifact {artifact_file}"):
            return {}
        with self._writing(run_id, f"artifact {artifact_file}"):
            self.runs[run_id].client.log_text(run_id, text, artifact_file)
        return {}

    def log_file(
        self, run_id: str, path: str, artifact_dir: str | None, staged: bool = False
    ) -> dict[str, Any]:
        name = f"{artifact_dir}/{Path(path).name}" if artifact_dir else Path(path).name
        try:
            if self._skipped(run_id, f"artifact {name}"):
                return {}
            with self._writing(run_id, f"artifact {name}"):
                self.runs[run_id].client.log_artifact(run_id, path, artifact_dir)
        finally:
            if staged:  # the parent's private copy, made when the file was logged
                Path(path).unlink(missing_ok=True)
                with contextlib.suppress(OSError):
                    Path(path).parent.rmdir()
        return {}

    def fail(self, run_id: str, what: str, reason: str) -> dict[str, Any]:
        """Record that ``what`` never reached the worker (the parent could not read a file)."""
        self._failed(run_id, what, reason)
        name = self.runs[run_id].name
        raise RunWriteError(
            f"{what} of run {name!r} could not be read ({reason}); the run is marked FAILED "
            f"(tag {FAILURE_TAG})"
        )

    def end_run(self, run_id: str, status: str, end_time: int | None = None) -> dict[str, Any]:
        run = self.runs[run_id]
        if run.failures:
            status = _unfinished(status)
            run.client.set_tag(run_id, FAILURE_TAG, run.failure_tag())
        run.client.set_terminated(run_id, status, end_time=end_time)
        run.ended = status
        return {"status": status}

    def fail_open_runs(self, reason: str) -> None:
        for run_id, run in self.runs.items():
            if run.ended is None:
                run.failures.insert(0, reason)
                # If the store is gone too, the next command's reaping closes the run.
                with contextlib.suppress(Exception):
                    self.end_run(run_id, "FAILED")

    # -- failures ------------------------------------------------------------------------------

    def _skipped(self, run_id: str, what: str) -> bool:
        """In a hurry (the command was interrupted): record ``what`` as lost and skip it."""
        if not _skip.is_set():
            return False
        why = "the command was interrupted first" if _hurry.is_set() else "the fedgen process died"
        self._failed(run_id, what, why)
        return True

    @contextlib.contextmanager
    def _writing(self, run_id: str, what: str) -> Iterator[None]:
        """A failure inside is remembered with the run and re-raised as :class:`RunWriteError`."""
        try:
            yield
        except RunWriteError:
            raise
        except Exception as exc:
            reason = one_line(exc)
            # If marking it FAILED fails too, end_run or the next command's reaping will.
            with contextlib.suppress(Exception):
                self._failed(run_id, what, reason)
            raise RunWriteError(self._lost_message(run_id, what, reason)) from None

    def _failed(self, run_id: str, what: str, reason: str) -> None:
        run = self.runs[run_id]
        run.failures.append(f"{what} not stored: {reason}")
        if run.ended == "FINISHED":  # stored in the background after the run ended
            run.client.set_tag(run_id, FAILURE_TAG, run.failure_tag())
            run.ended = _unfinished(run.ended)
            run.client.set_terminated(run_id, run.ended)

    def _lost_message(self, run_id: str, what: str, reason: str) -> str:
        run = self.runs[run_id]
        return (
            f"{what} of run {run.name!r} was not stored ({reason}); the run is marked FAILED "
            f"(tag {FAILURE_TAG}): check free space, permissions and locks of the store "
            f"{run.uri}, then rerun"
        )


def _unfinished(status: str) -> str:
    """The end status of a run that lost a write: KILLED if an interrupt made it lose it."""
    return "KILLED" if status == "KILLED" or _hurry.is_set() else "FAILED"


def _explain(uri: str, exc: BaseException) -> str:
    """One line for a store that cannot be opened: the real cause, and what to do."""
    reason = one_line(exc)
    scheme = urlparse(uri).scheme.lower()
    low = str(exc).lower()
    unknown = ("unsupported uri", "unexpected uri scheme", "could not find a registered")
    if any(phrase in low for phrase in unknown):
        return (
            f"tracking.uri={uri!r}: MLflow has no store for the scheme {scheme!r}; use "
            "sqlite:///<path>/mlflow.db, http(s)://<server> or a database URL"
        )
    if "file is not a database" in low or "malformed" in low:
        return (
            f"{uri} is not a readable MLflow SQLite database ({reason}); move the file away "
            "(fedgen then makes a new store there) or choose another with tracking.uri"
        )
    if "readonly" in low or "read-only" in low:
        return f"the MLflow store {uri} is read-only ({reason}); make it writable or use another"
    if "invalid experiment name" in low:
        return f"tracking.experiment is not a valid MLflow experiment name ({reason})"
    if scheme in NETWORK_SCHEMES:
        # "... Max retries exceeded ... [Errno 111] Connection refused")": the OS error says it.
        errno = re.search(r"\[Errno -?\d+\][^\"'()]*", str(exc))
        return (
            f"the MLflow store {uri} did not answer "
            f"({errno.group(0).strip() if errno else reason}); start it or check "
            "tracking.uri, or run with tracking=none"
        )
    return f"cannot open the MLflow store {uri} ({reason}); check tracking.uri or use tracking=none"


def serve(requests: TextIO, replies: TextIO) -> None:
    """Say ready, answer requests until end-of-file, then fail any run left open."""
    store = _Store()
    replies.write(json.dumps(READY) + "\n")
    replies.flush()
    try:
        for line in requests:
            request = json.loads(line)
            op = request.pop("op")
            reply = _answer(store, op, request)
            replies.write(json.dumps(reply) + "\n")
            replies.flush()
    finally:
        store.fail_open_runs(
            f"the fedgen process (pid {os.getppid()}) ended before closing the run"
        )


def _answer(store: _Store, op: str, request: dict[str, Any]) -> dict[str, Any]:
    if "run_id" in request:
        run_id = store.handles.get(request["run_id"], request["run_id"])
        if run_id in store.lost:
            return {"error": f"{store.lost[run_id]}: nothing can be stored in it"}
        if run_id not in store.runs:
            return {"error": f"MLflow {op} failed: no run {run_id!r} was started here"}
        request["run_id"] = run_id
    try:
        reply: dict[str, Any] = getattr(store, op)(**request)
    except (RunWriteError, StoreError) as exc:  # reported to the caller, which raises it
        return {"error": str(exc)}
    except Exception as exc:
        return {"error": f"MLflow {op} failed: {one_line(exc)}"}
    return reply


def _orphaned() -> None:
    _skip.set()  # only close the runs: no one waits for the rest
    time.sleep(ORPHAN_GRACE_S)  # end-of-file normally ends the worker well before this
    os._exit(1)


def _hurry_up(signum: int, frame: object) -> None:
    _hurry.set()
    _skip.set()


def main() -> None:
    """Entry point: MLflow's own log lines stay off the console (errors come as replies)."""
    if HURRY is not None:  # blocked since the start (trackers.py), so none was missed
        signal.signal(HURRY, _hurry_up)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, (HURRY,))
    lifecycle.become_child(
        os.getppid(), ignore=(signal.SIGINT, signal.SIGTERM), on_orphaned=_orphaned
    )
    logging.basicConfig(level=logging.WARNING)
    import mlflow.tracking  # noqa: F401  (configures MLflow's loggers: quiet them after)

    for name in ("mlflow", "alembic", "sqlalchemy", "urllib3"):
        logging.getLogger(name).setLevel(logging.CRITICAL)
    out = sys.stdout
    sys.stdout = sys.stderr  # anything MLflow prints must not corrupt the reply stream
    serve(sys.stdin, out)
    # Everything is stored (each request is, before its reply): skip tearing down MLflow and
    # SQLAlchemy, which takes seconds that the main process would spend waiting for us.
    out.flush()
    sys.stderr.flush()
    os._exit(0)


if __name__ == "__main__":
    main()
