"""The `fedgen` command: Hydra composes the config, the builder makes objects, the pipeline runs."""

from __future__ import annotations

import atexit
import contextlib
import os
import signal
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from fedgen.core import lifecycle
from fedgen.core.errors import FedgenError
from fedgen.tracking.trackers import prestart_worker, quick_open

if TYPE_CHECKING:
    from omegaconf import DictConfig

CONFIG_PATH = "pkg://fedgen.conf"
CONFIG_NAME = "config"
# The process that ran main(): it waits for figures and MLflow when the command ends. A job run
# in another process (hydra/launcher=joblib) waits before it returns (see _job).
_launch_pid: int | None = None
# Set to a file path, the command writes there, at exit, the top-level names of the modules it
# imported, one a line (how tests check that a job reusing a cached federation imports no Flower).
IMPORTS_FILE_ENV = "FEDGEN_IMPORTS_FILE"


def _job(cfg: DictConfig) -> float:
    """One Hydra job: build the experiment from ``cfg`` and run it."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    from fedgen.core.logs import quiet_third_party
    from fedgen.experiment.build import build_experiment
    from fedgen.experiment.pipeline import run_experiment

    quiet_third_party()
    hc = HydraConfig.get()
    multirun = hc.mode == RunMode.MULTIRUN
    try:
        experiment = build_experiment(
            cfg,
            launch_dir=Path(hc.runtime.cwd),
            output_dir=Path(hc.runtime.output_dir),
            sweep_dir=Path(hc.sweep.dir).resolve() if multirun else None,
            overrides=list(hc.overrides.task),
            job=str(hc.job.num) if multirun else "",
        )
        try:
            outcome = run_experiment(experiment)
        finally:
            if os.getpid() != _launch_pid:
                _settle()  # the launcher may end this process as soon as the job returns
    except FedgenError as exc:
        if multirun:
            raise  # Hydra reports the failed job of the sweep with its overrides
        print(f"fedgen: error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    try:
        return outcome.objective(experiment.objective)
    except FedgenError as exc:
        if multirun:
            raise
        print(f"fedgen: error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None


def _write_imports(path: Path) -> None:
    """Write the top-level names of this process's imported modules to ``path``, sorted."""
    from fedgen.core.io import atomic_write_text

    names = sorted({name.partition(".")[0] for name in sys.modules})
    atomic_write_text(path, "".join(f"{name}\n" for name in names))


def _settle() -> None:
    """Wait until the job's figures are drawn and everything it sent to MLflow is stored."""
    from fedgen.figures import pool as figure_pool
    from fedgen.tracking.trackers import flush

    figure_pool.wait()
    flush()


USAGE = """\
usage: python -m fedgen [--multirun] [key=value | group=option ...]
       python -m fedgen compare [sweep or output directories ...]

fedgen trains a genotype cohort with federated learning (Flower FedAvg) and measures how much
what each observer sees (the server, a peer, the public) leaks about the participants, with
and without defenses; every run is logged to MLflow (./mlflow.db by default).

Config groups (group=option; a group's keys are set with group.key=value):
{groups}

Top-level keys: seed, threshold, objective, figures, cache, cache_dir.
A model argument the config does not list is added with +model.<name>=<value>.

Examples:
  python -m fedgen                                    # the reference study's default experiment
  python -m fedgen attack=gmia threshold=0.3,0.45,0.5 --multirun
  python -m fedgen experiment=leaky attack=server     # where leakage is real; the server's attacks
  python -m fedgen --multirun experiment=privacy_utility
  python -m fedgen compare multirun/                  # one table and report over sweeps

Options:
  -m, --multirun   run every combination of the comma-separated values (a sweep)
  --version        print fedgen's version
  --cfg job        print the composed config and exit (Hydra)
  --hydra-help     Hydra's own help (launchers, sweepers, logging)
"""


def usage() -> str:
    """``--help``: what fedgen does, its config groups with their options, and examples."""
    from fedgen.experiment.preflight import groups_help

    return USAGE.format(groups=groups_help())


