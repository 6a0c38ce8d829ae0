"""The attacks against oracles: gradient calculus, no-signal pools, memorising models, labels."""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from numpy.typing import NDArray

from fedgen.attacks import Arena, ConfidenceMIA, GradientLIA, GradientNormMIA, Observation
from fedgen.attacks.genotypes import GenotypeRows
from fedgen.attacks.signals import gradient_norms
from fedgen.attacks.views import LabelView, MembershipView, label_view, membership_view
from fedgen.core.errors import ConfigError
from fedgen.core.records import AttackResult, Cohort, FederationResult, Params, Split
from fedgen.core.seeding import child_rng
from fedgen.data import SyntheticCohort
from fedgen.evaluation.assess import CLIENT_METRICS, assess
from fedgen.evaluation.metrics import attack_metrics, tpr_at_fpr
from fedgen.evaluation.pools import BalancedPool, PaperPool
from fedgen.federation import train_federation
from fedgen.models import SGDLogistic
from tests.conftest import make_split
from tests.conftest import settings as fed_settings

MODEL = SGDLogistic()


def _train(cohort: Cohort, split: Split, rounds: int, epochs: int = 1) -> FederationResult:
    fed = fed_settings(split.num_clients, rounds, local_epochs=epochs)
    return train_federation(cohort, split, fed, MODEL, seed=0)


def _linear(coef: NDArray[np.float64], intercept: float) -> Params:
    return {"coef": np.asarray(coef, np.float64), "intercept": np.array([intercept])}


def _log_loss(params: Params, x: np.ndarray, y: int) -> float:
    z = float(x @ params["coef"] + params["intercept"][0])
    return float(np.logaddexp(0.0, z) - y * z)


def _sigmoid(z: NDArray[np.float64]) -> NDArray[np.float64]:
    return np.asarray(1 / (1 + np.exp(-z)), np.float64)


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
    params = _linear(coef, intercept)
    Xf = X.astype(np.float64)
    grads = MODEL.per_sample_gradients(params, Xf, y)
    assert grads.shape == (3, 5)
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
                _log_loss(_linear(up_c, up_b), Xf[i], int(y[i]))
                - _log_loss(_linear(down_c, down_b), Xf[i], int(y[i]))
            ) / (2 * h)
            assert grads[i, j] == pytest.approx(numeric, abs=1e-6)
    # The norms the attacks read are those of these gradients, on the attacked model.
    server = FederationResult(initial_params=params, rounds=())
    clients = np.zeros(3, dtype=np.int64)
    norms = gradient_norms(MODEL, server, "global", Xf, y, clients)
    np.testing.assert_allclose(norms, np.linalg.norm(grads, axis=1), rtol=1e-12)
    bound = MODEL.gradient_norm_bound(4, 2.0)
    assert bound == pytest.approx(np.sqrt(4 * 2.0**2 + 1))
    assert np.all(np.linalg.norm(grads, axis=1) < bound)


def test_no_signal_when_the_model_never_saw_the_pool() -> None:
    # The model is trained on one cohort and attacked on the split of another, independent
    # cohort: members and non-members are exchangeable, so no attack may find a difference.
    source = SyntheticCohort(n_individuals=4000, n_snps=30, n_causal=10)
    train_cohort = source.load(child_rng(1, "cohort"))
    target = source.load(child_rng(2, "cohort"))
    server = _train(train_cohort, make_split(train_cohort, 2), rounds=3)
    pool = PaperPool().pool(make_split(target, 2), child_rng(0, "evaluation"))
    arena = Arena(cohort=target, pool=pool, server=server, seed=0, model=MODEL)
    for attack in (ConfidenceMIA(), GradientNormMIA(), GradientNormMIA(model="client")):
        assert attack.threshold == 0.5
        m = assess(attack, arena, n_bootstrap=100).metrics
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
    arena = Arena(cohort=cohort, pool=pool, server=server, seed=0, model=MODEL)
    for attack in (ConfidenceMIA(), GradientNormMIA()):
        assert attack.threshold == 0.5
        m = assess(attack, arena, n_bootstrap=0).metrics
        # Members are all fitted with confidence ~1; non-members only where the model happens
        # to be right (~60%), so AUC ~0.7 and advantage ~0.4, against 0.5 and 0 without leakage.
        assert m["auc"] > 0.65, (attack.name, m["auc"])
        assert m["advantage"] > 0.3, (attack.name, m["advantage"])


