"""Hydra callback: one MLflow parent run per `--multirun` sweep, grouping its jobs."""

from __future__ import annotations

import atexit
import logging
from pathlib import Path
from typing import Any

from hydra.core.utils import JobReturn, JobStatus
from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from fedgen.build import build_tracker
from fedgen.io import atomic_write_text
from fedgen.tracking import FAILED, FINISHED, PARENT_RUN_FILE, MlflowTracker

log = logging.getLogger("fedgen")


class SweepParentRun(Callback):
    """Opens a parent run when a sweep starts and closes it when the sweep ends.

    Every job of the sweep finds the parent's id in ``<sweep dir>/.mlflow_parent_run_id`` and
    tags itself as a child. The parent ends FINISHED when all jobs completed, FAILED otherwise,
    and FAILED also when the process exits mid-sweep: it is never left RUNNING.
    """

    def __init__(self) -> None:
        self._tracker: MlflowTracker | None = None
        self._failed = False

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        tracker = build_tracker(config, launch_dir=Path(config.hydra.runtime.cwd), sweep_dir=None)
        if not isinstance(tracker, MlflowTracker):
            return
        sweep_dir = Path(config.hydra.sweep.dir).resolve()
        tracker.start_run(
            f"sweep {sweep_dir.name}",
            params={},
            tags={"fedgen.sweep_dir": str(sweep_dir), "fedgen.role": "sweep"},
        )
        assert tracker.run_id is not None
        atomic_write_text(sweep_dir / PARENT_RUN_FILE, tracker.run_id)
        self._tracker = tracker
        atexit.register(self._close, FAILED)

    def on_job_end(self, config: DictConfig, job_return: JobReturn, **kwargs: Any) -> None:
        if job_return.status != JobStatus.COMPLETED:
            self._failed = True

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        self._close(FAILED if self._failed else FINISHED)

    def _close(self, status: str) -> None:
        if self._tracker is not None:
            self._tracker.end_run(status)
            self._tracker = None
