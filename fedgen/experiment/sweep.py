"""Hydra callback: one MLflow parent run per `--multirun` sweep, grouping its jobs."""

from __future__ import annotations

import atexit
import contextlib
import copy
import logging
import signal
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from hydra.core.utils import JobReturn, JobStatus
from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from fedgen.core import lifecycle
from fedgen.core.errors import FedgenError, TrackingError
from fedgen.core.io import atomic_write_text
from fedgen.experiment.build import build_tracker, sweep_choices
from fedgen.experiment.overrides import sets_plain_key, with_overrides
from fedgen.reporting.report import load_run_json, swept_params, write_summary
from fedgen.reporting.verdict import NOTE_TAG, sweep_headlines, sweep_note
from fedgen.tracking.liveness import FAILURE_TAG
from fedgen.tracking.trackers import FAILED, FINISHED, KILLED, PARENT_RUN_FILE, MlflowTracker

log = logging.getLogger("fedgen")


def sweep_name(overrides: Sequence[str], when: str) -> str:
    """The parent run's name: the keys the sweep varies (the last part of each) and ``when``.

    For example ``sweep num_clients, seed 2026-12-02 14:05`` for
    ``federation.num_clients=3,10 seed=range(3)``; ``sweep 2026-12-02 14:05`` if none varies.
    """
    swept = [
        key.rsplit(".", 1)[-1]
        for key, several in sweep_choices(overrides).items()
        if several and not key.startswith("hydra.")
    ]
    return " ".join(["sweep", *([", ".join(swept)] if swept else []), when])


class SweepParentRun(Callback):
    """Groups a sweep's jobs under an MLflow parent run and summarises them when it ends.

    Every job of the sweep finds the parent's id in ``<sweep dir>/.mlflow_parent_run_id`` and
    tags itself as a child. At the end, the jobs that completed (each left a ``run.json``) are
    summarised in the sweep directory (``summary.csv``, ``summary.md``, plots, ``report.html``)
    and the summary is logged to the parent run. The parent ends FINISHED when all jobs
    completed, FAILED otherwise, KILLED when Ctrl-C or SIGTERM stopped the sweep; also when a
    job's failure aborts the sweep, and when the process exits mid-sweep, the summary of the
    completed jobs is made and the parent is closed: it is never left RUNNING.
    """

    def __init__(self) -> None:
        self._tracker: MlflowTracker | None = None
        self._sweep_dir: Path | None = None
        self._failed = False

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        sweep_dir = Path(config.hydra.sweep.dir).resolve()
        self._sweep_dir = sweep_dir
        atexit.register(self._finish, FAILED)
        try:  # the store is checked here, before any job; Hydra would only warn of an error
            tracker = build_tracker(
                config, launch_dir=Path(config.hydra.runtime.cwd), sweep_dir=None
            )
        except FedgenError as exc:
            print(f"fedgen: error: {exc}", file=sys.stderr)
            raise SystemExit(2) from None
        if not isinstance(tracker, MlflowTracker):
            return
        overrides = list(config.hydra.overrides.task)
        tracker.start_run(
            sweep_name(overrides, time.strftime("%Y-%m-%d %H:%M")),
            params=sweep_params(overrides),
            tags={"fedgen.sweep_dir": str(sweep_dir), "fedgen.role": "sweep"},
        )
        # Jobs run by this process name the parent by its handle, which the MLflow worker turns
        # into the run's id: no waiting here for MLflow to have created the run. Jobs run in
        # other processes (hydra/launcher=joblib, submitit) need the id itself.
        assert tracker.handle is not None
        marker = tracker.handle
        if not _runs_jobs_here(config):
            try:
                marker = tracker.run_id or marker
            except TrackingError as exc:
                print(f"fedgen: error: {exc}", file=sys.stderr)
                raise SystemExit(2) from None
        atomic_write_text(sweep_dir / PARENT_RUN_FILE, marker)
        self._tracker = tracker

    def on_job_end(self, config: DictConfig, job_return: JobReturn, **kwargs: Any) -> None:
        if job_return.status != JobStatus.COMPLETED:
            self._failed = True

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        # on_job_end runs where the job ran: a job failed in another process shows here as a
        # job directory without run.json.
        failed = self._failed or (self._sweep_dir is not None and _incomplete(self._sweep_dir))
        self._finish(FAILED if failed else FINISHED)

    def _finish(self, status: str) -> None:
        sweep_dir, self._sweep_dir = self._sweep_dir, None
        if sweep_dir is None:
            return
        signum = lifecycle.received()
        if signum is not None:  # Ctrl-C or SIGTERM: the sweep was stopped
            status = KILLED
            if self._tracker is not None:
                reason = f"interrupted by {signal.Signals(signum).name}"
                self._tracker.set_tags({FAILURE_TAG: reason})
        try:
            self._summarise(sweep_dir)
        except Exception as exc:  # a broken summary must not leave the parent run open
            log.error("the sweep summary failed: %s", exc)
        finally:
            if self._tracker is not None:
                with contextlib.suppress(TrackingError):  # reported when the run ends below
                    run_id = self._tracker.run_id  # the real id, for anyone reading it later
                    if run_id is not None:
                        atomic_write_text(sweep_dir / PARENT_RUN_FILE, run_id)
                self._tracker.end_run(status)
                self._tracker = None

    def _summarise(self, sweep_dir: Path) -> None:
        records = [load_run_json(p) for p in sorted(sweep_dir.glob("*/run.json"))]
        if not records:
            log.warning("no job of the sweep completed: no summary")
            return
        paths = write_summary(sweep_dir, records, title=f"fedgen sweep {sweep_dir.name}")
        log.info("sweep summary of %d job(s): %s", len(records), sweep_dir / "report.html")
        if self._tracker is not None:
            log.info("%s", self._tracker.sweep_where(sweep_dir))
            for path in paths:
                self._tracker.log_file(path, "summary")
            self._tracker.log_metrics(sweep_headlines(records))
            note = sweep_note(records, swept_params(records))
            if note:
                self._tracker.set_tags({NOTE_TAG: note})
            attack_log = sweep_dir / "attack_logs.csv"
            if attack_log.exists():
                self._tracker.log_file(attack_log, "summary")


