"""The likelihood-ratio attack (lrt) against its theory: Φ(sqrt(p / 2n)), chance, the aggregate."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from functools import cache

import numpy as np
import pytest
from hydra.utils import instantiate
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from numpy.typing import NDArray
from omegaconf import DictConfig
from scipy.special import ndtr

from fedgen.attacks import Arena
from fedgen.attacks.lrt import LikelihoodRatioMIA, allele_frequencies, lr_statistics
from fedgen.core.errors import ConfigError
from fedgen.core.records import ClientSplit, FederationResult, Pool, RoundRecord, Split
from fedgen.core.seeding import child_rng
from fedgen.data import SyntheticCohort
from fedgen.evaluation.metrics import auc
from fedgen.federation import train_federation
from fedgen.models import MLP, Model, SGDLogistic
from tests.conftest import settings as fed_settings

# Small steps from a zero model: the update is the linear case/control contrast of the theory.
SMALL_STEP = SGDLogistic(learning_rate="constant", eta0=1e-4)
N_TRAIN = 100  # training rows per client


def _federation(
    p: int,
    num_clients: int,
    n_train: int,
    n_out: int,
    *,
    prevalence: float = 0.5,
    model: Model = SMALL_STEP,
    rounds: int = 1,
) -> Arena:
    """A real federation of ``num_clients`` clients with ``n_train`` rows each (1 epoch/round).

    The pool: every client's training rows (members) and ``n_out`` of its held-out rows
    (non-members), each asked about that client.
    """
    cohort = SyntheticCohort(
        n_individuals=num_clients * (n_train + n_out),
        n_snps=p,
        n_causal=10,
        prevalence=prevalence,
        n_reference=1000,
    ).load(child_rng(p, "cohort"))
    rows = child_rng(p, "split").permutation(cohort.n_individuals).astype(np.int64)
    blocks = np.split(rows, num_clients)
    split = Split(tuple(ClientSplit(np.sort(b[:n_train]), np.sort(b[n_train:])) for b in blocks))
    server = train_federation(cohort, split, fed_settings(num_clients, rounds), model, seed=0)
    pool = Pool(
        rows=np.concatenate([np.concatenate([c.train, c.test]) for c in split.clients]),
        is_member=np.concatenate(
            [np.r_[np.ones(n_train, bool), np.zeros(n_out, bool)] for _ in blocks]
        ),
        client=np.repeat(np.arange(num_clients, dtype=np.int64), n_train + n_out),
    )
    return Arena(cohort, pool, server, 0, model, split)


@cache
def _sweep_arena(p: int, prevalence: float = 0.5) -> Arena:
    return _federation(p, num_clients=5, n_train=N_TRAIN, n_out=200, prevalence=prevalence)


def _result_auc(attack: LikelihoodRatioMIA, arena: Arena) -> tuple[float, NDArray[np.float64]]:
    obs = attack.observe(arena)
    result = attack.run(obs.view)
    assert result.ranks is not None
    return auc(result.per_round[0], obs.truth), result.ranks


def _theory(p: int, n: int) -> float:
    return float(ndtr(np.sqrt(p / (2 * n))))


@pytest.mark.parametrize("p", [50, 200, 800])
def test_round_one_follows_the_textbook_curve(p: int) -> None:
    # Member's own term: mean shift p/2 (in units of the step) against SD sqrt(n p / 4) from the
    # client's other rows: AUC = Φ((p/2) / sqrt(2 n p / 4)) = Φ(sqrt(p / 2n)): 0.69, 0.84, 0.98.
    arena = _sweep_arena(p)
    attack = LikelihoodRatioMIA(threshold=0.99)
    round_one, ranks = _result_auc(attack, arena)
    assert round_one == pytest.approx(_theory(p, N_TRAIN), abs=0.05), p
    # Calibrated on the reference panel, threshold 0.99 calls ~1% of the 1,000 non-members.
    called = ndtr(ranks) >= attack.threshold
    assert 0.002 < np.mean(called[~arena.pool.is_member]) < 0.025
    # One round: the headline (summed updates) is round 1's statistic.
    assert auc(ranks, arena.pool.is_member) == pytest.approx(round_one, abs=1e-12)


def test_the_curve_holds_for_unbalanced_cases_through_the_intercept_update() -> None:
    # With 25% cases the coefficient update also carries f_j (n_cases - n_controls), the same
    # for every row's genotype: subtracting 2 f_j times the intercept update removes it. The
    # statistic without that correction (intercept update zeroed) falls well short.
    p = 200
    arena = _sweep_arena(p, prevalence=0.25)
    assert arena.cohort.labels.mean() == pytest.approx(0.25, abs=0.01)
    attack = LikelihoodRatioMIA()
    round_one, _ = _result_auc(attack, arena)
    assert round_one == pytest.approx(_theory(p, N_TRAIN), abs=0.05)
    view = attack.observe(arena).view
    updates = view.training.client_updates(1)
    updates[:, -1] = 0.0
    freqs = allele_frequencies(view.reference_records)
    uncorrected = lr_statistics(view.records, view.labels, updates, freqs)
    picked = uncorrected[np.arange(view.clients.size), view.clients]
    assert auc(picked, arena.pool.is_member) < _theory(p, N_TRAIN) - 0.1


def test_no_signal_when_no_candidate_was_trained_on() -> None:
    # The most leaky federation of the sweep (AUC 0.98 on its members), attacked on held-out
    # rows only, half of them called "members": they are exchangeable, so AUC ~ 0.5 (SE 0.018).
    arena = _sweep_arena(800)
    out = ~arena.pool.is_member
    fake = np.zeros(int(out.sum()), bool)
    fake[::2] = True
    pool = Pool(arena.pool.rows[out], fake, arena.pool.client[out])
    attack = LikelihoodRatioMIA()
    obs = attack.observe(dataclasses.replace(arena, pool=pool))
    result = attack.run(obs.view)
    assert result.ranks is not None
    assert abs(auc(result.ranks, obs.truth) - 0.5) < 0.05
    # Calibrated on individuals outside the federation, the threshold 0.99 calls ~1% members.
    assert np.mean(result.predict(0.99)) < 0.03


def _aggregate_only(server: FederationResult) -> FederationResult:
    rounds = tuple(
        RoundRecord(r.round, r.global_params, (), r.client_num_examples, r.metrics, True)
        for r in server.rounds
    )
    return FederationResult(server.initial_params, rounds)


def test_under_secure_aggregation_only_what_the_aggregate_supports_is_left() -> None:
    # K = 20 clients of n = 50 rows, p = 200: each client's update supports Φ(sqrt(p/2n)) =
    # 0.92; the aggregate of K updates only Φ(sqrt(p/2Kn)) = 0.62.
    p, k, n = 200, 20, 50
    arena = _federation(p, num_clients=k, n_train=n, n_out=50)
    clear, _ = _result_auc(LikelihoodRatioMIA(), arena)
    assert clear == pytest.approx(_theory(p, n), abs=0.05)
    hidden = dataclasses.replace(arena, server=_aggregate_only(arena.server))
    attack = LikelihoodRatioMIA()
    aggregate, ranks = _result_auc(attack, hidden)
    assert attack.observe(hidden).view.training.aggregate_only
    assert aggregate == pytest.approx(_theory(p, k * n), abs=0.05)
    # Client-level statements vanish: asked about another client, a member is as exposed as
    # asked about its own (the score ignores the client), whereas with client updates it
    # looks like a non-member there.
    pool = arena.pool
    elsewhere = dataclasses.replace(pool, client=(pool.client + 1) % k)
    _, moved = _result_auc(attack, dataclasses.replace(hidden, pool=elsewhere))
    np.testing.assert_array_equal(moved, ranks)
    wrong_client, _ = _result_auc(attack, dataclasses.replace(arena, pool=elsewhere))
    assert abs(wrong_client - 0.5) < 0.05


def test_same_inputs_same_scores_bit_for_bit_and_a_peer_with_one_client_is_the_server() -> None:
    arena = _federation(60, num_clients=1, n_train=80, n_out=40, rounds=2)
    attack = LikelihoodRatioMIA()
    first, again = attack.run(attack.observe(arena).view), attack.run(attack.observe(arena).view)
    np.testing.assert_array_equal(first.scores, again.scores)
    assert first.ranks is not None and again.ranks is not None
    np.testing.assert_array_equal(first.ranks, again.ranks)
    assert len(first.per_round) == 2
    for a, b in zip(first.per_round, again.per_round, strict=True):
        np.testing.assert_array_equal(a, b)
    assert np.all((first.scores >= 0) & (first.scores <= 1))
    np.testing.assert_allclose(first.scores, ndtr(first.ranks))
    # One client: its update is the global update, so the peer's test is the server's.
    peer = LikelihoodRatioMIA(observer="peer")
    by_peer = peer.run(peer.observe(arena).view)
    assert by_peer.ranks is not None
    np.testing.assert_allclose(by_peer.ranks, first.ranks, rtol=1e-9, atol=1e-9)
    # rounds=[1]: the headline is round 1's statistic.
    only_first = LikelihoodRatioMIA(rounds=[1])
    np.testing.assert_array_equal(
        only_first.run(only_first.observe(arena).view).ranks, first.per_round[0]
    )
    with pytest.raises(ConfigError, match=r"attack\.lrt\.rounds=\[3\].*rounds 1 to 2"):
        LikelihoodRatioMIA(rounds=[3]).run(attack.observe(arena).view)


def test_ranks_have_no_ties_on_a_saturated_model() -> None:
    # The study's model on 5,000 SNPs overshoots to logits in the thousands; the statistic is
    # linear in the updates, so no rounding flattens it.
    model = SGDLogistic()
    arena = _federation(5000, num_clients=2, n_train=60, n_out=20, model=model, rounds=2)
    logits = model.decision_function(
        arena.server.final_params, arena.cohort.genotypes[arena.pool.rows].astype(np.float64)
    )
    assert np.max(np.abs(logits)) > 1000
    attack = LikelihoodRatioMIA()
    result = attack.run(attack.observe(arena).view)
    assert result.ranks is not None
    assert np.unique(result.ranks).size == result.ranks.size
    for statistic in result.per_round:
        assert np.unique(statistic).size == statistic.size


def test_bad_settings_are_config_errors_naming_the_key() -> None:
    with pytest.raises(ConfigError, match=r"attack\.lrt\.observer.*server, peer"):
        LikelihoodRatioMIA(observer="public")
    with pytest.raises(ConfigError, match=r"attack\.lrt\.threshold"):
        LikelihoodRatioMIA(threshold=2.0)
    with pytest.raises(ConfigError, match=r"attack\.lrt\.rounds"):
        LikelihoodRatioMIA(rounds=[0])
    arena = _sweep_arena(50)
    no_reference = dataclasses.replace(
        arena, cohort=dataclasses.replace(arena.cohort, reference=None)
    )
    with pytest.raises(ConfigError, match=r"reference.*dataset\.n_reference"):
        LikelihoodRatioMIA().observe(no_reference)
    with pytest.raises(ConfigError, match=r"lrt.*needs a linear model"):
        LikelihoodRatioMIA().observe(dataclasses.replace(arena, model=MLP()))


def test_the_config_option_builds_the_attack(compose_cfg: Callable[..., DictConfig]) -> None:
    cfg = compose_cfg("attack=lrt")
    attack = instantiate(cfg.attack.lrt, name="lrt")
    assert isinstance(attack, LikelihoodRatioMIA)
    assert (attack.threshold, attack.observer, attack.rounds) == (0.99, "server", None)
    assert attack.kind == "membership"


@settings(max_examples=30, deadline=None)
@given(
    x=arrays(np.int8, (3, 4), elements=st.integers(0, 2)),
    y=arrays(np.int8, 3, elements=st.integers(0, 1)),
    u=arrays(np.float64, (2, 5), elements=st.floats(-1, 1)),
    f=arrays(np.float64, 4, elements=st.floats(0.05, 0.95)),
)
def test_the_statistic_is_the_linearised_log_likelihood_ratio(
    x: NDArray[np.int8], y: NDArray[np.int8], u: NDArray[np.float64], f: NDArray[np.float64]
) -> None:
    # Sankararaman's log LR of "x is in a pool of allele frequencies f + e d" against "x is
    # from the reference f": Σ_j x_j log((f+ed)/f) + (2 - x_j) log((1-f-ed)/(1-f)); its slope in
    # e at 0 is the statistic, for the pool deviation d = (Δw - 2 f Δb) / 2 signed by the label.
    got = lr_statistics(x.astype(np.float64), y, u, f)
    e = 1e-7
    for i in range(3):
        for k in range(2):
            d = (u[k, :4] - 2 * f * u[k, 4]) / 2 * (2 * int(y[i]) - 1)
            xi = x[i].astype(np.float64)
            log_lr = np.sum(xi * np.log1p(e * d / f) + (2 - xi) * np.log1p(-e * d / (1 - f)))
            assert got[i, k] == pytest.approx(log_lr / e, rel=1e-5, abs=1e-5)


def test_reference_frequencies_are_clipped_away_from_zero_and_one() -> None:
    panel = np.array([[0.0, 2.0, 1.0], [0.0, 2.0, 0.0]])
    np.testing.assert_allclose(allele_frequencies(panel), [0.01, 0.99, 0.25])
