"""A whole job in-process: attacks logged with stable names, the training cache, attack logs."""

from __future__ import annotations

import csv
import multiprocessing
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from omegaconf import DictConfig

from fedgen.attacks import Arena
from fedgen.core.errors import ConfigError
from fedgen.core.records import Params
from fedgen.core.seeding import child_rng
from fedgen.data import partition
from fedgen.experiment.build import build_experiment
from fedgen.experiment.pipeline import Experiment, Outcome, run_experiment
from fedgen.reporting import attack_logs
from fedgen.tracking.trackers import InMemoryTracker

Compose = Callable[..., DictConfig]
TINY = ("dataset=tiny", "federation.num_rounds=2", "tracking=none", "figures=false")


def _assert_params_equal(got: Params, want: Params) -> None:
    """Same names in the same order, bit-identical float64 arrays."""
    assert list(got) == list(want)
    for name in want:
        np.testing.assert_array_equal(got[name], want[name], err_msg=name)


def _fed_history(run: dict[str, Any]) -> dict[str, Any]:
    """The federation's per-round metrics a run logged: name -> [(round, value), ...]."""
    return {k: v for k, v in run["metrics"].items() if k.startswith("fed/")}


def _run(compose_cfg: Compose, tmp_path: Path, *overrides: str) -> tuple[Outcome, dict[str, Any]]:
    cfg = compose_cfg(*TINY, f"cache_dir={tmp_path / 'cache'}", *overrides)
    exp = build_experiment(cfg, launch_dir=tmp_path, output_dir=tmp_path / "job")
    outcome = run_experiment(exp)
    assert isinstance(exp.tracker, InMemoryTracker)
    return outcome, exp.tracker.runs[-1]


def test_default_job_logs_every_attack_with_stable_names(
    compose_cfg: Compose, tmp_path: Path
) -> None:
    outcome, run = _run(compose_cfg, tmp_path)
    assert run["status"] == "FINISHED"
    assert run["params"]["attack"] == "mia,gmia,lia" and run["params"]["threshold"] == "0.5"
    metrics = run["metrics"]
    for name in ("mia", "gmia", "lia"):
        for key in ("precision", "recall", "f1", "accuracy", "balanced_accuracy", "auc"):
            assert f"{name}/{key}" in metrics, f"{name}/{key}"
        for key in ("advantage", "member_share", "trivial_f1", "auc_ci_low", "f1_ci_high"):
            assert f"{name}/{key}" in metrics, f"{name}/{key}"
        for cid in range(5):
            assert f"{name}/client_{cid}/auc" in metrics
        # 60 non-members cannot estimate a TPR at 1% FPR: left out, with the reason as a tag.
        assert f"{name}/tpr_at_fpr_0.01" not in metrics
        assert "non-members" in run["tags"][f"fedgen.omitted.{name}/tpr_at_fpr_0.01"]
    assert metrics["gmia/member_share"] == [(None, 0.8)]
    assert metrics["lia/sign_rule_accuracy"] == [(None, 1.0)]
    by_name = {a.name: a for a in outcome.assessments}
    assert metrics["gmia/f1"][0][1] == by_name["gmia"].metrics["f1"]
    table = list(csv.DictReader((tmp_path / "job" / "attack_logs.csv").read_text().splitlines()))
    assert [r["attack_type"] for r in table] == ["mia", "gmia", "lia"]
    assert list(table[0])[:6] == list(attack_logs.STUDY_COLUMNS)
    assert float(table[1]["f1_score"]) == by_name["gmia"].metrics["f1"]
    assert table[1]["client_count"] == "5" and table[1]["tpr_at_fpr_0.01"] == ""
    assert (
        run["artifacts"]["logs/attack_logs.csv"] == (tmp_path / "job/attack_logs.csv").read_bytes()
    )
    # The job's return value for sweepers: a metric it logged, by name.
    assert outcome.objective("fed/test_accuracy") == metrics["fed/test_accuracy"][-1][1]
    assert outcome.objective("gmia/auc") == by_name["gmia"].metrics["auc"]
    with pytest.raises(ConfigError, match="gmia/auc"):
        outcome.objective("gmia/acu")


