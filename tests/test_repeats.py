"""Repeats: runs differing only in seed are one group, summarised as mean ± SD across seeds."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import numpy as np
import pytest

from fedgen.reporting.repeats import has_repeats, repeat_groups, repeats_table
from fedgen.reporting.report import RunRecord, write_summary


def run(
    run_id: str, seed: str, threshold: str = "0.5", auc: float = 0.6, **extra: str
) -> RunRecord:
    params = {"seed": seed, "threshold": threshold, "attack": "gmia", "tracking.uri": run_id}
    params.update(extra)
    metrics = {
        "gmia/auc": auc,
        "gmia/advantage": auc / 3,
        "gmia/tpr_at_fpr_0.01": auc / 10,
        "gmia/auc_ci_low": auc - 0.05,
        "gmia/auc_ci_high": auc + 0.05 + int(seed) / 100,
        "gmia/f1": 0.5,
    }
    return RunRecord(run_id, f"{run_id}", params, metrics)


SEEDED = [run("a", "1", auc=0.61), run("b", "2", auc=0.7), run("c", "3", auc=0.52)]


def test_runs_differing_only_in_seed_are_one_group_and_threshold_splits() -> None:
    other = run("d", "1", threshold="0.3", auc=0.9)
    groups = repeat_groups([*SEEDED, other])
    assert [(g.param("threshold"), g.n) for g in groups] == [("0.3", 1), ("0.5", 3)]
    assert [r.run_id for r in groups[1].records] == ["a", "b", "c"]  # by seed
    # any other param differing makes another group too
    assert len(repeat_groups([*SEEDED, run("e", "1", evaluation="x")])) == 2


def test_mean_and_sd_equal_numpys() -> None:
    rows = repeats_table([*SEEDED, run("d", "1", threshold="0.3", auc=0.9)])
    row = next(r for r in rows if r["threshold"] == "0.5")
    assert (row["n_runs"], row["seeds"], row["run_ids"]) == ("3", "1 2 3", "a b c")
    for m, scale in (("auc", 1), ("advantage", 3), ("tpr_at_fpr_0.01", 10)):
        values = np.array([0.61, 0.7, 0.52]) / scale
        assert float(row[f"{m}_mean"]) == pytest.approx(np.mean(values), abs=1e-15)
        assert float(row[f"{m}_sd"]) == pytest.approx(np.std(values, ddof=1), abs=1e-15)
        assert row[f"{m}_n"] == "3"
    widths = [0.1 + s / 100 for s in (1, 2, 3)]
    assert float(row["auc_ci_width_mean"]) == pytest.approx(np.mean(widths))
    assert row["auc_ci"] == "[0.560, 0.670] [0.650, 0.770] [0.470, 0.600]"
    single = next(r for r in rows if r["threshold"] == "0.3")
    assert single["n_runs"] == "1" and single["auc_sd"] == ""  # no SD of one run


def test_the_same_config_run_twice_is_counted_not_merged() -> None:
    twice = [run("a", "1", auc=0.6), run("b", "1", auc=0.8)]
    assert has_repeats(twice)
    (row,) = repeats_table(twice)
    assert (row["n_runs"], row["seeds"]) == ("2", "1 1")
    assert float(row["auc_mean"]) == pytest.approx(0.7)


def test_repeats_csv_is_written_only_when_a_config_repeats(tmp_path: Path) -> None:
    paths = write_summary(tmp_path / "rep", SEEDED, "t")
    assert tmp_path / "rep" / "repeats.csv" in paths
    table = list(csv.DictReader(io.StringIO((tmp_path / "rep" / "repeats.csv").read_text())))
    assert table == repeats_table(SEEDED)
    assert "## Repeats" in (tmp_path / "rep" / "summary.md").read_text()
    assert '<table class="repeats">' in (tmp_path / "rep" / "report.html").read_text()
    plain = [run("a", "1", threshold="0.3"), run("b", "1", threshold="0.5")]
    assert not has_repeats(plain)
    paths = write_summary(tmp_path / "plain", plain, "t")
    assert not (tmp_path / "plain" / "repeats.csv").exists()
    assert all(p.name != "repeats.csv" for p in paths)
    assert "Repeats" not in (tmp_path / "plain" / "summary.md").read_text()
