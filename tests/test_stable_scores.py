"""Attack scores on a saturated model keep the order exact arithmetic gives (issue: float ties)."""

from __future__ import annotations

import mpmath
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.special import expit

from fedgen.attacks import ConfidenceMIA, GradientNormMIA
from fedgen.attacks.signals import gradient_norms, log_gradient_norms
from fedgen.attacks.views import MembershipView
from fedgen.core.records import FederationResult
from fedgen.evaluation.metrics import auc
from fedgen.models import MLP, SGDLogistic

mpmath.mp.dps = 50


def _saturated(n: int = 400, p: int = 300, seed: int = 0) -> tuple[MembershipView, np.ndarray]:
    """A linear model with logits in the thousands; members are fitted more confidently."""
    rng = np.random.default_rng(seed)
    X = rng.integers(0, 3, size=(n, p)).astype(np.float64)
    y = rng.integers(0, 2, size=n).astype(np.int8)
    member = rng.random(n) < 0.5
    coef = rng.normal(0.0, 1.0, p)
    # Shift each row's logit towards its label, more for members: margins of hundreds to
    # thousands, so sigmoid(margin) is exactly 1.0 and the residual exactly 0 for most rows.
    z = X @ coef
    shift = np.where(member, 3000.0, 1500.0) * rng.random(n)
    X = X + np.outer((np.where(y == 1, 1, -1) * shift - z) / (coef @ coef), coef)
    params = {"coef": coef, "intercept": np.zeros(1)}
    server = FederationResult(initial_params=params, rounds=())
    view = MembershipView(server, SGDLogistic(), X, y, np.zeros(n, np.int64))
    return view, member


def _exact_log_norms(view: MembershipView) -> list[mpmath.mpf]:
    coef = [mpmath.mpf(float(c)) for c in view.server.final_params["coef"]]
    out = []
    for x, label in zip(view.records, view.labels, strict=True):
        xs = [mpmath.mpf(float(v)) for v in x]
        z = mpmath.fsum(a * b for a, b in zip(xs, coef, strict=True))
        # |sigmoid(z) - y| = sigmoid(-margin), written without the cancellation of 1 - sigmoid.
        residual = 1 / (1 + mpmath.exp(z if label == 1 else -z))
        out.append(mpmath.log(residual) + mpmath.log(mpmath.fsum(v * v for v in xs) + 1) / 2)
    return out


def test_float_scores_collapse_into_ties_on_a_saturated_model() -> None:
    view, _ = _saturated()
    # Even with the residual kept where sigmoid(z) - 1 rounds to 0, most scaled norms
    # underflow to 0 (logits beyond ~745) and most confidences round to exactly 1.
    naive = GradientNormMIA().run(view).scores
    assert np.mean(naive == 0.0) > 0.7
    assert np.mean(ConfidenceMIA().run(view).scores == 1.0) > 0.8


def test_stable_ranks_order_candidates_as_exact_arithmetic_does() -> None:
    view, _ = _saturated(n=120, p=40)
    exact = _exact_log_norms(view)
    stable = -GradientNormMIA().run(view).ranks  # log ||g||
    for got, want in zip(stable, exact, strict=True):
        assert got == pytest.approx(float(want), rel=1e-9, abs=1e-9)
    assert np.array_equal(
        np.argsort(stable, kind="stable"), np.argsort([float(e) for e in exact], kind="stable")
    )


def test_auc_no_longer_collapses() -> None:
    view, member = _saturated()
    for attack in (GradientNormMIA(), ConfidenceMIA()):
        result = attack.run(view)
        naive = result.scores if result.higher_is_positive else -result.scores
        stable = result.oriented_scores
        assert auc(stable, member) > 0.6
        assert auc(stable, member) > auc(naive, member) + 0.1


@given(st.integers(0, 2**31 - 1), st.sampled_from(["linear", "mlp"]))
@settings(max_examples=25, deadline=None)
def test_log_norms_equal_log_of_the_norms_where_nothing_saturates(seed: int, kind: str) -> None:
    rng = np.random.default_rng(seed)
    X = rng.integers(0, 3, size=(30, 8)).astype(np.float64)
    y = rng.integers(0, 2, size=30).astype(np.int8)
    model = SGDLogistic() if kind == "linear" else MLP(hidden_units=3)
    params = model.init_params(8, seed)
    params = {k: v + rng.normal(0.0, 0.3, v.shape) for k, v in params.items()}
    server = FederationResult(initial_params=params, rounds=())
    clients = np.zeros(30, np.int64)
    plain = gradient_norms(model, server, "global", X, y, clients)
    logged = log_gradient_norms(model, server, "global", X, y, clients)
    np.testing.assert_allclose(logged, np.log(plain), rtol=1e-9, atol=1e-9)


def test_log_loss_residual_keeps_the_sign_where_the_direct_difference_rounds_to_zero() -> None:
    from fedgen.models.base import log_loss_residual

    z = np.array([-800.0, -50.0, -1.0, 0.0, 2.0, 40.0, 700.0, 800.0])
    for label in (0, 1):
        y = np.full(z.shape, label)
        direct = expit(z) - y
        r = log_loss_residual(z, y)
        nonzero = direct != 0
        np.testing.assert_array_equal(r[nonzero], direct[nonzero])  # bit for bit
        exact = np.array([float(mpmath.mpf(1) / (1 + mpmath.exp(-v)) - label) for v in z])
        finite = exact != 0  # beyond ~745 even the exact residual underflows float64
        np.testing.assert_allclose(r[finite], exact[finite], rtol=1e-12)
        assert np.all(np.sign(r[finite]) == np.sign(exact[finite]))