def test_sign_rule_recovers_every_label_where_the_gradient_is_nonzero(tiny_cohort: Cohort) -> None:
    split = make_split(tiny_cohort, 3)
    server = _train(tiny_cohort, split, rounds=2)
    arena = Arena(tiny_cohort, PaperPool().pool(split, child_rng(0, "e")), server, 0, MODEL)
    a = assess(GradientLIA(aux_fraction=0.3), arena, n_bootstrap=0)
    calls = a.result.rules["sign_rule"]
    made = calls >= 0
    assert made.mean() > 0.9  # zero only where the sigmoid saturates in float64
    np.testing.assert_array_equal(calls[made] == 1, a.truth[made])
    assert a.metrics["sign_rule_accuracy"] == 1.0
    assert a.metrics["sign_rule_coverage"] == pytest.approx(made.mean())
    # Its targets are the pool minus the auxiliary records.
    assert a.truth.size == tiny_cohort.n_individuals - round(0.3 * tiny_cohort.n_individuals)


def test_views_hold_no_truth() -> None:
    assert {f.name for f in dataclasses.fields(MembershipView)} == {
        "server",
        "model",
        "records",
        "labels",
        "clients",
    }
    assert {f.name for f in dataclasses.fields(LabelView)} == {
        "server",
        "model",
        "observed",
        "aux_records",
        "aux_labels",
    }


def test_membership_attacks_never_see_membership(tiny_cohort: Cohort) -> None:
    # Shuffling membership (which only the metrics may read) must not move a single score.
    split = make_split(tiny_cohort, 3)
    server = _train(tiny_cohort, split, rounds=2)
    pool = PaperPool().pool(split, child_rng(0, "e"))
    shuffled = dataclasses.replace(
        pool, is_member=np.random.default_rng(0).permutation(pool.is_member)
    )
    assert not np.array_equal(shuffled.is_member, pool.is_member)
    arena = Arena(tiny_cohort, pool, server, 0, MODEL)
    other = Arena(tiny_cohort, shuffled, server, 0, MODEL)
    for attack in (ConfidenceMIA(), GradientNormMIA(), GradientNormMIA(model="client")):
        seen, unseen = attack.observe(arena), attack.observe(other)
        np.testing.assert_array_equal(seen.truth, pool.is_member)
        np.testing.assert_array_equal(unseen.truth, shuffled.is_member)  # the truth moved
        np.testing.assert_array_equal(attack.run(seen.view).scores, attack.run(unseen.view).scores)


def _rows_of(records: GenotypeRows, cohort: Cohort) -> NDArray[np.int64]:
    """The cohort row of each record, matched by genotypes (rows must be unique)."""
    assert np.unique(cohort.genotypes, axis=0).shape[0] == cohort.n_individuals
    index = {row.tobytes(): i for i, row in enumerate(cohort.genotypes.astype(np.float64))}
    return np.array([index[r.tobytes()] for r in records.dense()], dtype=np.int64)