def test_threshold_only_changes_hit_the_cache_and_seed_changes_miss(
    compose_cfg: Compose, tmp_path: Path
) -> None:
    first, run1 = _run(compose_cfg, tmp_path, "attack=gmia", "threshold=0.3")
    second, run2 = _run(compose_cfg, tmp_path, "attack=mia", "threshold=0.45")
    third, run3 = _run(compose_cfg, tmp_path, "attack=gmia", "seed=7")
    off, run4 = _run(compose_cfg, tmp_path, "attack=gmia", "cache=false")
    assert [r["tags"]["fedgen.training_cache"] for r in (run1, run2, run3, run4)] == [
        "miss",
        "hit",
        "miss",
        "off",
    ]
    for other in (second, off):
        _assert_params_equal(other.federation.final_params, first.federation.final_params)
    assert not np.array_equal(
        first.federation.final_params["coef"], third.federation.final_params["coef"]
    )
    # Every round's federation metrics, as the tracker got them: the same whether the
    # federation was trained (run1), read back from the cache (run2) or trained again without
    # it (run4), and equal to the trained record's own per-round metrics.
    rounds = first.federation.rounds
    assert [r.round for r in rounds] == [1, 2]
    expected = {name: [(r.round, r.metrics[name]) for r in rounds] for name in rounds[0].metrics}
    assert {"fed/test_accuracy", "fed/train_loss", "fed/client_4/test_loss"} <= set(expected)
    for run in (run1, run2, run4):
        assert _fed_history(run) == expected
    assert _fed_history(run3) != expected
    assert len(list((tmp_path / "cache").glob("*.npz"))) == 2


def test_a_corrupt_cache_entry_is_retrained(compose_cfg: Compose, tmp_path: Path) -> None:
    first, _ = _run(compose_cfg, tmp_path, "attack=gmia")
    (entry,) = (tmp_path / "cache").glob("*.npz")
    entry.write_bytes(entry.read_bytes()[:100])
    again, run = _run(compose_cfg, tmp_path, "attack=gmia")
    assert run["tags"]["fedgen.training_cache"] == "miss"
    _assert_params_equal(again.federation.final_params, first.federation.final_params)
    _, run = _run(compose_cfg, tmp_path, "attack=gmia")
    assert run["tags"]["fedgen.training_cache"] == "hit"


def _rebuilt_arena(
    compose_cfg: Compose, tmp_path: Path, outcome: Outcome, *overrides: str
) -> tuple[Experiment, Arena]:
    """The experiment of a `_run` built again, and its arena around the run's federation."""
    cfg = compose_cfg(*TINY, *overrides)
    exp = build_experiment(cfg, launch_dir=tmp_path, output_dir=tmp_path / "again")
    cohort = exp.training.dataset.load(child_rng(exp.seed, "cohort"))
    split = partition(cohort.labels, 5, 0.2, child_rng(exp.seed, "partition"))
    assert exp.evaluation is not None
    pool = exp.evaluation.pool(split, child_rng(exp.seed, "evaluation"))
    return exp, Arena(cohort, pool, outcome.federation, exp.seed, exp.training.model)


def _append_many(path: str, worker: int) -> None:
    for i in range(10):
        row = dict.fromkeys(attack_logs.COLUMNS, "")
        row.update(attack_type="gmia", job=f"{worker}-{i}")
        attack_logs.append(Path(path), [row])


