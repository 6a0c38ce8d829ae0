"""Sweep summaries: written for the completed jobs, logged to the parent run, and reproduced
by `fedgen compare` from the MLflow store alone."""

from __future__ import annotations

import csv
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from fedgen import __version__ as fedgen_version
from fedgen.reporting.report import (
    RunRecord,
    load_run_json,
    metric_vs_param,
    prf_vs_threshold,
    run_figure_names,
)
from tests.test_cli import TINY, fedgen
from tests.test_report import check_page, render_check

SUMMARY = {
    "summary.csv",
    "summary.md",
    "metrics_vs_threshold.png",
    "prf_vs_threshold.png",
    "report.html",
}


def _runs(tmp_path: Path) -> list:  # type: ignore[type-arg]
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("fedgen")
    assert experiment is not None
    return list(client.search_runs([experiment.experiment_id]))


@pytest.mark.slow
def test_sweep_summary_and_compare_agree(tmp_path: Path) -> None:
    out = fedgen(
        tmp_path, *TINY, "figures=false", "hydra.sweep.dir=s",
        "attack=mia,gmia", "threshold=0.3,0.45,0.5", "--multirun",
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    sweep = tmp_path / "s"
    assert {p.name for p in sweep.iterdir()} >= SUMMARY
    table = list(csv.DictReader((sweep / "summary.csv").read_text().splitlines()))
    assert len(table) == 6
    assert all(r["started"] and r["sweep_dir"] == str(sweep.resolve()) for r in table)
    assert not (sweep / "repeats.csv").exists()  # no config ran twice
    assert {(r["attack"], r["threshold"]) for r in table} == {
        (a, t) for a in ("mia", "gmia") for t in ("0.3", "0.45", "0.5")
    }
    html = (sweep / "report.html").read_text()
    assert html.count("data:image/png;base64,") == 2 and "http://" not in html
    # The leakage report: the settings, a verdict per attack, captions, every tag closed.
    assert "<th>Cohort (individuals)</th>" in html and "<li>threshold: 0.3, 0.45, 0.5</li>" in html
    assert f"<td>{fedgen_version}</td>" in html
    verdicts = html[html.index("<h2>Verdict</h2>") : html.index("<h2>Leakage per run")]
    assert (
        verdicts.count("<li><b>") == 2 and "The public (anyone given the final model)" in verdicts
    )
    assert "<b>Figure 2.</b> Precision, recall and F1" in html
    assert check_page(sweep / "report.html").errors == []
    for job in sorted(p.parent for p in sweep.glob("*/run.json")):  # each job's own report
        assert json.loads((job / "run.json").read_text())["version"] == fedgen_version
        assert check_page(job / "report.html").errors == []  # figures=false: none linked
    (parent,) = [r for r in _runs(tmp_path) if r.data.tags.get("fedgen.role") == "sweep"]
    assert parent.info.status == "FINISHED"
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    logged = {Path(a.path).name for a in client.list_artifacts(parent.info.run_id, "summary")}
    assert SUMMARY | {"attack_logs.csv"} <= logged
    # The same table from the store alone, through MLflow's search API.
    compare = subprocess.run(
        [sys.executable, "-m", "fedgen.reporting.compare", "--sweep-dir", "s", "--output", "cmp"],
        cwd=tmp_path, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert compare.returncode == 0, compare.stderr
    # MLflow's start time is its own (milliseconds apart from run.json's): all else agrees.
    known = [{k: v for k, v in r.items() if k != "started"} for r in table]
    again = list(csv.DictReader((tmp_path / "cmp" / "summary.csv").read_text().splitlines()))
    assert [{k: v for k, v in r.items() if k != "started"} for r in again] == known
    assert all(r["started"] for r in again)
    assert (tmp_path / "cmp" / "summary.md").read_text().splitlines()[0] in compare.stdout


@pytest.mark.slow
def test_a_failed_job_does_not_prevent_the_summary_of_the_others(tmp_path: Path) -> None:
    # aux_fraction 0.999 leaves label inference no target on the tiny cohort: that job fails.
    out = fedgen(
        tmp_path, *TINY, "figures=false", "hydra.sweep.dir=s", "attack=lia",
        "attack.lia.aux_fraction=0.5,0.999", "--multirun",
    )  # fmt: skip
    assert out.returncode != 0
    table = list(csv.DictReader((tmp_path / "s" / "summary.csv").read_text().splitlines()))
    assert len(table) == 1 and table[0]["attack"] == "lia"
    runs = _runs(tmp_path)
    statuses = sorted((r.data.tags.get("fedgen.role", "job"), r.info.status) for r in runs)
    assert statuses == [("job", "FAILED"), ("job", "FINISHED"), ("sweep", "FAILED")]


@pytest.mark.slow
def test_a_job_report_links_exactly_the_figures_the_job_draws(tmp_path: Path) -> None:
    attacks = "attack=[mia,gmia,lrt,phenotype,label_counts,alignment,lia]"
    out = fedgen(tmp_path, *TINY, attacks, "tracking=none", "hydra.run.dir=job")
    assert out.returncode == 0, out.stderr
    job = tmp_path / "job"
    page = (job / "report.html").read_text()
    linked = re.findall(r'src="figures/([^"]+)\.png"', page)
    assert sorted(linked) == sorted(p.stem for p in (job / "figures").glob("*.png"))
    record = json.loads((job / "run.json").read_text())
    assert record["version"] == fedgen_version
    for attack in ("mia", "gmia", "lrt", "phenotype", "label_counts", "alignment", "lia"):
        assert f"<li><b>{attack}</b>" in page
    assert "infers the phenotype of a known participant" in page
    assert "attributes a known participant to its client" in page
    assert check_page(job / "report.html").errors == []
    seen = render_check(job / "report.html", tmp_path / "rendered")
    assert seen["images"] == len(run_figure_names(load_run_json(job / "run.json")))
    assert seen["broken"] == [] and seen["overflow"] <= 0 and seen["wide"] == []
    assert seen["pdf_pages"] >= 2


def _records(sweep: Path) -> list:  # type: ignore[type-arg]
    return [load_run_json(p) for p in sorted(sweep.glob("*/run.json"))]


@pytest.mark.slow
def test_clients_by_threshold_sweep_draws_a_line_per_threshold_and_reruns_are_repeats(
    tmp_path: Path,
) -> None:
    sweep = ("federation.num_clients=2,5,10", "threshold=0.3,0.5", "attack=gmia", "--multirun")
    out = fedgen(tmp_path, *TINY, "figures=false", "hydra.sweep.dir=s1", *sweep)
    assert out.returncode == 0, out.stderr
    records = _records(tmp_path / "s1")
    assert len(records) == 6
    # Each job is named by the values its sweep chose, first.
    for r in records:
        clients, threshold = r.params["federation.num_clients"], r.params["threshold"]
        assert r.run_name.startswith(f"num_clients={clients} · gmia t={threshold} · "), r.run_name
    # The summary figure's data: one line per threshold, one run per point, never a mean.
    plot = metric_vs_param(records, "federation.num_clients", "")
    assert sorted(plot.data) == ["gmia threshold=0.3", "gmia threshold=0.5"]
    for label, line in plot.data.items():
        threshold = label.rsplit("=", 1)[1]
        assert list(line["x"]) == [2.0, 5.0, 10.0] and list(line["n"]) == [1, 1, 1]
        for x, auc, advantage in zip(line["x"], line["auc"], line["advantage"], strict=True):
            (run,) = [
                r
                for r in records
                if r.params["threshold"] == threshold
                and float(r.params["federation.num_clients"]) == x
            ]
            assert (auc, advantage) == (run.metrics["gmia/auc"], run.metrics["gmia/advantage"])
    assert (tmp_path / "s1" / "metrics_vs_federation_num_clients.png").is_file()
    # ... and against the threshold: one line per number of clients, over both thresholds
    plot = metric_vs_param(records, "threshold", "")
    assert sorted(plot.data) == [f"gmia federation.num_clients={c}" for c in (10, 2, 5)]
    assert all(list(line["x"]) == [0.3, 0.5] for line in plot.data.values())
    table = list(csv.DictReader((tmp_path / "s1" / "summary.csv").read_text().splitlines()))
    assert sorted((r["federation.num_clients"], r["threshold"]) for r in table) == sorted(
        (c, t) for c in ("2", "5", "10") for t in ("0.3", "0.5")
    )
    # The same sweep again into the same store: its own summary, and in `fedgen compare` its
    # runs are kept apart (default) or shown as repeats of n=2 with a warning, never merged.
    out = fedgen(tmp_path, *TINY, "figures=false", "hydra.sweep.dir=s2", *sweep)
    assert out.returncode == 0, out.stderr
    assert (
        len(list(csv.DictReader((tmp_path / "s2" / "summary.csv").read_text().splitlines()))) == 6
    )
    assert not (tmp_path / "s2" / "repeats.csv").exists()
    compare = [sys.executable, "-m", "fedgen.reporting.compare"]
    run = subprocess.run(
        [*compare, "--output", "apart"],
        cwd=tmp_path, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert run.returncode == 0 and run.stderr == "", run.stderr
    apart = list(csv.DictReader((tmp_path / "apart" / "summary.csv").read_text().splitlines()))
    assert (
        sorted(r["sweep"] for r in apart)
        == [str(tmp_path.name) + "/s1"] * 6 + [str(tmp_path.name) + "/s2"] * 6
    )
    assert len({r["run_id"] for r in apart}) == 12
    assert not (tmp_path / "apart" / "repeats.csv").exists()
    run = subprocess.run(
        [*compare, "--output", "pooled", "--group-by", "config"],
        cwd=tmp_path, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    assert run.stderr.startswith("fedgen: warning: 6 configuration(s) ran in 2 different sweeps")
    repeats = list(csv.DictReader((tmp_path / "pooled" / "repeats.csv").read_text().splitlines()))
    assert len(repeats) == 6 and {r["n_runs"] for r in repeats} == {"2"}
    # and again into the same output: refused, not overwritten
    run = subprocess.run(
        [*compare, "--output", "pooled"],
        cwd=tmp_path, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert run.returncode == 2 and "--force" in run.stderr


def test_an_attacks_own_threshold_that_follows_the_top_level_one_is_one_axis() -> None:
    # What a job logs: attack.<name>.threshold resolves to ${threshold} unless set apart.
    def job(clients: str, threshold: str, own: str | None = None) -> RunRecord:
        params = {"attack": "gmia", "seed": "42", "federation.num_clients": clients}
        params |= {"threshold": threshold, "attack.gmia.threshold": own or threshold}
        value = float(clients) / 100 + float(threshold)
        metrics = {f"gmia/{m}": value for m in ("auc", "advantage", "tpr_at_fpr_0.01")}
        metrics |= {f"gmia/{m}": value for m in ("precision", "recall", "f1", "trivial_f1")}
        return RunRecord(f"{clients}-{threshold}", "", params, metrics)

    records = [job(c, t) for c in ("2", "5") for t in ("0.3", "0.5")]
    for plot in (metric_vs_param(records, "threshold", ""), prf_vs_threshold(records, "")):
        assert sorted(plot.data) == [
            "gmia federation.num_clients=2",
            "gmia federation.num_clients=5",
        ]
        for label, line in plot.data.items():
            clients = float(label.rsplit("=", 1)[1])
            assert list(line["x"]) == [0.3, 0.5] and list(line["n"]) == [1, 1]
            drawn = line["auc"] if "auc" in line else line["f1"]
            assert list(drawn) == [clients / 100 + 0.3, clients / 100 + 0.5]
    plot = metric_vs_param(records, "federation.num_clients", "")
    assert sorted(plot.data) == ["gmia threshold=0.3", "gmia threshold=0.5"]
    # set apart from the top-level threshold, the attack's own is a line of its own
    apart = [*records, job("2", "0.3", own="0.9"), job("5", "0.3", own="0.9")]
    plot = metric_vs_param(apart, "federation.num_clients", "")
    assert "gmia attack.gmia.threshold=0.9 threshold=0.3" in plot.data
