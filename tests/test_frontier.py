"""The privacy-utility frontier: best leakage per observer against utility, with epsilon."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import numpy as np

from fedgen.reporting.frontier import frontier_plot, frontier_table, is_privacy_sweep
from fedgen.reporting.report import RunRecord, write_summary


def _run(sigma: float, eps: float | None, server_auc: float, public_auc: float) -> RunRecord:
    params = {
        "defense.client_dp.noise_multiplier": repr(sigma),
        "attack": "gmia_server,gmia_public,mia_public,lia",
        "attack.gmia_server.model": "client",
        "attack.gmia_public.model": "global",
        "attack.mia_public.model": "global",
        "attack.lia.aux_fraction": "0.5",
    }
    metrics = {
        "fed/test_accuracy": 0.6 - sigma / 100,
        "fed/test_loss": 0.7,
        "gmia_server/auc": server_auc,
        "gmia_server/tpr_at_fpr_0.01": server_auc / 10,
        "gmia_public/auc": public_auc,
        "mia_public/auc": public_auc - 0.01,
        "lia/auc": 1.0,  # label inference is no membership leakage: never on the frontier
    }
    if eps is not None:
        metrics["privacy/epsilon"] = eps
    return RunRecord(f"id{sigma}", f"sigma={sigma}", params, metrics)


RECORDS = [_run(0.0, None, 0.9, 0.8), _run(1.0, 20.0, 0.6, 0.55), _run(4.0, 1.5, 0.51, 0.5)]


def test_table_takes_the_best_attack_per_observer_and_ignores_label_inference() -> None:
    rows = {row["run_name"]: row for row in frontier_table(RECORDS)}
    assert float(rows["sigma=0.0"]["best_server_auc"]) == 0.9
    assert float(rows["sigma=0.0"]["best_public_auc"]) == 0.8  # gmia_public beats mia_public
    assert rows["sigma=0.0"]["best_public_tpr_at_fpr_0.01"] == ""
    assert math.isinf(float(rows["sigma=0.0"]["epsilon"]))
    assert float(rows["sigma=4.0"]["epsilon"]) == 1.5
    # Ordered from no guarantee to the strongest one.
    assert [r["run_name"] for r in frontier_table(RECORDS)] == [
        "sigma=0.0",
        "sigma=1.0",
        "sigma=4.0",
    ]


def test_plot_draws_one_series_per_observer_with_the_table_numbers() -> None:
    plot = frontier_plot(RECORDS, "3 runs")
    assert set(plot.data) == {"server", "public"}
    np.testing.assert_array_equal(plot.data["server"]["auc"], [0.9, 0.6, 0.51])
    np.testing.assert_allclose(plot.data["public"]["accuracy"], [0.6, 0.59, 0.56])


def test_summary_of_a_defense_sweep_writes_the_frontier(tmp_path: Path) -> None:
    assert is_privacy_sweep(RECORDS)
    paths = write_summary(tmp_path, RECORDS, title="sweep")
    assert tmp_path / "frontier.csv" in paths
    assert (tmp_path / "privacy_utility_frontier.png").stat().st_size > 1000
    with (tmp_path / "frontier.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 3
    assert "privacy_utility_frontier" in (tmp_path / "report.html").read_text()


def test_a_sweep_without_defenses_gets_no_frontier(tmp_path: Path) -> None:
    plain = [
        RunRecord(
            r.run_name,
            r.run_id,
            {k: v for k, v in r.params.items() if "defense" not in k},
            r.metrics,
        )
        for r in RECORDS
    ]
    assert not is_privacy_sweep(plain)
    paths = write_summary(tmp_path, plain, title="sweep")
    assert tmp_path / "frontier.csv" not in paths
