"""Where results go: the Tracker protocol, an in-memory tracker, MLflow and its worker."""

from fedgen.tracking.trackers import (
    InMemoryTracker,
    MlflowTracker,
    Tracker,
    flush,
    prestart_worker,
    tracked_run,
)

__all__ = ["InMemoryTracker", "MlflowTracker", "Tracker", "flush", "prestart_worker", "tracked_run"]
