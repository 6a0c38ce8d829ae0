"""What a run stores is what it wrote, its status says whether all of it was stored, and a
store that cannot work stops the command before any work: through the real command line."""

from __future__ import annotations

import csv
import io
import json
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest
from mlflow.tracking import MlflowClient

from fedgen.reporting import attack_logs
from tests.test_cli import TINY, fedgen

QUICK = [*TINY, "figures=false", "attack=gmia"]


def _env(cwd: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    env["FEDGEN_CACHE_DIR"] = str(cwd / "cache")
    return env


def _runs(cwd: Path) -> list[Any]:
    client = MlflowClient(f"sqlite:///{cwd / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("fedgen")
    assert experiment is not None
    return list(client.search_runs([experiment.experiment_id]))


def _logged_csv(cwd: Path, run_id: str, artifact: str) -> list[dict[str, str]]:
    client = MlflowClient(f"sqlite:///{cwd / 'mlflow.db'}")
    local = client.download_artifacts(run_id, artifact, str(cwd / "downloads" / run_id))
    return list(csv.DictReader(io.StringIO(Path(local).read_text())))


@pytest.mark.slow
def test_runs_started_at_once_from_one_directory_keep_their_own_results(tmp_path: Path) -> None:
    seeds = ["1", "2", "3", "4"]
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "fedgen", *QUICK, f"seed={seed}"],
            cwd=tmp_path,
            env=_env(tmp_path),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        for seed in seeds
    ]
    for proc in procs:
        _, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err
    job_dirs = sorted(p.parent for p in tmp_path.glob("outputs/*/*/run.json"))
    assert len(job_dirs) == 4  # one directory per run, though they started in the same second
    runs = {r.info.run_id: r for r in _runs(tmp_path)}
    assert sorted(r.data.params["seed"] for r in runs.values()) == seeds
    for run_id, run in runs.items():
        assert run.info.status == "FINISHED"
        logged = _logged_csv(tmp_path, run_id, "logs/attack_logs.csv")
        assert [row["seed"] for row in logged] == [run.data.params["seed"]]
    for job_dir in job_dirs:
        run_id = json.loads((job_dir / "run.json").read_text())["run_id"]
        rows = list(csv.DictReader(io.StringIO((job_dir / "attack_logs.csv").read_text())))
        assert [row["seed"] for row in rows] == [runs[run_id].data.params["seed"]]


# The MLflow worker with a store that loses one artifact (a full disk, say), and the command
# line with that worker: a fault injected at the boundary between fedgen and MLflow.
FAILING_WORKER = """
from mlflow.tracking import MlflowClient

real = MlflowClient.log_artifact

def log_artifact(self, run_id, local_path, artifact_path=None):
    if local_path.endswith("attack_logs.csv"):
        raise OSError(28, "No space left on device")
    return real(self, run_id, local_path, artifact_path)

MlflowClient.log_artifact = log_artifact

from fedgen.tracking.mlflow_worker import main

main()
"""
CLI_WITH_FAILING_WORKER = """
import sys
from fedgen.tracking import trackers

trackers.WORKER_COMMAND = [sys.executable, {worker!r}]

from fedgen.cli import main

main()
"""


@pytest.mark.slow
def test_a_run_that_lost_an_artifact_ends_failed_and_the_command_says_so(tmp_path: Path) -> None:
    worker = tmp_path / "failing_worker.py"
    worker.write_text(FAILING_WORKER)
    cli = tmp_path / "cli.py"
    cli.write_text(CLI_WITH_FAILING_WORKER.format(worker=str(worker)))
    out = subprocess.run(
        [sys.executable, str(cli), *QUICK],
        cwd=tmp_path,
        env=_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert out.returncode == 2
    assert out.stderr.count("\n") == 1, out.stderr
    assert out.stderr.startswith("fedgen: error: artifact logs/attack_logs.csv of run ")
    assert "No space left on device" in out.stderr and "marked FAILED" in out.stderr
    (run,) = _runs(tmp_path)
    assert run.info.status == "FAILED"
    assert run.data.tags["fedgen.failure"] == (
        "artifact logs/attack_logs.csv not stored: OSError: [Errno 28] No space left on device"
    )


def _wait_for_running(db: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=1) as con:
                (n,) = con.execute("select count(*) from runs where status='RUNNING'").fetchone()
            if n:
                return
        except sqlite3.Error:
            pass  # not created yet
        time.sleep(0.1)
    raise AssertionError("the run did not start")


@pytest.mark.slow
def test_a_run_killed_with_its_process_group_is_failed_by_the_next_command(
    tmp_path: Path,
) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "fedgen", *QUICK, "federation.num_rounds=1000000"],
        cwd=tmp_path,
        env=_env(tmp_path),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        _wait_for_running(tmp_path / "mlflow.db", timeout=120)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # the command, its MLflow worker, everything
        proc.wait(timeout=30)
    (run,) = _runs(tmp_path)
    assert run.info.status == "RUNNING"  # nobody was left to close it
    out = fedgen(tmp_path, "compare")
    assert out.returncode == 2  # nothing FINISHED to compare, and it says so
    (run,) = _runs(tmp_path)
    assert run.info.status == "FAILED"
    assert run.data.tags["fedgen.failure"].startswith(f"process {proc.pid} on ")