def test_label_inference_sees_target_labels_only_through_their_gradients(
    tiny_cohort: Cohort,
) -> None:
    # LIA's truth is the targets' labels. The server legitimately observes each target's
    # gradient (which depends on its label) and knows the auxiliary records' labels; nothing
    # else. So changing some targets' labels in the cohort must change the truth and those
    # targets' observed gradients, and nothing else: no other target's score, and nothing on
    # the auxiliary side, may move.
    split = make_split(tiny_cohort, 3)
    server = _train(tiny_cohort, split, rounds=2)
    pool = PaperPool().pool(split, child_rng(0, "e"))
    attack = GradientLIA()
    before = attack.observe(Arena(tiny_cohort, pool, server, 0, MODEL))
    aux_rows = _rows_of(before.view.aux_records, tiny_cohort)
    np.testing.assert_array_equal(before.view.aux_labels, tiny_cohort.labels[aux_rows])
    assert np.unique(aux_rows).size == aux_rows.size and np.isin(aux_rows, pool.rows).all()
    targets = pool.rows[~np.isin(pool.rows, aux_rows)]  # the rest of the pool, in pool order
    assert targets.size == before.truth.size
    np.testing.assert_array_equal(before.truth, tiny_cohort.labels[targets] == 1)

    flip = np.random.default_rng(1).random(targets.size) < 0.5
    labels = tiny_cohort.labels.copy()
    labels[targets[flip]] = 1 - labels[targets[flip]]
    relabelled = dataclasses.replace(tiny_cohort, labels=labels)
    after = attack.observe(Arena(relabelled, pool, server, 0, MODEL))

    np.testing.assert_array_equal(after.truth != before.truth, flip)  # the truth moved
    np.testing.assert_array_equal(after.clients, before.clients)
    assert after.view.server is server and after.view.model is MODEL
    np.testing.assert_array_equal(after.view.aux_records.dense(), before.view.aux_records.dense())
    np.testing.assert_array_equal(after.view.aux_labels, before.view.aux_labels)
    np.testing.assert_array_equal(after.view.observed[~flip], before.view.observed[~flip])
    assert np.all(np.any(after.view.observed[flip] != before.view.observed[flip], axis=1))
    a, b = attack.run(before.view), attack.run(after.view)
    np.testing.assert_array_equal(b.scores[~flip], a.scores[~flip])
    np.testing.assert_array_equal(b.rules["sign_rule"][~flip], a.rules["sign_rule"][~flip])
    assert not np.array_equal(b.scores[flip], a.scores[flip])
    # The label view's targets and auxiliary records are disjoint and cover the pool.
    obs = label_view(Arena(tiny_cohort, pool, server, 0, MODEL), 0.5, "s")
    aux = _rows_of(obs.view.aux_records, tiny_cohort)
    assert np.unique(aux).size == aux.size and np.isin(aux, pool.rows).all()
    assert aux.size + obs.truth.size == pool.size


def test_scores_follow_their_definitions(tiny_cohort: Cohort) -> None:
    split = make_split(tiny_cohort, 2)
    server = _train(tiny_cohort, split, rounds=2)
    pool = PaperPool().pool(split, child_rng(0, "e"))
    view = membership_view(Arena(tiny_cohort, pool, server, 0, MODEL)).view
    X, y = view.records.dense(), view.labels
    bound = np.sqrt(4 * X.shape[1] + 1)

    def norms(params: Params, X: NDArray[np.float64], y: NDArray[np.int8]) -> NDArray[Any]:
        # ||(sigmoid(z) - y) [x, 1]|| = |sigmoid(z) - y| sqrt(||x||^2 + 1), with the residual
        # of a case written 1 - sigmoid(z) = sigmoid(-z), which does not round to 0 for z > 37.
        z = X @ params["coef"] + params["intercept"][0]
        r = np.where(y == 1, _sigmoid(-z), _sigmoid(z))
        return np.abs(r) * np.sqrt(np.sum(X * X, axis=1) + 1)

    final = server.final_params
    p1 = _sigmoid(X @ final["coef"] + final["intercept"][0])
    mia = ConfidenceMIA().run(view).scores
    np.testing.assert_allclose(mia, np.where(y == 1, p1, 1 - p1), rtol=1e-9, atol=1e-12)
    gmia = GradientNormMIA().run(view).scores
    grads = MODEL.per_sample_gradients(final, X, y)
    np.testing.assert_allclose(gmia, np.linalg.norm(grads, axis=1) / bound, rtol=1e-12)
    # The model computes sigmoid(z) - y directly where that is not 0: exact up to ~1e-16.
    np.testing.assert_allclose(gmia, norms(final, X, y) / bound, rtol=1e-12, atol=2e-16)
    assert np.all((gmia >= 0) & (gmia < 1))
    # model=client scores each candidate on its own client's last local model.
    local = GradientNormMIA(model="client").run(view).scores
    local_mia = ConfidenceMIA(model="client").run(view).scores
    for cid, params in enumerate(server.rounds[-1].client_params):
        rows = view.clients == cid
        g = MODEL.per_sample_gradients(params, X[rows], y[rows])
        np.testing.assert_allclose(local[rows], np.linalg.norm(g, axis=1) / bound, rtol=1e-12)
        np.testing.assert_allclose(
            local[rows], norms(params, X[rows], y[rows]) / bound, rtol=1e-12, atol=2e-16
        )
        q1 = _sigmoid(X[rows] @ params["coef"] + params["intercept"][0])
        np.testing.assert_allclose(
            local_mia[rows], np.where(y[rows] == 1, q1, 1 - q1), rtol=1e-9, atol=1e-12
        )
    assert not np.allclose(local, gmia)
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


