"""Which process owns a run, and closing the runs whose process is gone (killed, crashed).

A run records the host and process that opened it (tags :data:`HOST_TAG`, :data:`PID_TAG`
and, where ``/proc`` tells it, the process's start time :data:`PID_START_TAG`, so that a
recycled pid is not taken for the same process). Any command that opens a store calls
:func:`reap_dead_runs`: RUNNING runs of this host whose process no longer exists are marked
FAILED with the reason in :data:`FAILURE_TAG`. Runs of other hosts are left alone: their
processes cannot be seen from here.

MLflow is imported by the caller only: this module takes a client and never imports it.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path
from typing import Any

HOST_TAG = "fedgen.host"
PID_TAG = "fedgen.pid"
PID_START_TAG = "fedgen.pid_start"
FAILURE_TAG = "fedgen.failure"
MAX_TAG_CHARS = 5000  # MLflow accepts 8000 per tag value; a reason never needs more


def host() -> str:
    """This machine's name, as recorded in :data:`HOST_TAG`."""
    return socket.gethostname()


def process_start(pid: int) -> str | None:
    """The start time of process ``pid`` in clock ticks since boot (Linux), else None."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # Field 2 (the command) is in parentheses and may hold spaces; field 22 is the start time.
    fields = stat.rsplit(")", 1)[-1].split()
    return fields[19] if len(fields) > 19 else None


def identity(pid: int | None = None) -> dict[str, str]:
    """The tags that name the process ``pid`` (default: this one) on this host."""
    pid = os.getpid() if pid is None else pid
    tags = {HOST_TAG: host(), PID_TAG: str(pid)}
    start = process_start(pid)
    if start is not None:
        tags[PID_START_TAG] = start
    return tags


def alive(pid: int, start: str | None = None) -> bool:
    """Whether process ``pid`` exists on this host (and, if ``start`` is given, is the same one).

    A zombie (killed, not yet collected by its parent) counts as gone.
    """
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # another user's process: it exists
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True  # no /proc: the signal said it exists
    fields = stat.rsplit(")", 1)[-1].split()
    if fields and fields[0] == "Z":
        return False
    return start is None or len(fields) <= 19 or fields[19] == start


def reap_dead_runs(client: Any) -> list[str]:
    """Mark FAILED every RUNNING run of this host whose process is gone; return their ids.

    ``client`` is an ``mlflow.tracking.MlflowClient``; every active experiment is searched.
    """
    here = host()
    query = "attributes.status = 'RUNNING'"
    if "'" not in here:
        query += f" and tags.`{HOST_TAG}` = '{here}'"
    reaped = []
    for experiment_id in _experiment_ids(client):
        token = None
        while True:
            page = client.search_runs(
                [experiment_id], filter_string=query, max_results=1000, page_token=token
            )
            for run in page:
                reason = _gone(run.data.tags, here)
                if reason is not None:
                    client.set_tag(run.info.run_id, FAILURE_TAG, reason)
                    client.set_terminated(run.info.run_id, "FAILED")
                    reaped.append(str(run.info.run_id))
            token = page.token
            if not token:
                break
    return reaped


def _gone(tags: dict[str, str], here: str) -> str | None:
    """Why the run's process is gone, or None if it may still be running."""
    if tags.get(HOST_TAG) != here:
        return None
    try:
        pid = int(tags.get(PID_TAG, ""))
    except ValueError:
        return None
    if alive(pid, tags.get(PID_START_TAG)):
        return None
    return (
        f"process {pid} on {here} ended without closing the run (killed or crashed); "
        "marked FAILED by a later fedgen command"
    )


def _experiment_ids(client: Any) -> list[str]:
    ids: list[str] = []
    token = None
    while True:
        page = client.search_experiments(max_results=1000, page_token=token)
        ids += [str(e.experiment_id) for e in page]
        token = page.token
        if not token:
            return ids
