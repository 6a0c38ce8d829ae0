"""What a run stores is what it wrote, its status says whether all of it was stored, and a
store that cannot work stops the command before any work: through the real command line."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import pytest

from fedgen.reporting import attack_logs
from tests.test_cli import TINY, fedgen

QUICK = [*TINY, "figures=false", "attack=gmia"]


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
