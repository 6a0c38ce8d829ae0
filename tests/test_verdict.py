"""The report's plain words: verdicts per attack and observer, the settings header, captions."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fedgen.reporting.report import RunRecord, swept_params
from fedgen.reporting.verdict import (
    ASSUMED_LIA,
    attack_kind,
    caption,
    fixed_params,
    key_settings,
    observer_of,
    percent,
    run_note,
    sweep_headlines,
    sweep_verdicts,
    verdicts,
)


def run(attack: str, metrics: dict[str, float], **params: str) -> RunRecord:
    return RunRecord("id", "name", {"attack": attack, **params}, metrics)


def membership(auc: float, low: float, high: float, tpr: float | None = 0.21) -> dict[str, float]:
    out = {"mia/auc": auc, "mia/auc_ci_low": low, "mia/auc_ci_high": high}
    return out | ({"mia/tpr_at_fpr_0.01": tpr} if tpr is not None else {})


SERVER = {"attack.mia.observer": "server", "attack.mia._target_": "fedgen.attacks.ConfidenceMIA"}


def test_membership_verdict_names_the_observer_the_rate_and_chance() -> None:
    record = run("mia", membership(0.93, 0.91, 0.94), **SERVER)
    assert verdicts(record) == [
        (
            "mia",
            "At 1% false positives the server identifies 21% of participants (chance: 1%); "
            "AUC 0.93 [0.91, 0.94].",
        )
    ]


def test_an_interval_holding_chance_is_no_measurable_leakage() -> None:
    (_, text), *_ = verdicts(run("mia", membership(0.52, 0.49, 0.55, 0.012), **SERVER))
    assert text == (
        "At 1% false positives the server identifies 1.2% of participants (chance: 1%); "
        "AUC 0.52 [0.49, 0.55]; the interval holds 0.5: no measurable membership leakage."
    )
    (_, below), *_ = verdicts(run("mia", membership(0.40, 0.35, 0.45), **SERVER))
    assert "below chance" in below and "no measurable" not in below


def test_a_pool_too_small_for_a_rate_says_so_and_keeps_the_auc() -> None:
    (_, text), *_ = verdicts(
        run("mia", membership(0.7, 0.6, 0.8, tpr=None), **{"attack.mia.observer": "public"})
    )
    assert text == (
        "The public (anyone given the final model) separates participants from "
        "non-participants with AUC 0.70 [0.60, 0.80] (chance: 0.5); too few non-participants "
        "in the pool for a rate at 1% false positives."
    )
    (_, bare), *_ = verdicts(run("mia", {"mia/auc": 0.7, "mia/tpr_at_fpr_0.01": 0.05}))
    assert "AUC 0.70 (no bootstrap interval)" in bare and "the attacker (mia)" in bare


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({"attack.mia.observer": "peer"}, "a peer (another participant)"),
        ({"attack.mia.model": "client"}, "the server"),  # runs from before `observer`
        ({"attack.mia.model": "global"}, "the public (anyone given the final model)"),
        ({}, ""),
    ],
)
def test_observer_of_current_and_older_runs(params: dict[str, str], expected: str) -> None:
    assert observer_of(run("mia", {}, **params), "mia") == expected


def test_label_attacks_infer_the_phenotype_beside_the_population_score() -> None:
    metrics = {
        "phenotype/auc": 0.87,
        "phenotype/auc_ci_low": 0.85,
        "phenotype/auc_ci_high": 0.90,
        "phenotype/population_auc": 0.62,
        "lia/auc": 0.95,
        "lia/auc_ci_low": 0.9,
        "lia/auc_ci_high": 0.99,
    }
    params = {
        "attack.phenotype._target_": "fedgen.attacks.phenotype.PhenotypeAttack",
        "attack.phenotype.observer": "server",
        "attack.lia._target_": "fedgen.attacks.GradientLIA",
    }
    record = run("phenotype,lia", metrics, **params)
    assert [attack_kind(record, a) for a in ("phenotype", "lia")] == ["label", "label"]
    assert verdicts(record) == [
        (
            "phenotype",
            "The server infers the phenotype of a known participant with AUC 0.87 "
            "[0.85, 0.90] (a polygenic score from the population: 0.62).",
        ),
        (
            "lia",
            f"{ASSUMED_LIA[0].upper()}{ASSUMED_LIA[1:]} infers the phenotype of a known "
            "participant with AUC 0.95 [0.90, 0.99] (chance: 0.5).",
        ),
    ]
    weak = run("phenotype", {**metrics, "phenotype/auc_ci_low": 0.6}, **params)
    assert verdicts(weak)[0][1].endswith("; no better than the population's polygenic score.")


def test_counts_and_attribution_beside_their_trivial_guesses() -> None:
    metrics = {
        "label_counts/cases_mae": 3.21,
        "label_counts/cases_trivial_mae": 12.5,
        "alignment/auc": 0.6,
        "alignment/auc_ci_low": 0.55,
        "alignment/auc_ci_high": 0.65,
        "alignment/client_accuracy": 0.64,
        "alignment/client_chance": 0.2,
    }
    params = {
        "attack.label_counts._target_": "fedgen.attacks.label_counts.LabelCountAttack",
        "attack.label_counts.observer": "server",
        "attack.alignment._target_": "fedgen.attacks.alignment.AlignmentMIA",
        "attack.alignment.observer": "server",
    }
    lines = verdicts(run("label_counts,alignment", metrics, **params))
    assert [a for a, _ in lines] == ["label_counts", "alignment", "alignment"]
    assert lines[0][1] == (
        "The server estimates each client's number of cases to within 3.2 on average "
        "(guessing from the population prevalence: 12.5)."
    )
    assert "too few non-participants" in lines[1][1]  # no TPR logged
    assert lines[2][1] == (
        "The server attributes a known participant to its client with 64% accuracy (chance: 20%)."
    )
    worse = run("label_counts", {**metrics, "label_counts/cases_mae": 20.0}, **params)
    assert verdicts(worse)[0][1].endswith("; no better than that guess.")


def test_attack_kind_falls_back_to_the_metrics_of_renamed_classes() -> None:
    gone = {"attack.x._target_": "fedgen.attacks.Gone"}
    assert attack_kind(run("x", {"x/cases_mae": 1.0}, **gone), "x") == "count"
    assert attack_kind(run("x", {"x/auc": 0.5, "x/population_auc": 0.5}, **gone), "x") == "label"
    assert attack_kind(run("x", {"x/auc": 0.5}, **gone), "x") == "membership"
    assert attack_kind(run("x", {}, **gone), "x") == ""
    assert verdicts(run("none", {})) == [] and verdicts(run("x", {}, **gone)) == []


@pytest.mark.parametrize(
    ("share", "text"), [(0.21, "21%"), (0.0995, "10%"), (0.012, "1.2%"), (0.0, "0%"), (1.0, "100%")]
)
def test_percent(share: float, text: str) -> None:
    assert percent(share) == text


@given(st.floats(0.0, 1.0))
def test_percent_is_the_share_rounded(share: float) -> None:
    shown = float(percent(share).removesuffix("%"))
    assert abs(shown - 100 * share) <= (0.5 if shown >= 10 else 0.05) + 1e-9


def sweep_run(threshold: str, seed: str, auc: float) -> RunRecord:
    params = {
        "attack": "mia",
        "threshold": threshold,
        "seed": seed,
        "federation.num_clients": "5",
        "dataset.n_individuals": "200",
        "dataset.n_snps": "50",
        "model.name": "sgd_logistic",
        "evaluation": "paper",
        "tracking.uri": f"sqlite:///{threshold}",
        **SERVER,
    }
    return RunRecord(f"{threshold}-{seed}", "n", params, membership(auc, auc - 0.02, auc + 0.02))


def test_sweep_verdicts_merge_thresholds_but_never_seeds() -> None:
    records = [sweep_run(t, s, 0.6 + int(s) / 100) for s in ("1", "2") for t in ("0.3", "0.5")]
    lines = sweep_verdicts(records, swept_params(records))
    assert [(a, s) for a, s, _ in lines] == [("mia", "seed=1"), ("mia", "seed=2")]
    assert "AUC 0.61" in lines[0][2] and "AUC 0.62" in lines[1][2]
    # Threshold-free numbers that still differ across thresholds name the threshold too.
    odd = [sweep_run("0.3", "1", 0.6), sweep_run("0.5", "1", 0.7)]
    assert [s for _, s, _ in sweep_verdicts(odd, swept_params(odd))] == [
        "threshold=0.3",
        "threshold=0.5",
    ]


def test_the_header_splits_fixed_from_swept_settings() -> None:
    records = [sweep_run(t, s, 0.6) for s in ("1", "2") for t in ("0.3", "0.5")]
    records.append(
        RunRecord("x", "x", {**records[0].params, "defense.dp.sigma": "1"}, {}, version="0.1.0")
    )
    fixed, swept = fixed_params(records), swept_params(records)
    assert swept == ["seed", "threshold"]
    assert set(fixed).isdisjoint(swept)
    assert fixed["federation.num_clients"] == "5" and "tracking.uri" not in fixed
    assert "attack" not in fixed and "defense.dp.sigma" not in fixed  # one run only
    every = set.union(*(set(r.params) for r in records))
    partial = {k for k in every if any(k not in r.params for r in records)}
    assert every - set(fixed) - set(swept) - partial <= {"attack", "tracking.uri"}
    settings = dict(key_settings(records))
    assert settings["Cohort (individuals)"] == "200" and settings["SNPs"] == "50"
    assert settings["Clients"] == "5" and settings["Model"] == "sgd_logistic"
    assert settings["Seeds"] == "1, 2" and settings["Evaluation pool"] == "paper"
    assert settings["Defenses"] == "none | dp (sigma=1)"
    assert settings["fedgen version"] == "0.1.0" and settings["git commit"] == "not recorded"


def test_a_swept_defense_option_reads_swept() -> None:
    base = {"defense.dp._target_": "x.DP", "defense.dp.clip": "1"}
    records = [run("mia", {}, **base, **{"defense.dp.sigma": s}) for s in ("0.1", "1")]
    assert dict(key_settings(records))["Defenses"] == "dp (clip=1, sigma=swept)"


def test_every_summary_figure_has_a_caption() -> None:
    names = ["roc", "prf_vs_threshold", "privacy_utility_frontier", "leakage_over_rounds"]
    names += ["metrics_vs_threshold", "threshold_curves_mia", "client_auc", "training_curves"]
    assert all(caption(n).endswith(".") for n in names)
    assert "threshold" in caption("metrics_vs_threshold") and caption("nope") == ""


def test_sweep_headlines_take_each_attacks_best_job_and_skip_per_client_metrics() -> None:
    records = [
        run("gmia,lrt", {"gmia/auc": 0.6, "gmia/client_1/auc": 0.99, "lrt/auc": 0.7}),
        run("gmia,lrt", {"gmia/auc": 0.8, "lrt/auc": 0.65, "lrt/tpr_at_fpr_0.01": 0.2}),
    ]
    assert sweep_headlines(records) == {
        "sweep/gmia/auc_max": 0.8,
        "sweep/lrt/auc_max": 0.7,
        "sweep/lrt/tpr_at_fpr_0.01_max": 0.2,
    }
    assert sweep_headlines([]) == {}


def test_run_note_is_one_bullet_per_verdict() -> None:
    record = run("mia", membership(0.9, 0.88, 0.92))
    note = run_note(record)
    assert note.startswith("- **mia**: ") and note.count("\n- ") == len(verdicts(record)) - 1
    assert run_note(run("none", {})) == ""
