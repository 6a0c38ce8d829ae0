"""Client-side defenses (clip, local DP, sparsification) and the Gaussian accountant."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import dp_accounting
import numpy as np
import pytest
from dp_accounting import pld, rdp
from flwr.app import Context, Message
from hypothesis import given
from hypothesis import settings as hsettings
from hypothesis import strategies as st
from numpy.typing import NDArray
from omegaconf import DictConfig
from scipy.optimize import brentq
from scipy.special import log_ndtr

from fedgen.attacks import Arena, ConfidenceMIA, GradientNormMIA
from fedgen.core.errors import ConfigError
from fedgen.core.records import Cohort, FederationResult, Params
from fedgen.core.seeding import child_rng
from fedgen.data import SyntheticCohort
from fedgen.defenses import BaseDefense, ClientDP, Clip, Sparsify, TrainingShape
from fedgen.defenses.accounting import gaussian_epsilon
from fedgen.defenses.clip import clip_update
from fedgen.defenses.sparsify import kept_count
from fedgen.evaluation.assess import assess
from fedgen.evaluation.pools import PaperPool
from fedgen.experiment.build import build_training
from fedgen.federation import train_federation
from fedgen.federation.arrays import from_record, to_record
from fedgen.models import SGDLogistic
from tests.conftest import make_split, settings

SEED = 7


def _train(cohort: Cohort, defenses: Sequence[Any] = (), rounds: int = 2) -> FederationResult:
    split = make_split(cohort, 3)
    return train_federation(cohort, split, settings(3, rounds), SGDLogistic(), SEED, defenses)


def _flat(params: Params) -> NDArray[np.float64]:
    return np.concatenate([np.ravel(a) for a in params.values()])


def _updates(result: FederationResult) -> list[list[NDArray[np.float64]]]:
    """Per round, each client's recorded update: what it sent minus the global it received."""
    out, previous = [], result.initial_params
    for r in result.rounds:
        out.append([_flat(c) - _flat(previous) for c in r.client_params])
        previous = r.global_params
    return out


def _assert_same_run(a: FederationResult, b: FederationResult) -> None:
    for ra, rb in zip(a.rounds, b.rounds, strict=True):
        assert ra.metrics == rb.metrics
        for ca, cb in zip(ra.client_params, rb.client_params, strict=True):
            for k in ca:
                np.testing.assert_array_equal(ca[k], cb[k])
        for k in ra.global_params:
            np.testing.assert_array_equal(ra.global_params[k], rb.global_params[k])


class SendGlobal(BaseDefense):
    """Test-only defense: each client sends back the global model it got (a zero update)."""

    def __init__(self) -> None:
        super().__init__("send_global")

    def client_mods(self, seed: int) -> Sequence[Any]:
        def mod(msg: Message, context: Context, call_next: Callable[..., Message]) -> Message:
            reply = call_next(msg, context)
            reply.content.array_records["arrays"] = to_record(
                from_record(msg.content.array_records["arrays"])
            )
            return reply

        return [mod]


# --- Clip ---------------------------------------------------------------------------------


def test_clip_with_infinite_norm_is_no_defense_bit_for_bit(tiny_cohort: Cohort) -> None:
    _assert_same_run(_train(tiny_cohort, [Clip(clip_norm=math.inf)]), _train(tiny_cohort))


def test_clip_bounds_every_recorded_update(tiny_cohort: Cohort) -> None:
    plain = _updates(_train(tiny_cohort))
    norms = sorted(float(np.linalg.norm(u)) for u in plain[0])
    clip_norm = (norms[0] + norms[1]) / 2  # one client under the bound, two over
    clipped = _updates(_train(tiny_cohort, [Clip(clip_norm=clip_norm)], rounds=3))
    for updates in clipped:
        for u in updates:
            assert np.linalg.norm(u) <= clip_norm * (1 + 1e-9)
    # Round 1 starts from the same model: an update within the bound is sent untouched, a
    # larger one is scaled onto the sphere of radius C in the same direction.
    for mine, theirs in zip(clipped[0], plain[0], strict=True):
        n = float(np.linalg.norm(theirs))
        if n <= clip_norm:
            np.testing.assert_array_equal(mine, theirs)
        else:
            assert np.linalg.norm(mine) == pytest.approx(clip_norm, rel=1e-9)
            np.testing.assert_allclose(mine, theirs * (clip_norm / n), rtol=1e-9, atol=1e-12)
    assert sum(float(np.linalg.norm(u)) > clip_norm for u in plain[0]) == 2


