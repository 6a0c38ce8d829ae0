"""A quick check, without MLflow, that an existing local SQLite store can be used as it is.

Opening a store in the MLflow process (:mod:`.mlflow_worker`) means importing MLflow, SQLAlchemy
and Alembic first: ~2.7 s, most of a default run, during which a job must not train if the store
is bad (it would fail only after the work). :func:`sqlite_store_ready` answers the same question
for the common case, a SQLite store that an earlier command made, in milliseconds with the
standard library: the database is readable and writable now, its schema is the installed MLflow's
latest, the experiment exists and is active, and its local artifact directory is writable. When it
vouches for a store, the job goes on while MLflow opens it (and reaps dead runs) as before; when
it cannot tell (a new store, another schema, anything unusual), the job waits for MLflow's check.
"""

from __future__ import annotations

import functools
import importlib.util
import os
import re
import sqlite3
from pathlib import Path
from urllib.parse import unquote, urlparse

_REVISION = re.compile(r"^revision\s*(?::\s*str\s*)?=\s*['\"]([0-9A-Za-z_]+)['\"]", re.M)
_DOWN = re.compile(r"^down_revision\s*(?::[^=]*)?=\s*(.+)$", re.M)
_QUOTED = re.compile(r"['\"]([0-9A-Za-z_]+)['\"]")
BUSY_TIMEOUT_S = 0.1  # a store another process is writing: not quick, let MLflow wait for it


@functools.cache
def schema_head() -> str | None:
    """The latest schema revision of the installed MLflow's SQL store (from its Alembic
    migration scripts, read as text: MLflow is not imported); None if it cannot be told."""
    try:
        spec = importlib.util.find_spec("mlflow")
    except (ImportError, ValueError):
        return None
    if spec is None or spec.origin is None:
        return None
    versions = Path(spec.origin).parent / "store" / "db_migrations" / "versions"
    revisions: set[str] = set()
    parents: set[str] = set()
    try:
        scripts = sorted(p for p in versions.glob("*.py") if not p.name.startswith("_"))
        for script in scripts:
            text = script.read_text(encoding="utf-8")
            revision, down = _REVISION.search(text), _DOWN.search(text)
            if revision is None or down is None:
                return None  # a script this reader does not understand: cannot tell
            revisions.add(revision.group(1))
            parents.update(_QUOTED.findall(down.group(1)))
    except OSError:
        return None
    heads = revisions - parents
    return heads.pop() if len(heads) == 1 else None


def sqlite_store_ready(db: Path, experiment: str) -> str | None:
    """The id of ``experiment`` in the SQLite store ``db`` if the store is ready to use; else
    None (not known to be ready: the caller waits for MLflow's own check).

    Ready means: the file exists and this process may read and write it and its directory (for
    SQLite's journal); it is an SQLite database whose ``alembic_version`` is the installed
    MLflow's latest schema (:func:`schema_head`); no other connection holds its write lock
    (checked with a write transaction that is rolled back); ``experiment`` exists once, active,
    in the default workspace; and its artifact location, if a local directory, is writable.
    """
    if os.environ.get("MLFLOW_WORKSPACE"):
        return None
    try:
        if not db.is_file() or not os.access(db, os.R_OK | os.W_OK):
            return None
        if not os.access(db.parent, os.W_OK | os.X_OK):
            return None
        head = schema_head()
        if head is None:
            return None
        con = sqlite3.connect(f"{db.as_uri()}?mode=rw", uri=True, timeout=BUSY_TIMEOUT_S)
        try:
            versions = con.execute("SELECT version_num FROM alembic_version").fetchall()
            if versions != [(head,)]:
                return None
            columns = {row[1] for row in con.execute("PRAGMA table_info(experiments)")}
            query = "SELECT experiment_id, lifecycle_stage, artifact_location"
            query += ", workspace" if "workspace" in columns else ", 'default'"
            rows = con.execute(f"{query} FROM experiments WHERE name = ?", (experiment,))
            found = rows.fetchall()
            con.execute("BEGIN IMMEDIATE")  # the write lock: free now, and the file writable
            con.execute("ROLLBACK")
        finally:
            con.close()
    except (OSError, sqlite3.Error, ValueError):
        return None
    if len(found) != 1:
        return None
    experiment_id, stage, location, workspace = found[0]
    if stage != "active" or workspace != "default":
        return None
    if not _artifacts_writable(str(location or "")):
        return None
    return str(experiment_id)


def _artifacts_writable(location: str) -> bool:
    """Whether a local artifact location is a writable directory (a remote one is not
    checked here: MLflow's first upload tells, as with the full check)."""
    if not location:
        return False
    parsed = urlparse(location)
    if parsed.scheme not in ("", "file"):
        return True
    root = Path(unquote(parsed.path) if parsed.scheme == "file" else location)
    return root.is_dir() and os.access(root, os.W_OK | os.X_OK)
