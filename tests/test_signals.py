"""Stopping fedgen: the first Ctrl-C or SIGTERM stops it in seconds, no helper outlives it, and no
run is left RUNNING; SIGKILL leaves no helper behind either. Through the real command line, with
its real MLflow worker and figure-drawing processes, and the signals a terminal, ``timeout``,
SLURM or systemd send (to the process, or to its whole group)."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import threading
import time
from concurrent.futures import Future
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from mlflow.tracking import MlflowClient

from fedgen.figures import pool as figure_pool
from fedgen.figures.pool import FigureTask

TINY = ["dataset=tiny", "attack=gmia", "cache=false"]
LONG = [*TINY, "federation.num_rounds=1000000"]  # trains until it is stopped
STOP_S = 30.0  # bounded waits: a command not gone by then hangs (it takes ~1 s)


class Command:
    """``python -m fedgen ...`` in a session of its own, whose every process we can list."""

    def __init__(self, cwd: Path, *args: str) -> None:
        env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
        env["FEDGEN_CACHE_DIR"] = str(cwd / "cache")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "fedgen", *args],
            cwd=cwd,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,  # its session id is its pid: see leftovers()
        )
        self.lines: list[str] = []
        self._seen = threading.Condition()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            with self._seen:
                self.lines.append(line)
                self._seen.notify_all()

    def wait_for(self, text: str, timeout: float = 240.0) -> None:
        with self._seen:
            found = self._seen.wait_for(lambda: any(text in line for line in self.lines), timeout)
        assert found, f"{text!r} never came:\n{self.output()}"

    def signal(self, signum: int, group: bool = False) -> None:
        if group:
            os.killpg(self.proc.pid, signum)
        else:
            self.proc.send_signal(signum)

    def wait(self) -> int:
        """The exit code, within :data:`STOP_S` seconds; else the group is killed and it fails."""
        try:
            return self.proc.wait(STOP_S)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            raise AssertionError(f"hung after the signal:\n{self.output()}") from None

    def leftovers(self, within: float = 20.0) -> list[str]:
        """The processes of the command's session still alive after ``within`` seconds."""
        deadline = time.monotonic() + within
        while True:
            alive = _session(self.proc.pid)
            if not alive or time.monotonic() > deadline:
                for pid in alive:
                    with contextlib.suppress(OSError):
                        os.kill(int(pid.split()[0]), signal.SIGKILL)
                self._reader.join(timeout=5)  # end-of-file: every process holding it is gone
                assert self.proc.stdout is not None
                self.proc.stdout.close()
                return alive
            time.sleep(0.2)

    def output(self) -> str:
        return "".join(self.lines[-40:])


def _session(sid: int) -> list[str]:
    """``"<pid> <command>"`` of every live (not zombie) process in session ``sid`` (Linux)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            command = (stat.parent / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if int(fields[3]) == sid and fields[0] != "Z":
            found.append(f"{stat.parent.name} {command[:100]}")
    return found


@pytest.fixture(scope="session")
def empty_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An MLflow SQLite store with its schema made (making it takes ~10 s): copied per test."""
    db = tmp_path_factory.mktemp("store") / "mlflow.db"
    MlflowClient(f"sqlite:///{db}").search_experiments()
    return db


def _launch_dir(tmp_path: Path, empty_store: Path) -> Path:
    shutil.copyfile(empty_store, tmp_path / "mlflow.db")
    return tmp_path


def _runs(cwd: Path) -> dict[str, Any]:
    """Run name -> run, in the store of ``cwd``."""
    client = MlflowClient(f"sqlite:///{cwd / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("fedgen")
    assert experiment is not None
    return {r.info.run_name: r for r in client.search_runs([experiment.experiment_id])}


needs_proc = pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="lists /proc")