def test_a_zero_update_passes_every_client_defense(tiny_cohort: Cohort) -> None:
    # Flower's clip_inputs_inplace divides by the update's norm: it raises on this one.
    zero = np.zeros(5)
    assert clip_update(zero, 1.0) is zero
    for defense in (Clip(clip_norm=1.0), ClientDP(noise_multiplier=0.0), Sparsify(k=0.1)):
        result = _train(tiny_cohort, [SendGlobal(), defense], rounds=1)
        for u in _updates(result)[0]:
            np.testing.assert_array_equal(u, 0.0)


# --- ClientDP -----------------------------------------------------------------------------


def test_client_dp_without_noise_or_clipping_is_no_defense_bit_for_bit(
    tiny_cohort: Cohort,
) -> None:
    defended = _train(tiny_cohort, [ClientDP(clip_norm=math.inf, noise_multiplier=0.0)])
    _assert_same_run(defended, _train(tiny_cohort))


def test_client_dp_sends_the_clipped_update_plus_noise_from_its_named_stream(
    tiny_cohort: Cohort,
) -> None:
    clip_norm, sigma = 0.5, 0.3
    plain = _train(tiny_cohort, rounds=1)
    np.random.seed(123)  # noqa: NPY002
    expected_next = np.random.random()  # noqa: NPY002
    np.random.seed(123)  # noqa: NPY002
    noisy = _train(tiny_cohort, [ClientDP(clip_norm=clip_norm, noise_multiplier=sigma)], 1)
    assert np.random.random() == expected_next  # noqa: NPY002  (the global state is untouched)
    sent = _flat(plain.initial_params)
    for pid, (mine, theirs) in enumerate(
        zip(noisy.rounds[0].client_params, plain.rounds[0].client_params, strict=True)
    ):
        delta = _flat(theirs) - sent
        assert np.linalg.norm(delta) > clip_norm  # the clipping is exercised too
        z = child_rng(SEED, f"defense/client_dp/client/{pid}/round/1").standard_normal(sent.size)
        expected = sent + delta * (clip_norm / np.linalg.norm(delta)) + sigma * clip_norm * z
        np.testing.assert_allclose(_flat(mine), expected, rtol=1e-12, atol=1e-12)


def test_client_dp_noise_is_reproducible_and_ignores_the_global_random_state(
    tiny_cohort: Cohort,
) -> None:
    dp = [ClientDP(clip_norm=1.0, noise_multiplier=1.0)]
    np.random.seed(1)  # noqa: NPY002
    first = _train(tiny_cohort, dp)
    np.random.seed(2)  # noqa: NPY002
    second = _train(tiny_cohort, dp)
    _assert_same_run(first, second)
    split = make_split(tiny_cohort, 3)
    other_seed = train_federation(tiny_cohort, split, settings(3, 2), SGDLogistic(), 8, dp)
    assert not np.array_equal(
        first.rounds[0].client_params[0]["coef"], other_seed.rounds[0].client_params[0]["coef"]
    )
    # Each client and each round draws its own noise.
    u = _updates(first)
    assert not np.allclose(u[0][0], u[0][1]) and not np.allclose(u[0][0], u[1][0])


def test_client_dp_accounts_every_round_at_the_client_level() -> None:
    shape = TrainingShape(
        num_clients=3, num_rounds=10, local_epochs=1, client_train_sizes=(80,) * 3
    )
    account = ClientDP(clip_norm=1.0, noise_multiplier=2.0, delta=1e-6).account(shape)
    assert account.epsilon == gaussian_epsilon(2.0, 10, 1e-6)
    assert (account.delta, account.unit, account.accountant) == (
        1e-6,
        "client",
        "dp-accounting RDP",
    )
    assert "no sampling amplification" in account.assumptions
    assert "10 rounds" in account.assumptions
    assert ClientDP(noise_multiplier=0.0).account(shape).epsilon == math.inf
    more_noise = ClientDP(noise_multiplier=4.0, delta=1e-6).account(shape).epsilon
    fewer_rounds = ClientDP(noise_multiplier=2.0, delta=1e-6).account(
        TrainingShape(3, 2, 1, (80,) * 3)
    )
    assert more_noise < account.epsilon and fewer_rounds.epsilon < account.epsilon


