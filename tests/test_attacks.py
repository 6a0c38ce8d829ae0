"""The attacks against oracles: gradient calculus, no-signal pools, memorising models, labels."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from sklearn.linear_model import SGDClassifier

from fedgen.attacks import Arena, ConfidenceMIA, GradientLIA, GradientNormMIA
from fedgen.attacks.gradients import (
    gradient_norm_bound,
    gradient_norms,
    per_sample_gradients,
    residuals,
)
from fedgen.attacks.views import LabelView, MembershipView, label_view, membership_view
from fedgen.core.records import Cohort, FederationResult, LinearParams, Split
from fedgen.core.seeding import child_rng
from fedgen.data import SyntheticCohort
from fedgen.evaluation.assess import assess
from fedgen.evaluation.pools import BalancedPool, PaperPool
from fedgen.federation import train_federation
from tests.conftest import make_split
from tests.conftest import settings as fed_settings

MODEL = SGDClassifier(loss="log_loss", random_state=0)


def _train(cohort: Cohort, split: Split, rounds: int, epochs: int = 1) -> FederationResult:
    fed = fed_settings(split.num_clients, rounds, local_epochs=epochs)
    return train_federation(cohort, split, fed, MODEL, seed=0)


def _log_loss(params: LinearParams, x: np.ndarray, y: int) -> float:
    z = float(x @ params.coef + params.intercept)
    return float(np.logaddexp(0.0, z) - y * z)


@settings(max_examples=40, deadline=None)
@given(
    coef=arrays(np.float64, 4, elements=st.floats(-2, 2)),
    intercept=st.floats(-2, 2),
    X=arrays(np.int8, (3, 4), elements=st.integers(0, 2)),
    y=arrays(np.int8, 3, elements=st.integers(0, 1)),
)
def test_per_sample_gradient_equals_finite_differences(
    coef: np.ndarray, intercept: float, X: np.ndarray, y: np.ndarray
) -> None:
    params = LinearParams(coef, intercept)
    Xf = X.astype(np.float64)
    grads = per_sample_gradients(params, Xf, y)
    h = 1e-6
    for i in range(3):
        for j in range(5):
            up_c, down_c = coef.copy(), coef.copy()
            up_b = down_b = intercept
            if j < 4:
                up_c[j] += h
                down_c[j] -= h
            else:
                up_b, down_b = intercept + h, intercept - h
            numeric = (
                _log_loss(LinearParams(up_c, up_b), Xf[i], int(y[i]))
                - _log_loss(LinearParams(down_c, down_b), Xf[i], int(y[i]))
            ) / (2 * h)
            assert grads[i, j] == pytest.approx(numeric, abs=1e-6)
    r = residuals(Xf @ coef + intercept, y)
    np.testing.assert_allclose(gradient_norms(Xf, r), np.linalg.norm(grads, axis=1), rtol=1e-12)
    assert np.all(np.linalg.norm(grads, axis=1) < gradient_norm_bound(4))


def test_no_signal_when_the_model_never_saw_the_pool() -> None:
    # The model is trained on one cohort and attacked on the split of another, independent
    # cohort: members and non-members are exchangeable, so no attack may find a difference.
    source = SyntheticCohort(n_individuals=4000, n_snps=30, n_causal=10)
    train_cohort = source.load(child_rng(1, "cohort"))
    target = source.load(child_rng(2, "cohort"))
    server = _train(train_cohort, make_split(train_cohort, 2), rounds=3)
    pool = PaperPool().pool(make_split(target, 2), child_rng(0, "evaluation"))
    arena = Arena(cohort=target, pool=pool, server=server, seed=0)
    for attack in (ConfidenceMIA(), GradientNormMIA(), GradientNormMIA(model="client")):
        m = assess(attack, arena, 0.5, n_bootstrap=100).metrics
        assert m["member_share"] == pytest.approx(0.8)
        assert abs(m["auc"] - 0.5) < 0.04, attack.name
        assert m["advantage"] < 0.06
        assert m["precision"] == pytest.approx(0.8, abs=0.03)
        assert m["trivial_f1"] == pytest.approx(2 * 0.8 / 1.8)
        assert m["auc_ci_low"] < m["auc"] < m["auc_ci_high"]


def test_a_memorising_model_leaks_membership() -> None:
    # Few individuals, many SNPs, many epochs: the model fits its training rows.
    cohort = SyntheticCohort(n_individuals=200, n_snps=2000, n_causal=20).load(
        child_rng(3, "cohort")
    )
    split = make_split(cohort, 1)
    server = _train(cohort, split, rounds=20)
    pool = PaperPool().pool(split, child_rng(0, "evaluation"))
    arena = Arena(cohort=cohort, pool=pool, server=server, seed=0)
    for attack in (ConfidenceMIA(), GradientNormMIA()):
        m = assess(attack, arena, 0.5, n_bootstrap=0).metrics
        # Members are all fitted with confidence ~1; non-members only where the model happens
        # to be right (~60%), so AUC ~0.7 and advantage ~0.4, against 0.5 and 0 without leakage.
        assert m["auc"] > 0.65, (attack.name, m["auc"])
        assert m["advantage"] > 0.3, (attack.name, m["advantage"])


def test_sign_rule_recovers_every_label_where_the_gradient_is_nonzero(tiny_cohort: Cohort) -> None:
    split = make_split(tiny_cohort, 3)
    server = _train(tiny_cohort, split, rounds=2)
    arena = Arena(tiny_cohort, PaperPool().pool(split, child_rng(0, "e")), server, seed=0)
    a = assess(GradientLIA(aux_fraction=0.3), arena, 0.5, n_bootstrap=0)
    calls = a.result.rules["sign_rule"]
    made = calls >= 0
    assert made.mean() > 0.9  # zero only where the sigmoid saturates in float64
    np.testing.assert_array_equal(calls[made] == 1, a.truth[made])
    assert a.metrics["sign_rule_accuracy"] == 1.0
    assert a.metrics["sign_rule_coverage"] == pytest.approx(made.mean())
    # Its targets are the pool minus the auxiliary records.
    assert a.truth.size == tiny_cohort.n_individuals - round(0.3 * tiny_cohort.n_individuals)


def test_attacks_never_see_the_truth(tiny_cohort: Cohort) -> None:
    # Shuffling membership (which only the metrics may read) must not move a single score.
    split = make_split(tiny_cohort, 3)
    server = _train(tiny_cohort, split, rounds=2)
    pool = PaperPool().pool(split, child_rng(0, "e"))
    shuffled = dataclasses.replace(
        pool, is_member=np.random.default_rng(0).permutation(pool.is_member)
    )
    fields = {f.name for f in dataclasses.fields(MembershipView)}
    assert fields == {"server", "records", "labels", "clients"}
    assert {f.name for f in dataclasses.fields(LabelView)} == {
        "server",
        "observed",
        "aux_records",
        "aux_labels",
    }
    for attack in (ConfidenceMIA(), GradientNormMIA(), GradientLIA()):
        a = attack.run(attack.observe(Arena(tiny_cohort, pool, server, 0)).view)
        b = attack.run(attack.observe(Arena(tiny_cohort, shuffled, server, 0)).view)
        np.testing.assert_array_equal(a.scores, b.scores)
    # The label view's targets and auxiliary records are disjoint.
    obs = label_view(Arena(tiny_cohort, pool, server, 0), 0.5, "s")
    assert obs.view.aux_records.shape[0] + obs.truth.size == pool.size


def test_scores_follow_their_definitions(tiny_cohort: Cohort) -> None:
    split = make_split(tiny_cohort, 2)
    server = _train(tiny_cohort, split, rounds=2)
    pool = PaperPool().pool(split, child_rng(0, "e"))
    view = membership_view(Arena(tiny_cohort, pool, server, 0)).view
    X, y = view.records, view.labels
    final = server.final_params
    p1 = 1 / (1 + np.exp(-(X @ final.coef + final.intercept)))
    mia = ConfidenceMIA().run(view).scores
    np.testing.assert_allclose(mia, np.where(y == 1, p1, 1 - p1), rtol=1e-9, atol=1e-12)
    gmia = GradientNormMIA().run(view).scores
    grads = per_sample_gradients(final, X, y)
    expected = np.linalg.norm(grads, axis=1) / np.sqrt(4 * X.shape[1] + 1)
    np.testing.assert_allclose(gmia, expected, rtol=1e-12)
    assert np.all((gmia >= 0) & (gmia < 1))
    # model=client scores each candidate on its own client's last local model.
    local = GradientNormMIA(model="client").run(view).scores
    for cid, params in enumerate(server.rounds[-1].client_params):
        rows = view.clients == cid
        g = per_sample_gradients(params, X[rows], y[rows])
        np.testing.assert_allclose(
            local[rows], np.linalg.norm(g, axis=1) / np.sqrt(4 * X.shape[1] + 1), rtol=1e-12
        )
    # Members are called when the scaled norm is at most the threshold.
    result = GradientNormMIA().run(view)
    np.testing.assert_array_equal(result.predict(0.3), result.scores <= 0.3)


def test_pools(tiny_cohort: Cohort) -> None:
    split = make_split(tiny_cohort, 3)
    paper = PaperPool().pool(split, child_rng(0, "e"))
    assert sorted(paper.rows.tolist()) == list(range(tiny_cohort.n_individuals))
    for cid, c in enumerate(split.clients):
        assert set(paper.rows[paper.is_member & (paper.client == cid)]) == set(c.train)
        assert set(paper.rows[~paper.is_member & (paper.client == cid)]) == set(c.test)
    balanced = BalancedPool().pool(split, child_rng(0, "e"))
    again = BalancedPool().pool(split, child_rng(0, "e"))
    np.testing.assert_array_equal(balanced.rows, again.rows)
    for cid, c in enumerate(split.clients):
        mine = balanced.client == cid
        members = balanced.rows[mine & balanced.is_member]
        assert members.size == (mine & ~balanced.is_member).sum() == min(c.train.size, c.test.size)
        assert set(members) <= set(c.train)
    assert balanced.is_member.mean() == 0.5