def _row(job: str, attack: str, f1: str) -> dict[str, str]:
    return {"job": job, "attack_type": attack, "f1_score": f1}


def test_a_jobs_rows_replace_its_earlier_ones_in_the_sweep_log(tmp_path: Path) -> None:
    path = tmp_path / "attack_logs.csv"
    attack_logs.append(path, [_row("0", "mia", "0.1"), _row("0", "gmia", "0.2")])
    attack_logs.append(path, [_row("1", "mia", "0.3"), _row("1", "gmia", "0.4")])
    attack_logs.append(path, [_row("0", "gmia", "0.5")])  # job 0 again, one attack only
    attack_logs.append(path, [_row("", "lia", "0.6")])  # no job number: added
    rows = list(csv.DictReader(io.StringIO(path.read_text())))
    assert [(r["job"], r["attack_type"], r["f1_score"]) for r in rows] == [
        ("0", "gmia", "0.5"),
        ("1", "mia", "0.3"),
        ("1", "gmia", "0.4"),
        ("", "lia", "0.6"),
    ]
    assert path.read_text().splitlines()[0] == ",".join(attack_logs.COLUMNS)


@pytest.mark.slow
def test_a_sweep_rerun_into_its_directory_keeps_one_row_per_job_and_attack(
    tmp_path: Path,
) -> None:
    for thresholds in ("0.3,0.5", "0.4,0.6"):
        out = fedgen(tmp_path, *QUICK, "hydra.sweep.dir=s", f"threshold={thresholds}", "-m")
        assert out.returncode == 0, out.stderr
    rows = list(csv.DictReader(io.StringIO((tmp_path / "s" / "attack_logs.csv").read_text())))
    assert [(r["job"], r["threshold"]) for r in rows] == [("0", "0.4"), ("1", "0.6")]


@pytest.mark.slow
@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["tracking.uri=sqlite:///bad.db"], "bad.db is not a readable MLflow SQLite database"),
        (["seed=0,1", "tracking.uri=bogus://x", "-m"], "no store for the scheme 'bogus'"),
        (
            ["tracking.uri=http://127.0.0.1:9/", "tracking.timeout_s=1"],
            "the MLflow store http://127.0.0.1:9/ did not answer",
        ),
    ],
)
def test_a_bad_store_stops_the_command_before_any_work(
    tmp_path: Path, args: list[str], expected: str
) -> None:
    (tmp_path / "bad.db").write_text("not a database")
    start = time.monotonic()
    out = fedgen(tmp_path, *TINY, "figures=false", *args)
    assert out.returncode == 2
    assert out.stderr.startswith("fedgen: error: ") and out.stderr.count("\n") == 1, out.stderr
    assert expected in out.stderr
    assert "round 1/" not in out.stdout  # stopped before training
    assert not list(tmp_path.glob("**/training_log.csv"))
    assert time.monotonic() - start < 60  # not MLflow's minutes of retries


def test_the_job_directory_resolver_is_unique_per_process() -> None:
    script = textwrap.dedent(
        """
        from omegaconf import OmegaConf
        from fedgen.core import rundirs
        rundirs.register()
        rundirs.register()  # twice is harmless
        cfg = OmegaConf.create({"a": "${fedgen.unique:}", "b": "${fedgen.unique:}"})
        assert cfg.a == cfg.b  # cached: every job of a sweep sees one sweep directory
        print(cfg.a)
        """
    )
    stamps = {
        subprocess.run(
            [sys.executable, "-c", script], capture_output=True, text=True, check=True
        ).stdout.strip()
        for _ in range(2)
    }
    assert len(stamps) == 2
    for stamp in stamps:
        micros, pid = stamp.split("-")
        assert len(micros) == 6 and pid.isdigit()