def _membership_aucs(cohort: Cohort, defenses: Sequence[Any]) -> dict[str, tuple[float, ...]]:
    """AUC and its bootstrap interval of each membership attack, by ``<name>/<model>``."""
    split = make_split(cohort, 3)
    model = SGDLogistic()
    result = train_federation(cohort, split, settings(3, 2), model, SEED, defenses)
    pool = PaperPool(n_bootstrap=200).pool(split, child_rng(0, "evaluation"))
    arena = Arena(cohort, pool, result, SEED, model)
    out: dict[str, tuple[float, ...]] = {}
    for attack in (
        GradientNormMIA(model="client"),
        GradientNormMIA(model="global"),
        ConfidenceMIA(model="client"),
        ConfidenceMIA(model="global"),
    ):
        m = assess(attack, arena, 200).metrics
        out[f"{attack.name}/{attack.model}"] = (m["auc"], m["auc_ci_low"], m["auc_ci_high"])
    return out


def test_huge_client_noise_collapses_every_membership_attack_to_chance() -> None:
    # More SNPs than training rows per client: the undefended attacks see real leakage.
    cohort = SyntheticCohort(n_individuals=300, n_snps=2000).load(child_rng(0, "cohort"))
    plain = _membership_aucs(cohort, [])
    noised = _membership_aucs(cohort, [ClientDP(clip_norm=1.0, noise_multiplier=1e3)])
    for name, (auc, low, _high) in plain.items():
        assert low > 0.5 and auc > 0.65, (name, auc, low)
    for name, (auc, low, high) in noised.items():
        assert low <= 0.5 <= high and abs(auc - 0.5) < 0.1, (name, auc, low, high)


# --- Sparsify -----------------------------------------------------------------------------


def test_top_k_sends_only_the_largest_coordinates(tiny_cohort: Cohort) -> None:
    k = 0.2
    plain = _updates(_train(tiny_cohort))
    sparse = _updates(_train(tiny_cohort, [Sparsify(k=k, mode="top")]))
    d = plain[0][0].size
    n = kept_count(k, d)
    assert (d, n) == (21, 5)  # 20 SNPs and an intercept; ceil(0.2 * 21)
    for updates in sparse:
        for u in updates:
            assert np.count_nonzero(u) <= n
    for mine, theirs in zip(sparse[0], plain[0], strict=True):
        kept = np.flatnonzero(mine)
        assert kept.size == n
        # Every kept |update| is at least every dropped one, and is the client's own value.
        assert np.abs(theirs[kept]).min() >= np.abs(np.delete(theirs, kept)).max()
        np.testing.assert_array_equal(mine[kept], theirs[kept])


def test_random_k_keeps_k_coordinates_drawn_from_the_seed(tiny_cohort: Cohort) -> None:
    sparse = [Sparsify(k=0.2, mode="random")]
    np.random.seed(1)  # noqa: NPY002
    first = _train(tiny_cohort, sparse)
    np.random.seed(2)  # noqa: NPY002
    _assert_same_run(first, _train(tiny_cohort, sparse))
    plain = _updates(_train(tiny_cohort))
    updates = _updates(first)
    for u in (u for round_updates in updates for u in round_updates):
        assert np.count_nonzero(u) <= 5
    masks = set()
    for pid, (mine, theirs) in enumerate(zip(updates[0], plain[0], strict=True)):
        kept = np.sort(
            child_rng(SEED, f"defense/sparsify/client/{pid}/round/1").choice(21, 5, replace=False)
        )
        np.testing.assert_array_equal(mine[kept], theirs[kept])
        np.testing.assert_array_equal(np.delete(mine, kept), 0.0)
        masks.add(tuple(kept))
    assert len(masks) > 1  # each client draws its own coordinates


@pytest.mark.parametrize("mode", ["top", "random"])
def test_sparsify_keeping_everything_is_no_defense_bit_for_bit(
    tiny_cohort: Cohort, mode: str
) -> None:
    _assert_same_run(_train(tiny_cohort, [Sparsify(k=1, mode=mode)]), _train(tiny_cohort))


