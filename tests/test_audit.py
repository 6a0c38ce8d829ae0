"""The empirical epsilon lower bound against mechanisms whose epsilon is known."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.stats import binomtest

from fedgen.evaluation.audit import clopper_pearson, epsilon_from_rates, epsilon_lower_bound


def _randomised_response(eps: float, n: int, rng: np.random.Generator) -> tuple[np.ndarray, ...]:
    """eps-DP membership signal: members say 1 w.p. e^eps/(1+e^eps), others w.p. 1/(1+e^eps)."""
    truth = rng.random(n) < 0.5
    p_yes = math.exp(eps) / (1 + math.exp(eps))
    says = np.where(truth, rng.random(n) < p_yes, rng.random(n) < 1 - p_yes)
    return says.astype(np.float64), truth


@pytest.mark.parametrize("eps", [0.0, 0.5, 1.0, 2.0, 4.0])
def test_bound_never_exceeds_the_true_epsilon_and_is_tight_for_large_pools(eps: float) -> None:
    bounds = []
    for seed in range(5):
        scores, truth = _randomised_response(eps, 20_000, np.random.default_rng(seed))
        out = epsilon_lower_bound(scores, truth, np.random.default_rng(100 + seed), alpha=0.05)
        bounds.append(out["epsilon_lower_bound"])
    assert max(bounds) <= eps
    if eps >= 1.0:
        assert min(bounds) >= 0.8 * eps  # the best attack on randomised response is the response


def test_no_signal_gives_a_bound_near_zero() -> None:
    rng = np.random.default_rng(0)
    scores, truth = rng.random(10_000), rng.random(10_000) < 0.8
    assert epsilon_lower_bound(scores, truth, rng)["epsilon_lower_bound"] < 0.2


def test_perfect_separation_is_limited_by_the_pool_size() -> None:
    truth = np.r_[np.ones(500, bool), np.zeros(500, bool)]
    scores = truth.astype(np.float64)
    out = epsilon_lower_bound(scores, truth, np.random.default_rng(0))
    # ~250 members and ~250 non-members measured, none wrong: FPR <= 1 - (alpha/2)^(1/250).
    assert 3.5 < out["epsilon_lower_bound"] < math.log(250)
    assert out["audit_tpr_low"] > 0.98


@given(st.integers(0, 200), st.integers(1, 200))
@settings(max_examples=60, deadline=None)
def test_clopper_pearson_matches_scipy(k: int, extra: int) -> None:
    n = k + extra
    low, high = clopper_pearson(k, n, 0.05)
    ci = binomtest(k, n).proportion_ci(confidence_level=0.95, method="exact")
    assert low == pytest.approx(ci.low, abs=1e-9)
    assert high == pytest.approx(ci.high, abs=1e-9)


# FPR away from subnormals: (TPR - delta) / FPR would magnify rounding in TPR - delta.
@given(st.floats(0.0, 5.0), st.one_of(st.just(0.0), st.floats(1e-6, 1.0)), st.floats(0.0, 0.1))
def test_rates_allowed_by_eps_delta_dp_give_at_most_eps(
    eps: float, fpr: float, delta: float
) -> None:
    tpr = min(1.0, math.exp(eps) * fpr + delta, 1 - (1 - fpr - delta) * math.exp(-eps))
    tpr = max(tpr, 0.0)
    assert epsilon_from_rates(tpr, fpr, delta) <= eps + 1e-6
