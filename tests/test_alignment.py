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
from fedgen.attacks.alignment import AlignmentMIA, alignments, argmax_random_ties
from fedgen.attacks.observers import observe_training
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
    cohort = SyntheticCohort(n_individuals=n, n_snps=snps, n_causal=10, n_reference=n).load(
        child_rng(seed, "cohort")
    )
    split = make_split(cohort, clients, seed)
    server = train_federation(cohort, split, fed_settings(clients, rounds), MODEL, seed=seed)
    pool = PaperPool().pool(split, child_rng(seed, "evaluation"))
    return cohort, Arena(cohort, pool, server, seed, MODEL)


@pytest.fixture(scope="module")
def leaky() -> Arena:
    """Many SNPs per training row: 3 clients of 80 training rows x 1,000 SNPs, 2 rounds; 300
    reference individuals."""
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
    for center in (True, False):
        for observer in ("server", "peer"):
            m = assess(AlignmentMIA(observer=observer, center=center), arena, n_bootstrap=0)
            auc = m.metrics["auc"]
            assert abs(auc - 0.5) < 0.06, (center, observer, auc)
            for r in (1, 2, 3):
                assert abs(m.metrics[f"round_{r}/auc"] - 0.5) < 0.07, (center, observer, r)
        # The candidates' "clients" are another cohort's: no update can say where they were.
        m = assess(AlignmentMIA(center=center), arena, n_bootstrap=0)
        members = int(pool.is_member.sum())
        assert m.metrics["client_chance"] == 0.5
        accuracy = m.metrics["client_accuracy"]
        assert abs(accuracy - 0.5) < _binomial_tolerance(members, 0.5), (center, accuracy)


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
    # Raw genotypes share a direction that swamps each row's own: centring must pay off.
    raw = assess(AlignmentMIA(center=False), leaky, n_bootstrap=0).metrics
    assert m["auc"] > raw["auc"] + 0.05, (m["auc"], raw["auc"])


@pytest.mark.parametrize("center", [True, False])
def test_the_aggregate_stand_in_supports_no_more_than_the_aggregate(
    leaky: Arena, center: bool
) -> None:
    hidden = dataclasses.replace(leaky, server=_aggregate_only(leaky.server))
    result = assess(AlignmentMIA(center=center), hidden, n_bootstrap=0)
    # Every client's "update" is the aggregate's: each candidate's statistic is exactly the
    # peer's, who sees the same aggregate (no client's own update is left to align with).
    peer = assess(AlignmentMIA(observer="peer", center=center), leaky, n_bootstrap=0)
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


@pytest.mark.parametrize("center", [True, False])
def test_a_saturated_model_keeps_the_ranking(center: bool) -> None:
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
        attack = AlignmentMIA(center=center)
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


def _shifted(server: FederationResult, shift: NDArray[np.float64]) -> FederationResult:
    """The same training seen with every genotype shifted by ``shift`` (p,).

    Logits ``w . x + b`` stay the same with ``b - shift . w``; each update, a sum of gradient
    steps ``r [x, 1]``, becomes the same steps on ``[x + shift, 1]``: ``(dw + shift db, db)``.
    """

    def moved(start: Params, before: Params, after: Params) -> Params:
        dw, db = after["coef"] - before["coef"], after["intercept"] - before["intercept"]
        return {"coef": start["coef"] + dw + shift * db, "intercept": start["intercept"] + db}

    def at(params: Params) -> Params:
        return {"coef": params["coef"], "intercept": params["intercept"] - shift @ params["coef"]}

    old_start, start = server.initial_params, at(server.initial_params)
    rounds = []
    for r in server.rounds:
        clients = tuple(moved(start, old_start, c) for c in r.client_params)
        new = moved(start, old_start, r.global_params)
        rounds.append(dataclasses.replace(r, global_params=new, client_params=clients))
        old_start, start = r.global_params, new
    return FederationResult(at(server.initial_params), tuple(rounds))