@needs_proc
@pytest.mark.slow
def test_ctrl_c_to_the_group_while_training_stops_at_once_and_kills_the_run(
    tmp_path: Path, empty_store: Path
) -> None:
    cwd = _launch_dir(tmp_path, empty_store)
    command = Command(cwd, *LONG)
    command.wait_for("cohort 300 individuals")  # the run is open, training goes on
    time.sleep(1.0)
    command.signal(signal.SIGINT, group=True)  # what a terminal's Ctrl-C does
    assert command.wait() == 130, command.output()
    assert command.leftovers() == []
    assert "interrupted by SIGINT" in command.output()
    (run,) = _runs(cwd).values()
    assert run.info.status == "KILLED"
    assert "interrupted by SIGINT" in run.data.tags["fedgen.failure"]


@needs_proc
@pytest.mark.slow
def test_sigterm_while_figures_are_drawn_stops_without_a_run_left_running(
    tmp_path: Path, empty_store: Path
) -> None:
    cwd = _launch_dir(tmp_path, empty_store)
    command = Command(cwd, *TINY, "federation.num_rounds=50")
    command.wait_for("attacks on 300 candidates")  # figures are being drawn from now on
    command.signal(signal.SIGTERM)  # `timeout`, `kill`: the main process only
    assert command.wait() == 143, command.output()
    assert command.leftovers() == []
    (run,) = _runs(cwd).values()
    # Ended before the signal (its figures then dropped), or killed while it was stored.
    assert run.info.status in ("FINISHED", "KILLED")


@needs_proc
@pytest.mark.slow
def test_sigkill_of_the_main_process_leaves_no_helper_and_no_open_run(
    tmp_path: Path, empty_store: Path
) -> None:
    cwd = _launch_dir(tmp_path, empty_store)
    command = Command(cwd, *LONG)
    command.wait_for("cohort 300 individuals")
    time.sleep(1.0)
    helpers = _session(command.proc.pid)
    assert any("mlflow_worker" in p for p in helpers) and any("spawn_main" in p for p in helpers)
    command.signal(signal.SIGKILL)
    assert command.wait() == -signal.SIGKILL
    # The drawing processes die with it, then multiprocessing's resource tracker; the MLflow
    # worker closes the run first.
    assert command.leftovers() == []
    (run,) = _runs(cwd).values()
    assert run.info.status == "FAILED"
    assert "ended before closing the run" in run.data.tags["fedgen.failure"]


@needs_proc
@pytest.mark.slow
def test_ctrl_c_between_sweep_jobs_stops_the_sweep_and_kills_its_parent_run(
    tmp_path: Path, empty_store: Path
) -> None:
    cwd = _launch_dir(tmp_path, empty_store)
    command = Command(
        cwd, *TINY, "federation.num_rounds=5", "seed=0,1,2", "threshold=0.3,0.5", "--multirun"
    )
    command.wait_for("\t#1 : ")  # job 0 done, job 1 starting
    command.signal(signal.SIGINT, group=True)
    assert command.wait() == 130, command.output()
    assert command.leftovers() == []
    runs = _runs(cwd)
    sweep = [r for name, r in runs.items() if name.startswith("sweep ")]
    assert [r.info.status for r in sweep] == ["KILLED"]
    jobs = [r for name, r in runs.items() if not name.startswith("sweep ")]
    assert 1 <= len(jobs) <= 2  # the sweep stopped: no job after the interrupted one
    assert all(r.info.status in ("FINISHED", "KILLED") for r in jobs)
    assert "\t#2 : " not in "".join(command.lines)


# -- the pieces, in this process -----------------------------------------------------------------


def test_a_drawing_process_that_sends_back_an_interrupt_does_not_hang_the_pool(
    tmp_path: Path,
) -> None:
    """The original hang: a KeyboardInterrupt from a drawing process killed the pool's thread."""
    figure_pool.start()
    done: list[Path] = []
    rng = np.random.default_rng(0)
    task = FigureTask("gradient_norm_histogram", (rng.random(50), rng.random(50) < 0.5, 0.4, "s"))
    with figure_pool._lock:
        figure_pool._outstanding.add(-1)
    future: Future[str] = Future()
    future.set_exception(KeyboardInterrupt())
    figure_pool._callback(task, done.append, None, -1)(future)  # must not raise
    figure_pool.wait()  # returns: nothing outstanding
    figure_pool.submit([task], tmp_path, done.append)  # the pool still draws
    figure_pool.wait()
    assert [p.name for p in done] == ["gradient_norm_histogram.png"]