def test_kept_count_is_the_ceiling_of_the_fraction() -> None:
    assert [kept_count(k, 100) for k in (0.001, 0.07, 0.071, 0.5, 1.0)] == [1, 7, 8, 50, 100]


# --- Configuration ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("build", "key"),
    [
        (lambda: Clip(clip_norm=0.0), "defense.clip.clip_norm=0.0"),
        (lambda: Clip(clip_norm=float("nan")), "defense.clip.clip_norm=nan"),
        (lambda: Clip(clip_norm="1"), "defense.clip.clip_norm='1'"),  # type: ignore[arg-type]
        (lambda: ClientDP(clip_norm=-1.0), "defense.client_dp.clip_norm=-1.0"),
        (lambda: ClientDP(noise_multiplier=-0.5), "defense.client_dp.noise_multiplier=-0.5"),
        (lambda: ClientDP(noise_multiplier=math.inf), "defense.client_dp.noise_multiplier=inf"),
        (lambda: ClientDP(delta=1.0), "defense.client_dp.delta=1.0"),
        (lambda: ClientDP(clip_norm=math.inf), "defense.client_dp.clip_norm=inf"),
        (lambda: Sparsify(k=5), "defense.sparsify.k=5"),
        (lambda: Sparsify(k=0.0), "defense.sparsify.k=0.0"),
        (lambda: Sparsify(k=True), "defense.sparsify.k=True"),
        (lambda: Sparsify(mode="bottom"), "defense.sparsify.mode='bottom'"),
        (lambda: Sparsify(name="sp", k=2.0), "defense.sp.k=2.0"),
    ],
)
def test_invalid_parameters_name_their_key(build: Callable[[], Any], key: str) -> None:
    with pytest.raises(ConfigError) as err:
        build()
    assert str(err.value).startswith(key)


@pytest.mark.parametrize(
    ("option", "kind"), [("clip", Clip), ("client_dp", ClientDP), ("sparsify", Sparsify)]
)
def test_each_option_composes_with_its_defaults(
    compose_cfg: Callable[..., DictConfig], option: str, kind: type
) -> None:
    (defense,) = build_training(compose_cfg(f"defense={option}")).defenses
    assert isinstance(defense, kind) and defense.name == option


def test_composed_defenses_build_in_their_configured_order(
    compose_cfg: Callable[..., DictConfig],
) -> None:
    cfg = compose_cfg("defense=[clip,client_dp]", "defense.clip.clip_norm=inf")
    clip, dp = build_training(cfg).defenses
    assert isinstance(clip, Clip) and isinstance(dp, ClientDP)
    assert (clip.name, dp.name) == ("clip", "client_dp")
    assert clip.clip_norm == math.inf
    cfg = compose_cfg("defense=[client_dp,clip]")
    assert [d.name for d in build_training(cfg).defenses] == ["client_dp", "clip"]


# --- Accounting ---------------------------------------------------------------------------


def _dp_accounting_epsilon(sigma: float, n: int, delta: float, q: float = 1.0) -> float:
    event: dp_accounting.DpEvent = dp_accounting.GaussianDpEvent(sigma)
    orders = None  # dp-accounting's default grid, 1.1 ... 1024
    if q < 1:
        event = dp_accounting.PoissonSampledDpEvent(q, event)
    else:  # the closed-form Gaussian also gets orders 2^11 ... 2^20
        orders = [*rdp.rdp_privacy_accountant.DEFAULT_RDP_ORDERS, *(2.0**k for k in range(11, 21))]
    accountant = rdp.RdpAccountant(orders=orders)
    accountant.compose(event, n)
    return float(accountant.get_epsilon(delta))


@pytest.mark.parametrize(
    ("sigma", "n", "delta", "q"),
    [
        (1.0, 1, 1e-5, 1.0),
        (1.0, 10, 1e-5, 1.0),
        (5.0, 10, 1e-6, 1.0),
        (521.0, 1, 1e-8, 1.0),
        (1.1, 1000, 1e-5, 0.01),
    ],
)
def test_gaussian_epsilon_is_dp_accountings_rdp_value(
    sigma: float, n: int, delta: float, q: float
) -> None:
    assert gaussian_epsilon(sigma, n, delta, q) == _dp_accounting_epsilon(sigma, n, delta, q)


