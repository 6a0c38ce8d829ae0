"""Tests for evaluation.metrics against scikit-learn, brute force and no-signal/perfect oracles."""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from numpy.typing import NDArray
from sklearn import metrics as skm

from fedgen.evaluation.metrics import (
    _cuts,
    _weighted_auc_f1,
    advantage,
    attack_metrics,
    auc,
    bootstrap_intervals,
    min_negatives,
    roc,
    threshold_metrics,
    tpr_at_fpr,
    trivial_metrics,
)

PROPERTY = settings(max_examples=150, deadline=None)
Pool = tuple[NDArray[np.float64], NDArray[np.bool_]]

# Scores either from a handful of integers (heavy ties, also across classes) or continuous.
SCORE = st.one_of(
    st.integers(0, 3).map(float),
    st.floats(-1e3, 1e3, allow_nan=False, allow_subnormal=False),
)


@st.composite
def pools(draw: st.DrawFn, max_size: int = 60) -> Pool:
    """Scores and truth of a pool holding at least one member and one non-member."""
    tied = draw(st.booleans())
    n = draw(st.integers(2, max_size))
    element = st.integers(0, 3).map(float) if tied else SCORE
    scores = draw(st.lists(element, min_size=n, max_size=n))
    truth = [True, False, *draw(st.lists(st.booleans(), min_size=n - 2, max_size=n - 2))]
    order = draw(st.permutations(range(n)))
    return np.array(scores), np.array(truth)[order]


def brute_roc(s: NDArray[np.float64], t: NDArray[np.bool_]) -> list[tuple[float, float]]:
    """(FPR, TPR) of "positive if score >= th" for +inf, then each distinct score descending."""
    points = []
    for th in [math.inf, *np.unique(s)[::-1]]:
        pred = s >= th
        points.append((pred[~t].sum() / (~t).sum(), pred[t].sum() / t.sum()))
    return points


# --- roc / auc -------------------------------------------------------------------------------


@PROPERTY
@given(pools())
def test_auc_equals_sklearn(pool: Pool) -> None:
    s, t = pool
    assert auc(s, t) == pytest.approx(skm.roc_auc_score(t, s), abs=1e-12)


@PROPERTY
@given(pools())
def test_auc_of_negated_scores_is_complement(pool: Pool) -> None:
    s, t = pool
    assert auc(-s, t) == pytest.approx(1.0 - auc(s, t), abs=1e-12)


@PROPERTY
@given(pools())
def test_roc_points_area_and_sklearn(pool: Pool) -> None:
    s, t = pool
    fpr, tpr = roc(s, t)
    assert fpr.dtype == tpr.dtype == np.float64
    assert len(fpr) == len(tpr) == len(np.unique(s)) + 1  # one point per distinct score
    assert (fpr[0], tpr[0]) == (0.0, 0.0)
    assert (fpr[-1], tpr[-1]) == (1.0, 1.0)
    assert np.all(np.diff(fpr) >= 0) and np.all(np.diff(tpr) >= 0)
    assert np.trapezoid(tpr, fpr) == pytest.approx(auc(s, t), abs=1e-12)
    sk_fpr, sk_tpr, _ = skm.roc_curve(t, s, drop_intermediate=False)
    np.testing.assert_allclose(fpr, sk_fpr, atol=1e-12)
    np.testing.assert_allclose(tpr, sk_tpr, atol=1e-12)
    np.testing.assert_allclose(np.array(brute_roc(s, t)), np.c_[fpr, tpr], atol=1e-12)


@pytest.mark.parametrize("truth", [[True, True, True], [False, False]])
def test_one_class_raises_clearly(truth: list[bool]) -> None:
    s = np.arange(len(truth), dtype=float)
    for fn in (roc, auc, advantage):
        with pytest.raises(ValueError, match="both classes"):
            fn(s, truth)
    with pytest.raises(ValueError, match="both classes"):
        tpr_at_fpr(s, truth, 0.5)
    with pytest.raises(ValueError, match="both classes"):
        bootstrap_intervals(s, truth, truth, np.random.default_rng(0), 10)


def test_bad_inputs_raise() -> None:
    with pytest.raises(ValueError, match="NaN"):
        auc([0.1, np.nan], [True, False])
    with pytest.raises(ValueError, match="boolean"):
        auc([0.1, 0.2], [2, 0])
    with pytest.raises(ValueError, match="equal non-empty"):
        auc([0.1, 0.2, 0.3], [True, False])
    assert auc([0.1, 0.9], [0, 1]) == 1.0  # 0/1 integers are fine


# --- advantage / tpr_at_fpr ------------------------------------------------------------------


@PROPERTY
@given(pools())
def test_advantage_equals_brute_force(pool: Pool) -> None:
    s, t = pool
    expected = max(tpr - fpr for fpr, tpr in brute_roc(s, t))
    assert advantage(s, t) == pytest.approx(expected, abs=1e-12)
    assert advantage(s, t) >= 0.0