def _running(pid: int, wait_s: float = 5.0) -> bool:
    """Whether process ``pid`` still runs (not gone, not a zombie) after up to ``wait_s``."""
    deadline = time.monotonic() + wait_s
    while True:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except (FileNotFoundError, ProcessLookupError):
            return False
        if state in ("Z", "X"):
            return False
        if time.monotonic() > deadline:
            return True
        time.sleep(0.05)


def test_abort_ends_the_drawing_processes_and_drops_what_is_left(tmp_path: Path) -> None:
    figure_pool.start()
    executor = figure_pool._executor
    assert executor is not None
    procs = list(executor._processes.values())
    assert procs and all(p.is_alive() for p in procs)
    rng = np.random.default_rng(1)
    tasks = [
        FigureTask("gradient_norm_histogram", (rng.random(200), rng.random(200) < 0.5, t, "s"))
        for t in (0.1, 0.2, 0.3, 0.4, 0.6, 0.7)
    ]
    figure_pool.submit(tasks, tmp_path, lambda path: None)
    figure_pool.abort()
    for proc in procs:
        proc.join(timeout=5)
    # By pid, not Process.is_alive(): when the executor's own thread reaps a killed worker
    # first, is_alive() can stay True for a process that no longer exists.
    assert not [p.pid for p in procs if p.pid is not None and _running(p.pid)]
    figure_pool.wait()  # nothing outstanding after an abort
    figure_pool.start()  # a later command-in-process gets a new pool


LIFECYCLE = textwrap.dedent(
    """
    import os, signal, sys, time
    from fedgen.core import lifecycle
    lifecycle.install()
    try:
        with lifecycle.deferred():
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(0.2)
            print("deferred", flush=True)  # not cut short
    except lifecycle.Interrupted as exc:
        print("interrupted", exc.signum, exc.exit_code, flush=True)
    os.kill(os.getpid(), signal.SIGINT)  # a second signal: told, not raised
    time.sleep(0.2)
    print("second ignored", lifecycle.received(), flush=True)
    """
)


def test_the_first_signal_interrupts_once_and_a_deferred_block_finishes_first() -> None:
    out = subprocess.run(
        [sys.executable, "-c", LIFECYCLE], capture_output=True, text=True, timeout=60, check=True
    )
    assert out.stdout.split("\n")[:3] == [
        "deferred",
        f"interrupted {int(signal.SIGTERM)} 143",
        f"second ignored {int(signal.SIGTERM)}",
    ]
    assert "stopping already" in out.stderr


ORPHAN = textwrap.dedent(
    """
    import os, subprocess, sys, time
    from fedgen.core import lifecycle
    child = '''
    import os, sys, time
    from fedgen.core import lifecycle
    lifecycle.become_child(int(sys.argv[1]), on_orphaned=lambda: os._exit(0))
    print(os.getpid(), flush=True)
    time.sleep(60)
    '''
    with lifecycle.signals_blocked():
        proc = subprocess.Popen([sys.executable, "-c", child, str(os.getpid())],
                                stdout=subprocess.PIPE, text=True)
    print(proc.stdout.readline().strip(), flush=True)
    os.kill(os.getpid(), 9)
    """
)


@needs_proc
def test_a_helper_watching_its_parent_exits_when_the_parent_is_killed() -> None:
    """The portable path (no prctl): the helper polls its parent's pid."""
    parent = subprocess.run(
        [sys.executable, "-c", ORPHAN], capture_output=True, text=True, timeout=60, check=False
    )
    assert parent.returncode == -signal.SIGKILL, parent.stderr
    child = int(parent.stdout.strip())
    deadline = time.monotonic() + 10
    while _alive(child) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _alive(child)


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False