def main() -> None:
    """Console entry point (`fedgen` and `python -m fedgen`): :func:`_main`, stoppable.

    The first Ctrl-C or SIGTERM stops the job and the sweep: their runs are closed as KILLED,
    the figures not drawn yet are dropped, and the command exits with 130 (SIGINT) or 143
    (SIGTERM) within seconds; a second one is never needed (:mod:`fedgen.core.lifecycle`).
    """
    lifecycle.install()
    try:
        _main()
        if _is_program():
            # Done: figures drawn, MLflow flushed. Close the rest (the atexit handlers) and
            # exit without the interpreter's teardown, which took ~0.7 s of a default run
            # (the idle drawing processes' own teardown, collecting the heap).
            pool = sys.modules.get("fedgen.figures.pool")
            if pool is not None:
                pool.abort()  # nothing is left to draw: end the idle drawing processes now
            import multiprocessing

            # Other children (a joblib launcher's workers) end with the interpreter's own
            # teardown, which shuts their executor down first: then exit as usual.
            if not multiprocessing.active_children():
                atexit._run_exitfuncs()
                sys.stdout.flush()
                sys.stderr.flush()
                os._exit(0)
    except KeyboardInterrupt as exc:
        signum = exc.signum if isinstance(exc, lifecycle.Interrupted) else int(signal.SIGINT)
        pool = sys.modules.get("fedgen.figures.pool")
        if pool is not None:
            pool.abort()  # now, not after the sweep's summary
        name = signal.Signals(signum).name
        print(f"fedgen: interrupted by {name}; open runs are closed as KILLED", file=sys.stderr)
        # Close what is open now (the atexit handlers: the sweep's parent run, the MLflow
        # worker), then exit without the interpreter's teardown (seconds of garbage collection
        # and joining threads that no longer matter).
        atexit._run_exitfuncs()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(128 + signum)


def _is_program() -> bool:
    """Whether this process is the ``fedgen`` command itself (``python -m fedgen`` or the
    console script), not a program that calls :func:`main` (a test, a notebook)."""
    program = sys.modules.get("__main__")
    spec = getattr(program, "__spec__", None)
    if spec is not None:
        return str(spec.name) == "fedgen.__main__"
    return Path(str(getattr(program, "__file__", ""))).name == "fedgen"  # the console script


def _main() -> None:
    """The command itself.

    The MLflow process and the figure-drawing processes are started before anything heavy is
    imported here, so that their start-up (MLflow and its SQL store, matplotlib) and ours (Hydra,
    scikit-learn, Flower) run side by side.
    ``fedgen compare ...`` is the comparison command (:mod:`fedgen.reporting.compare`).
    """
    if sys.argv[1:2] == ["compare"]:
        from fedgen.reporting.compare import main as compare

        raise SystemExit(compare(sys.argv[2:]))
    args = sys.argv[1:]
    if any(a in ("--version", "-V") for a in args):
        import fedgen

        print(f"fedgen {fedgen.__version__}")
        return
    if any(a in ("--help", "-h") for a in args):
        print(usage())
        return
    global _launch_pid
    _launch_pid = os.getpid()
    if imports_file := os.environ.get(IMPORTS_FILE_ENV):
        atexit.register(_write_imports, Path(imports_file))
    if "--hydra-help" in args:
        sys.argv = [sys.argv[0], *(("--help" if a == "--hydra-help" else a) for a in args)]
    quick = ("--help", "-h", "--cfg", "-c", "--info", "--hydra-help")
    if not any(a in ("tracking=none", *quick) for a in sys.argv):
        prestart_worker()
    elsewhere = any(a.startswith("hydra/launcher=") for a in args)  # jobs draw their own
    if not elsewhere and not any(a in ("figures=false", *quick) for a in sys.argv):
        from fedgen.figures import pool as early

        early.start()  # the drawing processes import matplotlib while we import the rest
    if not any(a in quick for a in args):
        from fedgen.experiment.preflight import preflight

        try:
            preflight(args)  # every job's config, before the first job writes anything
        except FedgenError as exc:
            print(f"fedgen: error: {exc}", file=sys.stderr)
            raise SystemExit(2) from None
    import hydra
    from hydra.core.plugins import Plugins

    from fedgen.core import rundirs
    from fedgen.figures import pool as figure_pool
    from fedgen.tracking.trackers import flush

    rundirs.register()  # ${fedgen.unique:} in the job directories, before Hydra composes

    # Hydra finds plugins by walking the hydra_plugins namespace, which an editable install
    # cannot list, so the sweeper is registered by hand. Plugins.instance() first: its scan
    # re-executes Hydra's basic_sweeper module, and our subclass must extend the class it leaves.
    Plugins.instance()
    from hydra_plugins.fedgen_sweeper import FedgenSweeper

    Plugins.instance().register(FedgenSweeper)
    with contextlib.ExitStack() as stack:
        # A store a quick check vouches for is opened by MLflow while the first job goes on.
        stack.enter_context(quick_open())
        if any(a in ("--multirun", "-m") for a in args):
            from fedgen.experiment.sweep import SweepConfigs

            stack.enter_context(SweepConfigs().install())  # jobs differing in values only
        hydra.main(config_path=CONFIG_PATH, config_name=CONFIG_NAME, version_base="1.3")(_job)()
    figure_pool.wait()  # figures are drawn in the background: let them finish and be logged
    try:
        flush()  # MLflow stores the last job's results in the background: wait, and check
    except FedgenError as exc:
        print(f"fedgen: error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
