"""Gradient-update alignment: oracles for membership and client attribution."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import numpy as np
import pytest
from hydra.utils import instantiate
from hypothesis import given, settings
from hypothesis import strategies as st
from numpy.typing import NDArray
from omegaconf import DictConfig
from scipy.special import expit

from fedgen.attacks import Arena
from fedgen.attacks.alignment import AlignmentMIA, argmax_random_ties
from fedgen.attacks.signals import logit_gradients, update_alignments
from fedgen.core.errors import ConfigError
from fedgen.core.records import Cohort, FederationResult, Params, Pool, RoundRecord
from fedgen.core.seeding import child_rng
from fedgen.data import SyntheticCohort
from fedgen.evaluation.assess import assess
from fedgen.evaluation.pools import PaperPool
from fedgen.federation import train_federation
from fedgen.models import MLP, SGDLogistic
from tests.conftest import make_split
from tests.conftest import settings as fed_settings

MODEL = SGDLogistic()


def _federation(n: int, snps: int, clients: int, rounds: int, seed: int) -> tuple[Cohort, Arena]:
    cohort = SyntheticCohort(n_individuals=n, n_snps=snps, n_causal=10).load(
        child_rng(seed, "cohort")
    )
    split = make_split(cohort, clients, seed)
    server = train_federation(cohort, split, fed_settings(clients, rounds), MODEL, seed=seed)
    pool = PaperPool().pool(split, child_rng(seed, "evaluation"))
    return cohort, Arena(cohort, pool, server, seed, MODEL)


@pytest.fixture(scope="module")
def leaky() -> Arena:
    """Many SNPs per training row: 3 clients of 80 training rows x 1,000 SNPs, 2 rounds."""
    return _federation(300, 1000, 3, 2, seed=2)[1]


def _aggregate_only(server: FederationResult) -> FederationResult:
    """The record secure aggregation leaves: each round's aggregate, no client's model."""
    rounds = tuple(
        dataclasses.replace(r, client_params=(), aggregate_only=True) for r in server.rounds
    )
    return dataclasses.replace(server, rounds=rounds)


def _binomial_tolerance(m: int, p: float) -> float:
    return float(4.0 * np.sqrt(p * (1.0 - p) / m))


def test_no_signal_when_the_model_never_saw_the_candidates() -> None:
    source = SyntheticCohort(n_individuals=2000, n_snps=40, n_causal=10)
    trained_on = source.load(child_rng(1, "cohort"))
    target = source.load(child_rng(2, "cohort"))
    split = make_split(trained_on, 2)
    server = train_federation(trained_on, split, fed_settings(2, 3), MODEL, seed=0)
    pool = PaperPool().pool(make_split(target, 2), child_rng(0, "evaluation"))
    arena = Arena(target, pool, server, 0, MODEL)
    for observer in ("server", "peer"):
        m = assess(AlignmentMIA(observer=observer), arena, n_bootstrap=0).metrics
        assert abs(m["auc"] - 0.5) < 0.06, (observer, m["auc"])
        for r in (1, 2, 3):
            assert abs(m[f"round_{r}/auc"] - 0.5) < 0.07, (observer, r)
    # The candidates' "clients" are another cohort's: no update can say where they were.
    m = assess(AlignmentMIA(), arena, n_bootstrap=0).metrics
    members = int(pool.is_member.sum())
    assert m["client_chance"] == 0.5
    assert abs(m["client_accuracy"] - 0.5) < _binomial_tolerance(members, 0.5)


def test_members_are_detected_and_attributed_to_their_client(leaky: Arena) -> None:
    result = assess(AlignmentMIA(), leaky, n_bootstrap=0)
    m = result.metrics
    assert m["auc"] > 0.68, m["auc"]
    assert m["client_chance"] == pytest.approx(1 / 3)
    assert m["client_accuracy"] > 0.65, m["client_accuracy"]
    # One statistic per round, oriented like the ranks, which are their sum.
    ranks = result.result.ranks
    assert ranks is not None
    assert len(result.result.per_round) == 2
    np.testing.assert_allclose(np.sum(result.result.per_round, axis=0), ranks)
    assert result.rounds[1]["auc"] > 0.6
    # The threshold applies to (1 + mean cosine) / 2, in [0, 1].
    scores = result.result.scores
    assert np.all((scores >= 0) & (scores <= 1))
    np.testing.assert_allclose(scores, (1 + ranks / 2) / 2)
    # A peer sees only the global updates: less than the server, more than nothing.
    peer = assess(AlignmentMIA(observer="peer"), leaky, n_bootstrap=0).metrics
    assert 0.55 < peer["auc"] < m["auc"]
    assert "client_accuracy" not in peer


def test_the_aggregate_stand_in_supports_no_more_than_the_aggregate(leaky: Arena) -> None:
    hidden = dataclasses.replace(leaky, server=_aggregate_only(leaky.server))
    result = assess(AlignmentMIA(), hidden, n_bootstrap=0)
    # Every client's "update" is the aggregate's: each candidate's statistic is exactly the
    # peer's, who sees the same aggregate (no client's own update is left to align with).
    peer = assess(AlignmentMIA(observer="peer"), leaky, n_bootstrap=0)
    assert peer.result.ranks is not None
    np.testing.assert_array_equal(result.result.ranks, peer.result.ranks)
    for hid, seen in zip(result.result.per_round, peer.result.per_round, strict=True):
        np.testing.assert_array_equal(hid, seen)
    # Attribution: every client ties, so the guess is chance.
    members = int(leaky.pool.is_member.sum())
    accuracy = result.metrics["client_accuracy"]
    assert abs(accuracy - 1 / 3) < _binomial_tolerance(members, 1 / 3), accuracy
    guesses = result.result.estimates["client"].values
    assert set(np.unique(guesses)) == {0.0, 1.0, 2.0}


def test_ties_are_broken_uniformly_and_only_between_tied_maxima() -> None:
    values = np.array([[1.0, 1.0, 0.0]] * 3000 + [[0.0, 2.0, 1.0]] * 10)
    picks = argmax_random_ties(values, np.random.default_rng(0))
    assert set(picks[:3000]) == {0.0, 1.0}
    assert abs(np.mean(picks[:3000] == 0.0) - 0.5) < 0.04
    assert np.all(picks[3000:] == 1.0)


def _linear(coef: NDArray[np.float64], intercept: float) -> Params:
    return {"coef": np.asarray(coef, np.float64), "intercept": np.array([intercept])}


def test_cosines_follow_their_closed_form_for_the_linear_model() -> None:
    rng = np.random.default_rng(0)
    X = rng.integers(0, 3, size=(50, 6)).astype(np.float64)
    y = rng.integers(0, 2, size=50).astype(np.int8)
    params = _linear(rng.normal(0, 0.3, 6), 0.1)
    updates = rng.normal(0, 1, (3, 7))
    updates[2] = 0.0
    got = update_alignments(MODEL, params, X, y, updates, chunk_values=70)  # 10-row chunks
    # -g = (y - sigmoid(z)) [x, 1], and cos(-g, u) is its cosine with u.
    g = MODEL.per_sample_gradients(params, X, y)
    want = -g @ updates[:2].T
    want /= np.linalg.norm(g, axis=1)[:, None] * np.linalg.norm(updates[:2], axis=1)
    np.testing.assert_allclose(got[:, :2], want, rtol=1e-12, atol=1e-12)
    assert np.all(got[:, 2] == 0.0)  # a zero update aligns with nothing


def _saturating(scale: float, seed: int = 0) -> tuple[FederationResult, NDArray[np.float64]]:
    """Two rounds of a 3-client linear federation whose models are ``scale`` times a base."""
    rng = np.random.default_rng(seed)
    p = 200
    base = _linear(rng.normal(0, 1, p), 0.5)
    steps = rng.normal(0, 0.1, (2, 3, p + 1))
    start = {k: scale * v for k, v in base.items()}
    rounds = []
    for r in range(2):
        clients = tuple(
            {"coef": start["coef"] + s[:-1], "intercept": start["intercept"] + s[-1:]}
            for s in steps[r]
        )
        new = {k: np.mean([c[k] for c in clients], axis=0) for k in start}
        rounds.append(RoundRecord(r + 1, new, clients, (10, 10, 10), {}))
        start = new
    X = rng.integers(0, 3, size=(300, p)).astype(np.float64)
    return FederationResult({k: scale * v for k, v in base.items()}, tuple(rounds)), X


def test_a_saturated_model_keeps_the_ranking() -> None:
    # Cosines do not depend on the linear model's scale ([x, 1] is the logit's gradient at
    # any parameters), so scaling the model into saturation must not move any statistic.
    rng = np.random.default_rng(1)
    y = rng.integers(0, 2, size=300).astype(np.int8)
    clients = rng.integers(0, 3, size=300)
    stats = []
    for scale in (1e-3, 1e3):
        server, X = _saturating(scale)
        pool = np.arange(300)
        cohort = Cohort(X.astype(np.int8), y, tuple(f"s{i}" for i in range(X.shape[1])))
        arena = Arena(cohort, Pool(pool, np.ones(300, bool), clients), server, 0, MODEL)
        attack = AlignmentMIA()
        stats.append(attack.run(attack.observe(arena).view))
        if scale > 1:
            z = MODEL.decision_function(server.initial_params, X)
            assert np.median(np.abs(z)) > 1000  # logits in the thousands
            naive = MODEL.per_sample_gradients(server.initial_params, X, y)
            assert np.mean(~naive.any(axis=1)) > 0.3  # the naive -g is exactly 0 there
    small, large = stats
    assert small.ranks is not None and large.ranks is not None
    np.testing.assert_allclose(large.ranks, small.ranks, rtol=1e-7, atol=1e-9)
    for a, b in zip(small.per_round, large.per_round, strict=True):
        np.testing.assert_allclose(b, a, rtol=1e-7, atol=1e-9)
    assert np.unique(large.ranks).size == 300  # no ties
    np.testing.assert_array_equal(np.argsort(large.ranks), np.argsort(small.ranks))
    np.testing.assert_array_equal(
        large.estimates["client"].values, small.estimates["client"].values
    )


@given(st.integers(0, 2**31 - 1), st.sampled_from(["linear", "mlp"]))
@settings(max_examples=25, deadline=None)
def test_logit_gradients_times_the_residual_are_the_loss_gradients(seed: int, kind: str) -> None:
    rng = np.random.default_rng(seed)
    X = rng.integers(0, 3, size=(20, 6)).astype(np.float64)
    y = rng.integers(0, 2, size=20).astype(np.int8)
    model = SGDLogistic() if kind == "linear" else MLP(hidden_units=3, activation="tanh")
    params = {k: v + rng.normal(0, 0.3, v.shape) for k, v in model.init_params(6, seed).items()}
    residual = expit(model.decision_function(params, X)) - y
    np.testing.assert_allclose(
        residual[:, None] * logit_gradients(model, params, X),
        model.per_sample_gradients(params, X, y),
        rtol=1e-9,
        atol=1e-12,
    )


def test_logit_gradients_of_a_saturated_mlp_are_the_logits_derivatives() -> None:
    rng = np.random.default_rng(3)
    model = MLP(hidden_units=4, activation="tanh")
    params = model.init_params(5, 0)
    params["W2"] = params["W2"] * 3000.0  # logits in the thousands: residuals round to 0
    X = rng.integers(0, 3, size=(8, 5)).astype(np.float64)
    z = model.decision_function(params, X)
    assert np.min(np.abs(z)) > 40
    got = logit_gradients(model, params, X)
    names = list(params)
    h = 1e-6
    column = 0
    for name in names:
        for idx in np.ndindex(params[name].shape):
            up = {k: v.copy() for k, v in params.items()}
            down = {k: v.copy() for k, v in params.items()}
            up[name][idx] += h
            down[name][idx] -= h
            numeric = (model.decision_function(up, X) - model.decision_function(down, X)) / (2 * h)
            np.testing.assert_allclose(got[:, column], numeric, rtol=1e-4, atol=1e-4)
            column += 1
    assert column == got.shape[1]


def test_results_are_deterministic_and_ties_follow_the_seed(leaky: Arena) -> None:
    first, second = (AlignmentMIA().run(AlignmentMIA().observe(leaky).view) for _ in range(2))
    assert first.ranks is not None and second.ranks is not None
    np.testing.assert_array_equal(first.ranks, second.ranks)
    np.testing.assert_array_equal(first.scores, second.scores)
    np.testing.assert_array_equal(
        first.estimates["client"].values, second.estimates["client"].values
    )
    hidden = _aggregate_only(leaky.server)
    guesses = [
        AlignmentMIA()
        .run(AlignmentMIA().observe(dataclasses.replace(leaky, server=hidden, seed=s)).view)
        .estimates["client"]
        .values
        for s in (0, 0, 1)
    ]
    np.testing.assert_array_equal(guesses[0], guesses[1])
    assert not np.array_equal(guesses[0], guesses[2])


def test_config_errors_and_the_yaml(compose_cfg: Callable[..., DictConfig]) -> None:
    with pytest.raises(ConfigError, match=r"attack alignment cannot be run by observer 'public'"):
        AlignmentMIA(observer="public")
    with pytest.raises(ConfigError, match=r"attack.alignment.threshold"):
        AlignmentMIA(threshold=1.5)
    cfg = compose_cfg("attack=alignment", "threshold=0.4")
    attack = instantiate(cfg.attack.alignment, name="alignment")
    assert isinstance(attack, AlignmentMIA)
    assert (attack.observer, attack.threshold, attack.kind) == ("server", 0.4, "membership")