def sweep_params(overrides: Sequence[str]) -> dict[str, str]:
    """The sweep's command-line overrides as its parent run's params (``threshold`` ->
    ``0.3,0.45,0.5``; ``+``/``~`` prefixes dropped), so the UI says what the sweep varied."""
    params: dict[str, str] = {}
    for override in overrides:
        key, sep, value = override.partition("=")
        if sep:
            params[key.lstrip("+~")] = value
    return params


def _runs_jobs_here(config: DictConfig) -> bool:
    """Whether the sweep's launcher runs the jobs in this process (Hydra's basic launcher)."""
    target = str(config.hydra.launcher.get("_target_", ""))
    return target.endswith(".BasicLauncher")


def _incomplete(sweep_dir: Path) -> bool:
    """Whether a job of the sweep started (its ``.hydra`` folder) but left no ``run.json``."""
    return any(not (d.parent / "run.json").exists() for d in sweep_dir.glob("*/.hydra"))


class SweepConfigs:
    """Each job's config of a sweep run in this process, composed once per composition.

    Hydra's basic launcher composes every job's config from scratch (~0.1-0.2 s a job, the
    largest part of a threshold sweep's marginal job). Jobs whose overrides differ from an
    earlier job's only in the values of plain keys (``threshold=0.3`` vs ``threshold=0.45``;
    not a config group, a deletion or addition, a ``hydra.*`` setting, nor a mapping or list)
    compose through the same defaults, and Hydra applies such overrides last, to the composed
    config (``ConfigLoaderImpl._apply_overrides_to_config``). So such a job's config is the
    earlier job's, copied, with those overrides applied by that same function, and its
    ``hydra.overrides.task`` and ``hydra.job.override_dirname`` as Hydra makes them.
    :meth:`install` puts this in front of Hydra's ``load_sweep_config`` while the command runs.
    """

    def __init__(self) -> None:
        # (master config's id, overrides) of the last composed job, and a copy of its config.
        self._last: tuple[int, list[str], DictConfig] | None = None

    def load(self, loader: Any, compose: Any, master: DictConfig, overrides: list[str]) -> Any:
        """The config of the job with ``overrides`` (``compose`` is Hydra's own loader)."""
        derived = self._derive(loader, master, overrides)
        if derived is not None:
            return derived
        cfg = compose(loader, master, overrides)
        self._last = (id(master), list(overrides), copy.deepcopy(cfg))
        return cfg

    def _derive(self, loader: Any, master: DictConfig, overrides: list[str]) -> DictConfig | None:
        from hydra._internal.config_loader_impl import get_overrides_dirname
        from hydra.core.override_parser.overrides_parser import OverridesParser
        from hydra.errors import HydraException
        from omegaconf import Container, OmegaConf, open_dict

        if self._last is None or self._last[0] != id(master):
            return None
        _, before, template = self._last
        if len(before) != len(overrides):
            return None
        try:
            parser = OverridesParser.create()
            old, new = parser.parse_overrides(before), parser.parse_overrides(overrides)
        except HydraException:
            return None
        repository = getattr(loader, "repository", None)
        if repository is None:
            return None
        changed = []
        for a, b in zip(old, new, strict=True):
            if a.input_line == b.input_line:
                continue
            if a.key_or_group != b.key_or_group or not _plain(a, repository):
                return None
            if not _plain(b, repository):
                return None
            if isinstance(OmegaConf.select(template, b.key_or_group), Container):
                return None
            changed.append(b)
        task = [o.input_line for o in old if not o.is_hydra_override()]
        if list(template.hydra.overrides.task) != task:
            return None  # not the config Hydra composed for ``before``: compose
        try:
            cfg = with_overrides(template, changed)
        except HydraException:
            return None  # Hydra's own composition reports it
        app = [o for o in new if not o.is_hydra_override()]
        job = cfg.hydra.job
        with open_dict(cfg.hydra):
            cfg.hydra.overrides.task = [o.input_line for o in app]
            job.override_dirname = get_overrides_dirname(
                overrides=app,
                kv_sep=job.config.override_dirname.kv_sep,
                item_sep=job.config.override_dirname.item_sep,
                exclude_keys=job.config.override_dirname.exclude_keys,
            )
        OmegaConf.copy_cache(from_config=master, to_config=cfg)
        self._last = (id(master), list(overrides), copy.deepcopy(cfg))
        return cfg

    @contextlib.contextmanager
    def install(self) -> Iterator[None]:
        """Within: Hydra's ``ConfigLoaderImpl.load_sweep_config`` goes through :meth:`load`."""
        from hydra._internal.config_loader_impl import ConfigLoaderImpl

        original = ConfigLoaderImpl.load_sweep_config

        def load_sweep_config(
            loader: Any, master_config: DictConfig, sweep_overrides: list[str]
        ) -> Any:
            return self.load(loader, original, master_config, list(sweep_overrides))

        ConfigLoaderImpl.load_sweep_config = load_sweep_config  # type: ignore[method-assign,assignment]
        try:
            yield
        finally:
            ConfigLoaderImpl.load_sweep_config = original  # type: ignore[method-assign]


def _plain(override: Any, repository: Any) -> bool:
    """Whether ``override`` sets a plain key to a scalar (see :class:`SweepConfigs`)."""
    if override.is_hydra_override() or override.is_sweep_override():
        return False
    if not sets_plain_key(override, repository.group_exists):
        return False
    return not isinstance(override.value(), dict | list)