class _Fixed:
    """An attack with set scores: its view is the scores themselves, its truth set by the test."""

    def __init__(
        self,
        scores: NDArray[np.float64],
        truth: NDArray[np.bool_],
        clients: NDArray[np.int64],
        threshold: float,
        higher_is_positive: bool = True,
        name: str = "fixed",
    ) -> None:
        self.name, self.threshold = name, threshold
        self.scores, self.truth, self.clients = scores, truth, clients
        self.higher_is_positive = higher_is_positive

    def observe(self, arena: Arena) -> Observation[NDArray[np.float64]]:
        return Observation(view=self.scores, truth=self.truth, clients=self.clients)

    def run(self, view: NDArray[np.float64]) -> AttackResult:
        return AttackResult(self.name, view, self.higher_is_positive)


def _arena(tiny_cohort: Cohort, seed: int = 3) -> Arena:
    """An arena for attacks that ignore it (assess reads only its seed)."""
    split = make_split(tiny_cohort, 3)
    pool = PaperPool().pool(split, child_rng(seed, "e"))
    server = FederationResult(MODEL.init_params(tiny_cohort.n_snps, 0), ())
    return Arena(tiny_cohort, pool, server, seed, MODEL)


@pytest.mark.parametrize("higher_is_positive", [True, False])
def test_per_client_metrics_are_the_metrics_of_each_clients_targets(
    tiny_cohort: Cohort, higher_is_positive: bool
) -> None:
    rng = np.random.default_rng(5)
    clients = np.repeat(np.array([2, 0, 1, 0]), [40, 50, 30, 20]).astype(np.int64)
    truth = rng.random(clients.size) < 0.6
    truth[clients == 1] = True  # client 1 holds members only: no AUC there
    sign = 1.0 if higher_is_positive else -1.0
    scores = np.clip(0.5 + sign * (0.1 * truth + rng.normal(0, 0.15, clients.size)), 0, 1)
    attack = _Fixed(scores, truth, clients, 0.45, higher_is_positive)
    arena = _arena(tiny_cohort)
    a = assess(attack, arena, n_bootstrap=50)

    assert a.threshold == 0.45
    predicted = scores >= 0.45 if higher_is_positive else scores <= 0.45
    oriented = sign * scores
    pooled, pooled_omitted = attack_metrics(
        oriented,
        truth,
        predicted,
        rng=child_rng(arena.seed, "bootstrap/fixed"),
        n_bootstrap=50,
    )
    assert {k: v for k, v in a.metrics.items() if not k.startswith("client_")} == pooled
    assert {k: v for k, v in a.omitted.items() if not k.startswith("client_")} == pooled_omitted
    for cid in (0, 1, 2):
        mine = clients == cid
        sub, sub_omitted = attack_metrics(
            oriented[mine], truth[mine], predicted[mine], rng=rng, n_bootstrap=0
        )
        got = {
            k.removeprefix(f"client_{cid}/"): v
            for k, v in a.metrics.items()
            if k.startswith(f"client_{cid}/")
        }
        assert got == {k: sub[k] for k in CLIENT_METRICS if k in sub}, cid
        omitted = {
            k.removeprefix(f"client_{cid}/"): why
            for k, why in a.omitted.items()
            if k.startswith(f"client_{cid}/")
        }
        assert omitted == {k: sub_omitted[k] for k in CLIENT_METRICS if k in sub_omitted}, cid
    # By hand: client 0's precision and recall at the threshold, and its share of members.
    mine = clients == 0
    tp = int(np.sum(predicted[mine] & truth[mine]))
    assert a.metrics["client_0/precision"] == tp / int(np.sum(predicted[mine]))
    assert a.metrics["client_0/recall"] == tp / int(np.sum(truth[mine]))
    assert a.metrics["client_0/member_share"] == np.mean(truth[mine])
    # Client 1 has no non-member: its AUC and advantage are left out, with the reason.
    assert "client_1/auc" not in a.metrics and "client_1/advantage" not in a.metrics
    assert a.omitted["client_1/auc"] == "pool has one class only (30 members, 0 non-members)"
    assert a.metrics["client_1/member_share"] == 1.0
    # No client beyond those with targets, and none of the pooled-only metrics per client.
    assert {k.split("/")[0] for k in a.metrics if k.startswith("client_")} == {
        "client_0",
        "client_1",
        "client_2",
    }
    assert not any(k.startswith("client_") and "tpr_at_fpr" in k for k in a.metrics)