@PROPERTY
@given(pools(max_size=120), st.sampled_from([0.01, 0.02, 0.05, 0.1, 0.25, 0.3, 0.5, 1.0]))
def test_tpr_at_fpr_equals_brute_force(pool: Pool, max_fpr: float) -> None:
    s, t = pool
    result = tpr_at_fpr(s, t, max_fpr)
    need = math.ceil(1 / Fraction(str(max_fpr)))  # exact decimal arithmetic
    if (~t).sum() < need:
        assert result is None
    else:
        assert result == max(tpr for fpr, tpr in brute_roc(s, t) if fpr <= max_fpr)


def test_tpr_at_fpr_needs_enough_negatives() -> None:
    rng = np.random.default_rng(3)
    for n_neg, expect_none in [(99, True), (100, False)]:
        t = np.r_[np.zeros(n_neg, bool), np.ones(50, bool)]
        s = rng.normal(size=t.size) + 2 * t
        assert (tpr_at_fpr(s, t, 0.01) is None) is expect_none


def test_min_negatives() -> None:
    assert min_negatives(0.001) == 1000
    assert min_negatives(0.01) == 100
    assert min_negatives(0.3) == 4
    assert min_negatives(0.07) == 15
    assert min_negatives(1.0) == 1
    assert all(min_negatives(1 / k) == k for k in range(1, 5001))
    for bad in (0.0, -0.1, 1.5):
        with pytest.raises(ValueError, match="max_fpr"):
            min_negatives(bad)


# --- oracles ---------------------------------------------------------------------------------


def test_no_signal_scores_look_like_chance() -> None:
    rng = np.random.default_rng(2024)
    n = 20_000
    t = rng.random(n) < 0.8
    s = rng.random(n)  # independent of membership
    assert auc(s, t) == pytest.approx(0.5, abs=0.02)
    assert advantage(s, t) < 0.03
    for th in np.quantile(s, np.linspace(0.1, 0.9, 9)):
        assert threshold_metrics(s >= th, t)["precision"] == pytest.approx(0.8, abs=0.02)


def test_perfect_separation() -> None:
    t = np.r_[np.zeros(1000, bool), np.ones(300, bool)]
    s = np.r_[np.linspace(-2, 0, 1000), np.linspace(1, 3, 300)]
    assert auc(s, t) == 1.0
    assert advantage(s, t) == 1.0
    assert tpr_at_fpr(s, t, 0.001) == 1.0
    assert auc(-s, t) == 0.0
    assert advantage(-s, t) == 0.0


# --- threshold and trivial metrics -----------------------------------------------------------


def test_trivial_attack_matches_all_member_predictions() -> None:
    t = np.r_[np.ones(800, bool), np.zeros(200, bool)]
    trivial = trivial_metrics(t)
    assert trivial["member_share"] == pytest.approx(0.8)
    assert trivial["trivial_precision"] == pytest.approx(0.8)
    assert trivial["trivial_recall"] == 1.0
    assert trivial["trivial_f1"] == pytest.approx(0.8888888888888888)
    everyone = threshold_metrics(np.ones_like(t), t)
    for key in ("precision", "recall", "f1"):
        assert everyone[key] == pytest.approx(trivial[f"trivial_{key}"])
    assert trivial_metrics(np.zeros(5, bool))["trivial_recall"] == 0.0


def test_no_positive_predictions_convention() -> None:
    t = np.r_[np.ones(30, bool), np.zeros(70, bool)]
    m = threshold_metrics(np.zeros(100, bool), t)
    assert m == {
        "precision": 0.0,
        "recall": 0.0,
        "f1": 0.0,
        "accuracy": pytest.approx(0.7),
        "balanced_accuracy": pytest.approx(0.5),
    }


@PROPERTY
@given(st.lists(st.tuples(st.booleans(), st.booleans()), min_size=1, max_size=50))
def test_threshold_metrics_equal_sklearn(rows: list[tuple[bool, bool]]) -> None:
    p, t = np.array(rows).T
    m = threshold_metrics(p, t)
    assert m["precision"] == pytest.approx(skm.precision_score(t, p, zero_division=0))
    assert m["recall"] == pytest.approx(skm.recall_score(t, p, zero_division=0))
    assert m["f1"] == pytest.approx(skm.f1_score(t, p, zero_division=0))
    assert m["accuracy"] == pytest.approx(skm.accuracy_score(t, p))
    if t.any() and not t.all():  # sklearn warns on one class; ours averages present classes
        assert m["balanced_accuracy"] == pytest.approx(skm.balanced_accuracy_score(t, p))


# --- bootstrap -------------------------------------------------------------------------------


@settings(max_examples=60, deadline=None)
@given(pools(max_size=40), st.integers(0, 2**32 - 1))
def test_weighted_resample_stats_equal_sklearn(pool: Pool, seed: int) -> None:
    s, t = pool
    rng = np.random.default_rng(seed)
    p = rng.random(s.size) < 0.5
    order = np.lexsort((s, t))
    s, p, t = s[order], p[order], t[order]
    counts = rng.multinomial(s.size, np.full(s.size, 1 / s.size), size=5)
    n_neg = int((~t).sum())
    aucs, f1s, both = _weighted_auc_f1(p, n_neg, _cuts(s, n_neg), counts)
    for w, a, f, b in zip(counts, aucs, f1s, both, strict=True):
        assert f == pytest.approx(skm.f1_score(t, p, sample_weight=w, zero_division=0))
        has_both = w[t].sum() > 0 and w[~t].sum() > 0
        assert bool(b) == has_both
        if has_both:
            assert a == pytest.approx(skm.roc_auc_score(t, s, sample_weight=w), abs=1e-12)