def test_concurrent_appends_keep_every_row(tmp_path: Path) -> None:
    path = tmp_path / "sweep" / "attack_logs.csv"
    ctx = multiprocessing.get_context("fork")
    procs = [ctx.Process(target=_append_many, args=(str(path), w)) for w in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    table = list(csv.DictReader(path.read_text().splitlines()))
    assert sorted(r["job"] for r in table) == sorted(
        f"{w}-{i}" for w in range(4) for i in range(10)
    )
    assert path.read_text().count("attack_type") == 1
    assert [p.name for p in path.parent.iterdir() if p.name.endswith(".tmp")] == []


def test_appending_to_a_foreign_csv_fails_clearly(tmp_path: Path) -> None:
    path = tmp_path / "attack_logs.csv"
    path.write_text("a,b\n1,2\n")
    with pytest.raises(Exception, match="other columns"):
        attack_logs.append(path, [dict.fromkeys(attack_logs.COLUMNS, "")])
    assert path.read_text() == "a,b\n1,2\n"


def test_figures_show_the_data_of_the_run(compose_cfg: Compose, tmp_path: Path) -> None:
    from fedgen.figures import pool as figure_pool
    from fedgen.figures.plots import snp_label_correlations
    from fedgen.figures.run import run_figures

    outcome, run = _run(compose_cfg, tmp_path, "figures=true")
    figure_pool.wait()
    expected = {
        "gradient_norm_histogram", "snp_pca", "top_snp_correlations", "training_curves", "roc",
        "threshold_curves_mia", "threshold_curves_gmia", "threshold_curves_lia",
        "client_auc",
    }  # fmt: skip
    logged = {k for k in run["artifacts"] if k.startswith("figures/")}
    assert logged == {f"figures/{name}.png" for name in expected}
    for name in expected:
        png = (tmp_path / "job" / "figures" / f"{name}.png").read_bytes()
        assert png[:8] == b"\x89PNG\r\n\x1a\n" and run["artifacts"][f"figures/{name}.png"] == png
    # The data behind the figures, rebuilt from the same run.
    exp, arena = _rebuilt_arena(compose_cfg, tmp_path, outcome)
    cohort, pool = arena.cohort, arena.pool
    tasks = run_figures(arena, exp.attacks, outcome.assessments, "s")
    plots = {t.function: t.draw() for t in tasks}
    # The histogram is G-MIA's own scores at its own threshold.
    gmia = next(a for a in outcome.assessments if a.name == "gmia")
    hist = plots["gradient_norm_histogram"].data
    assert hist["threshold"] == gmia.threshold == 0.5
    edges = hist["bin_edges"]
    assert edges[0] == gmia.result.scores.min() and edges[-1] == gmia.result.scores.max()
    assert hist["member_counts"].sum() == pool.is_member.sum()
    assert hist["non_member_counts"].sum() == (~pool.is_member).sum()
    np.testing.assert_array_equal(
        hist["member_counts"], np.histogram(gmia.result.scores[gmia.truth], edges)[0]
    )
    r = snp_label_correlations(cohort.genotypes, cohort.labels)
    top = plots["top_snp_correlations"].data
    assert list(top["names"]) == [cohort.snp_names[i] for i in np.argsort(-np.abs(r))[:10]]
    curves = plots["roc_curves"].data["curves"]
    for a in outcome.assessments:
        logged_auc = run["metrics"][f"{a.name}/auc"][0][1]
        assert curves[a.name]["auc"] == pytest.approx(logged_auc, abs=1e-12)
        assert np.trapezoid(curves[a.name]["tpr"], curves[a.name]["fpr"]) == pytest.approx(
            logged_auc, abs=1e-9
        )
    # Without G-MIA there is no gradient-norm histogram; the others follow the attacks run.
    mia = [(x, a) for x, a in zip(exp.attacks, outcome.assessments, strict=True) if x.name == "mia"]
    names = [t.function for t in run_figures(arena, [mia[0][0]], [mia[0][1]], "s")]
    assert "gradient_norm_histogram" not in names
    assert names.count("threshold_curves") == 1 and "roc_curves" in names


def test_each_attack_runs_at_its_own_threshold(compose_cfg: Compose, tmp_path: Path) -> None:
    outcome, run = _run(compose_cfg, tmp_path, "attack.gmia.threshold=0.3", "threshold=0.45")
    by_name = {a.name: a for a in outcome.assessments}
    assert {k: a.threshold for k, a in by_name.items()} == {"mia": 0.45, "gmia": 0.3, "lia": 0.45}
    for a in outcome.assessments:
        called = a.result.predict(a.threshold)
        assert run["metrics"][f"{a.name}/recall"] == [(None, np.mean(called[a.truth]))]
    gmia = by_name["gmia"]
    assert gmia.metrics["recall"] == np.mean(gmia.result.scores[gmia.truth] <= 0.3)
    table = list(csv.DictReader((tmp_path / "job" / "attack_logs.csv").read_text().splitlines()))
    assert {r["attack_type"]: r["threshold"] for r in table} == {
        "mia": "0.45",
        "gmia": "0.3",
        "lia": "0.45",
    }
    assert run["params"]["attack.gmia.threshold"] == "0.3"
    assert run["params"]["attack.mia.threshold"] == "0.45"


def test_a_process_reuses_its_last_simulated_cohort_read_only(tmp_path: Path) -> None:
    """The jobs of a sweep that differ only after training share the simulated cohort; no job
    can change it (its arrays are read-only); another seed or source makes another."""
    from fedgen.data import CsvCohort, SyntheticCohort
    from fedgen.experiment import pipeline

    source = SyntheticCohort(n_individuals=40, n_snps=6, n_causal=2, n_reference=8)
    first = pipeline._load_cohort(source, 1)
    again = pipeline._load_cohort(
        SyntheticCohort(n_individuals=40, n_snps=6, n_causal=2, n_reference=8), 1
    )
    assert again is first
    assert first.reference is not None
    for array in (first.genotypes, first.labels, first.reference.genotypes):
        assert not array.flags.writeable
    with pytest.raises(ValueError):
        first.genotypes[0, 0] = 2
    other = pipeline._load_cohort(source, 2)
    assert other is not first and not np.array_equal(other.genotypes, first.genotypes)
    fresh = source.load(pipeline.child_rng(1, "cohort"))
    assert np.array_equal(pipeline._load_cohort(source, 1).genotypes, fresh.genotypes)
    # The kept cohort's digest is kept with it, and is the digest of its arrays.
    reused = pipeline._load_cohort(source, 1)
    assert pipeline.cohort_digest(reused) == pipeline.cohort_digest(fresh)
    assert pipeline.cohort_digest(reused) == pipeline.cohort_digest(reused)
    path = tmp_path / "c.csv"
    path.write_text("s1,s2,label\n0,1,0\n2,1,1\n1,0,0\n0,2,1\n")
    csv_source = CsvCohort(path=str(path))
    assert pipeline._load_cohort(csv_source, 1) is not pipeline._load_cohort(csv_source, 1)
