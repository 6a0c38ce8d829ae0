"""What a run stores is what it wrote, its status says whether all of it was stored, and a
store that cannot work stops the command before any work: through the real command line."""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
import textwrap
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