@given(st.integers(0, 2**31 - 1), st.booleans())
@settings(max_examples=10, deadline=None)
def test_centring_is_invariant_to_shifting_every_genotype(seed: int, reference: bool) -> None:
    # Shift every genotype (candidates, references) by a per-SNP constant and replay the same
    # training on the shifted features: centred statistics must not move, raw ones do.
    server, X = _saturating(1.0, seed)
    rng = np.random.default_rng(seed)
    n, p = int(X.shape[0]), int(X.shape[1])
    y = rng.integers(0, 2, size=n).astype(np.int8)
    clients = rng.integers(0, 3, size=n)
    panel = rng.integers(0, 3, size=(150, p)).astype(np.int8)
    shift = rng.integers(1, 4, size=p).astype(np.float64)
    stats = {}
    for moved in (False, True):
        ref = Cohort(panel + moved * shift.astype(np.int8), y[:150], ("",) * p)
        cohort = Cohort(
            (X + moved * shift).astype(np.int8), y, ("",) * p, reference=ref if reference else None
        )
        record = _shifted(server, shift) if moved else server
        pool = Pool(np.arange(n), np.ones(n, bool), clients)
        for center in (True, False):
            attack = AlignmentMIA(center=center)
            stats[moved, center] = attack.run(
                attack.observe(Arena(cohort, pool, record, 0, MODEL)).view
            )
    for key in ("ranks", "per_round"):
        np.testing.assert_allclose(
            getattr(stats[True, True], key), getattr(stats[False, True], key), rtol=1e-8, atol=1e-10
        )
    np.testing.assert_array_equal(
        stats[True, True].estimates["client"].values, stats[False, True].estimates["client"].values
    )
    raw_moved, raw = stats[True, False].ranks, stats[False, False].ranks
    assert raw_moved is not None and raw is not None
    assert np.max(np.abs(raw_moved - raw)) > 0.05


def test_centred_cosines_follow_their_closed_form() -> None:
    # -g = (y - sigmoid(z)) [x - 2f, 1] in centred coordinates; an update (dw, db) there is
    # (dw - 2f db, db): the same gradient steps taken on centred rows.
    server, X = _saturating(1.0, seed=4)
    rng = np.random.default_rng(4)
    n, p = int(X.shape[0]), int(X.shape[1])
    y = rng.integers(0, 2, size=n).astype(np.int8)
    offset = rng.uniform(0, 2, size=p)
    training = observe_training(server, "server")
    got = alignments(training, MODEL, X, y, offset)
    for r, cos in enumerate(got, start=1):
        u = training.client_updates(r)
        u_c = np.column_stack([u[:, :-1] - np.outer(u[:, -1], offset), u[:, -1]])
        g = np.column_stack([X - offset, np.ones(n)]) * (2.0 * y - 1)[:, None]
        want = g @ u_c.T / np.outer(np.linalg.norm(g, axis=1), np.linalg.norm(u_c, axis=1))
        np.testing.assert_allclose(cos, want, rtol=1e-10, atol=1e-12)
    # The offset matters: without it the cosines are the raw ones.
    raw = alignments(training, MODEL, X, y)
    assert np.max(np.abs(raw[0] - got[0])) > 0.05


def test_allele_means_come_from_the_reference_else_the_candidates(leaky: Arena) -> None:
    reference = leaky.cohort.reference
    assert reference is not None
    view = AlignmentMIA().observe(leaky).view
    assert view.offset is not None
    np.testing.assert_allclose(view.offset, reference.genotypes.mean(axis=0))
    bare = dataclasses.replace(leaky, cohort=dataclasses.replace(leaky.cohort, reference=None))
    view = AlignmentMIA().observe(bare).view
    assert view.offset is not None
    np.testing.assert_allclose(view.offset, view.records.dense().mean(axis=0))
    assert AlignmentMIA(center=False).observe(leaky).view.offset is None


def test_centring_has_no_effect_on_a_non_linear_model() -> None:
    rng = np.random.default_rng(5)
    model = MLP(hidden_units=3, activation="tanh")
    start = model.init_params(8, 0)
    rounds = []
    for r in (1, 2):
        clients = tuple(
            {k: v + rng.normal(0, 0.1, v.shape) for k, v in start.items()} for _ in "ab"
        )
        new = {k: (clients[0][k] + clients[1][k]) / 2 for k in start}
        rounds.append(RoundRecord(r, new, clients, (10, 10), {}))
        start = new
    server = FederationResult(model.init_params(8, 0), tuple(rounds))
    X = rng.integers(0, 3, size=(40, 8)).astype(np.int8)
    y = rng.integers(0, 2, size=40).astype(np.int8)
    cohort = Cohort(X, y, ("",) * 8, reference=Cohort(X[:10] + 1, y[:10], ("",) * 8))
    arena = Arena(
        cohort, Pool(np.arange(40), np.ones(40, bool), np.arange(40) % 2), server, 0, model
    )
    on, off = (
        AlignmentMIA(center=c).run(AlignmentMIA(center=c).observe(arena).view)
        for c in (True, False)
    )
    assert on.ranks is not None and off.ranks is not None
    np.testing.assert_array_equal(on.ranks, off.ranks)
    np.testing.assert_array_equal(on.estimates["client"].values, off.estimates["client"].values)


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
    with pytest.raises(ConfigError, match=r"attack.alignment.center='yes' must be true or"):
        AlignmentMIA(center="yes")  # type: ignore[arg-type]
    cfg = compose_cfg("attack=alignment", "threshold=0.4")
    attack = instantiate(cfg.attack.alignment, name="alignment")
    assert isinstance(attack, AlignmentMIA)
    assert (attack.observer, attack.threshold, attack.kind) == ("server", 0.4, "membership")
    assert attack.center is True