def test_rdp_epsilon_bounds_the_near_exact_pld_value_from_above() -> None:
    # dp-accounting's PLD accountant is (up to a pessimistic discretisation) exact: the RDP
    # bound must lie above it, and not far above.
    for sigma, n in ((1.0, 1), (2.0, 10), (5.0, 10)):
        accountant = pld.PLDAccountant()
        accountant.compose(dp_accounting.GaussianDpEvent(sigma), n)
        exact = float(accountant.get_epsilon(1e-5))
        assert exact <= gaussian_epsilon(sigma, n, 1e-5) <= 1.15 * exact


def _exact_gaussian_delta(epsilon: float, mu: float) -> float:
    """delta(epsilon) of a mu-GDP mechanism (Balle & Wang 2018 Thm 8; Dong, Roth & Su 2019).

    n Gaussian mechanisms of noise multiplier sigma compose exactly to mu = sqrt(n) / sigma.
    """
    return float(
        np.exp(log_ndtr(-epsilon / mu + mu / 2))
        - np.exp(epsilon + log_ndtr(-epsilon / mu - mu / 2))
    )


@hsettings(max_examples=60, deadline=None)
@given(
    sigma=st.floats(0.5, 20.0),
    n=st.integers(1, 50),
    log_delta=st.floats(-8.0, -3.0),
)
def test_gaussian_epsilon_is_at_least_the_exact_value(
    sigma: float, n: int, log_delta: float
) -> None:
    delta = 10.0**log_delta
    mu = math.sqrt(n) / sigma
    eps = gaussian_epsilon(sigma, n, delta)
    assert _exact_gaussian_delta(eps, mu) <= delta * (1 + 1e-6)  # a valid bound
    exact = brentq(lambda e: _exact_gaussian_delta(e, mu) - delta, 0.0, eps + 1.0)
    assert eps <= 1.3 * exact + 1e-3  # and a useful one


@hsettings(max_examples=40, deadline=None)
@given(epsilon=st.floats(0.01, 0.99), log_delta=st.floats(-10.0, -2.0))
def test_classic_calibration_is_never_tighter(epsilon: float, log_delta: float) -> None:
    # Dwork & Roth 2014 Thm A.1: sigma = sqrt(2 ln(1.25/delta)) / epsilon gives (epsilon,
    # delta)-DP for epsilon < 1 (what Flower's LocalDpMod uses); the accountant must agree.
    delta = 10.0**log_delta
    sigma = math.sqrt(2 * math.log(1.25 / delta)) / epsilon
    assert gaussian_epsilon(sigma, 1, delta) <= epsilon


@hsettings(max_examples=25, deadline=None)  # a subsampled account takes ~0.1 s
@given(
    sigmas=st.tuples(st.floats(0.3, 50.0), st.floats(0.3, 50.0)).filter(lambda s: s[0] != s[1]),
    n=st.integers(1, 200),
    q=st.sampled_from([1.0, 0.5, 0.01]),
)
def test_gaussian_epsilon_decreases_with_noise(
    sigmas: tuple[float, float], n: int, q: float
) -> None:
    low, high = sorted(sigmas)
    assert gaussian_epsilon(high, n, 1e-5, q) <= gaussian_epsilon(low, n, 1e-5, q)


def test_gaussian_epsilon_edges_and_arguments() -> None:
    assert gaussian_epsilon(0.0, 5, 1e-5) == math.inf
    assert gaussian_epsilon(1.0, 0, 1e-5) == 0.0
    assert gaussian_epsilon(1.0, 100, 1e-5, 0.01) < gaussian_epsilon(1.0, 100, 1e-5)
    steps = np.int64(3)  # e.g. a step count computed with numpy
    assert gaussian_epsilon(1.0, steps, 1e-5) == gaussian_epsilon(1.0, 3, 1e-5)  # type: ignore[arg-type]
    for args in (
        (-1.0, 1, 1e-5),
        (math.inf, 1, 1e-5),
        (1.0, -1, 1e-5),
        (1.0, 1.5, 1e-5),
        (1.0, 1, 0.0),
        (1.0, 1, 1.0),
        (1.0, 1, 1e-5, 0.0),
        (1.0, 1, 1e-5, 1.5),
    ):
        with pytest.raises(ValueError):
            gaussian_epsilon(*args)