@pytest.mark.parametrize(
    ("n_negatives", "reported", "omitted"),
    [
        (99, (), ("tpr_at_fpr_0.01", "tpr_at_fpr_0.001")),
        (100, ("tpr_at_fpr_0.01",), ("tpr_at_fpr_0.001",)),
        (1000, ("tpr_at_fpr_0.01", "tpr_at_fpr_0.001"), ()),
    ],
)
def test_tpr_at_low_fpr_is_omitted_with_the_reason_when_non_members_are_too_few(
    tiny_cohort: Cohort, n_negatives: int, reported: tuple[str, ...], omitted: tuple[str, ...]
) -> None:
    rng = np.random.default_rng(n_negatives)
    truth = np.r_[np.ones(300, bool), np.zeros(n_negatives, bool)]
    scores = np.clip(rng.normal(0.5 + 0.2 * truth, 0.2), 0, 1)
    clients = np.zeros(truth.size, np.int64)
    a = assess(_Fixed(scores, truth, clients, 0.5), _arena(tiny_cohort), n_bootstrap=0)
    need = {"tpr_at_fpr_0.01": 100, "tpr_at_fpr_0.001": 1000}
    for key in omitted:
        assert key not in a.metrics
        assert a.omitted[key] == f"needs >= {need[key]} non-members, pool has {n_negatives}"
    for key in reported:
        assert key not in a.omitted
        max_fpr = float(key.removeprefix("tpr_at_fpr_"))
        assert a.metrics[key] == tpr_at_fpr(scores, truth, max_fpr)
    # Metrics that can be estimated are there; the intervals are omitted since n_bootstrap=0.
    assert {"auc", "advantage", "precision", "f1"} <= set(a.metrics)
    for key in ("auc_ci_low", "auc_ci_high", "f1_ci_low", "f1_ci_high"):
        assert key not in a.metrics and a.omitted[key] == "no resamples (n_bootstrap=0)"
    assert not set(a.metrics) & set(a.omitted)


def test_attack_thresholds_are_checked() -> None:
    bad_values: list[Any] = [-0.1, 1.5, True, "0.5", None]
    for make in (ConfidenceMIA, GradientNormMIA, GradientLIA):
        assert make().threshold == 0.5
        assert make(threshold=0.3).threshold == 0.3
        assert make(threshold=1).threshold == 1.0
        name = make().name
        for bad in bad_values:
            with pytest.raises(ConfigError, match=rf"attack\.{name}\.threshold="):
                make(threshold=bad)