def informative(n: int, seed: int) -> tuple[NDArray[np.float64], NDArray[np.bool_]]:
    rng = np.random.default_rng(seed)
    t = rng.random(n) < 0.6
    return rng.normal(size=n) + 0.8 * t, t


def test_bootstrap_contains_point_estimates_and_is_deterministic() -> None:
    s, t = informative(2000, 0)
    p = s > 0.4
    ci = bootstrap_intervals(s, p, t, np.random.default_rng(7), 300)
    assert set(ci) == {"auc_ci_low", "auc_ci_high", "f1_ci_low", "f1_ci_high"}
    assert ci["auc_ci_low"] < auc(s, t) < ci["auc_ci_high"]
    assert ci["f1_ci_low"] < threshold_metrics(p, t)["f1"] < ci["f1_ci_high"]
    assert ci["auc_ci_high"] - ci["auc_ci_low"] < 0.1
    assert bootstrap_intervals(s, p, t, np.random.default_rng(7), 300) == ci
    assert bootstrap_intervals(s, p, t, np.random.default_rng(8), 300) != ci
    narrow = bootstrap_intervals(s, p, t, np.random.default_rng(7), 300, level=0.5)
    assert ci["auc_ci_low"] < narrow["auc_ci_low"] < narrow["auc_ci_high"] < ci["auc_ci_high"]


def test_bootstrap_width_shrinks_with_pool_size() -> None:
    widths = []
    for n in (500, 8000):
        s, t = informative(n, 1)
        ci = bootstrap_intervals(s, s > 0.4, t, np.random.default_rng(0), 200)
        widths.append((ci["auc_ci_high"] - ci["auc_ci_low"], ci["f1_ci_high"] - ci["f1_ci_low"]))
    (auc_small, f1_small), (auc_large, f1_large) = widths
    assert auc_large < auc_small / 2  # expected ratio is sqrt(16) = 4
    assert f1_large < f1_small / 2


def test_bootstrap_edge_cases() -> None:
    s, t = np.array([0.2, 0.9]), np.array([False, True])
    assert bootstrap_intervals(s, t, t, np.random.default_rng(0), 0) == {}
    # Half the resamples of a 2-row pool lack a class; the kept ones are all perfect.
    assert bootstrap_intervals(s, t, t, np.random.default_rng(0), 50) == {
        "auc_ci_low": 1.0,
        "auc_ci_high": 1.0,
        "f1_ci_low": 1.0,
        "f1_ci_high": 1.0,
    }
    with pytest.raises(ValueError, match="level"):
        bootstrap_intervals(s, t, t, np.random.default_rng(0), 10, level=1.0)


# --- attack_metrics --------------------------------------------------------------------------


def test_attack_metrics_combines_everything_and_explains_omissions() -> None:
    t = np.r_[np.ones(1200, bool), np.zeros(800, bool)]
    s = np.random.default_rng(5).normal(size=t.size) + 0.8 * t
    p = s > 0.4
    got, omitted = attack_metrics(s, t, p, rng=np.random.default_rng(0), n_bootstrap=100)
    assert omitted == {"tpr_at_fpr_0.001": "needs >= 1000 non-members, pool has 800"}
    tpr_1pc = tpr_at_fpr(s, t, 0.01)
    assert tpr_1pc is not None and 0.0 < tpr_1pc < 1.0
    assert got == pytest.approx(
        threshold_metrics(p, t)
        | trivial_metrics(t)
        | {"auc": auc(s, t), "advantage": advantage(s, t), "tpr_at_fpr_0.01": tpr_1pc}
        | bootstrap_intervals(s, p, t, np.random.default_rng(0), 100)
    )
    _, no_boot = attack_metrics(s, t, p, rng=np.random.default_rng(0), n_bootstrap=0)
    assert set(no_boot) == {
        "tpr_at_fpr_0.001",
        "auc_ci_low",
        "auc_ci_high",
        "f1_ci_low",
        "f1_ci_high",
    }


def test_attack_metrics_one_class_pool_omits_instead_of_raising() -> None:
    t = np.ones(50, bool)
    s = np.linspace(0, 1, 50)
    got, omitted = attack_metrics(s, t, s > 0.5, rng=np.random.default_rng(0), n_bootstrap=10)
    assert set(got) == set(threshold_metrics(s > 0.5, t)) | set(trivial_metrics(t))
    assert set(omitted) == {
        "auc",
        "advantage",
        "tpr_at_fpr_0.01",
        "tpr_at_fpr_0.001",
        "auc_ci_low",
        "auc_ci_high",
        "f1_ci_low",
        "f1_ci_high",
    }
    assert all("one class" in why for why in omitted.values())
