"""Central DP (server-side), DP-SGD (in local training) and SNP suppression.

The central finding: central DP's noise is added by the server, so attacks on the released
global model fall to chance while attacks on the client models the server received do not move.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import dp_accounting
import numpy as np
import pytest
from dp_accounting import rdp
from flwr.serverapp.strategy import FedAvg
from flwr.supercore.differential_privacy import compute_adaptive_noise_params
from omegaconf import DictConfig
from scipy.special import expit

from fedgen.attacks import Arena, ConfidenceMIA, GradientNormMIA
from fedgen.core.errors import ConfigError
from fedgen.core.records import Cohort, FederationResult, Params, Split
from fedgen.core.seeding import child_rng
from fedgen.data import SyntheticCohort
from fedgen.defenses import DPSGD, CentralDP, SNPSuppression, TrainingShape
from fedgen.defenses.central_dp import SeededServerSideAdaptiveClipping
from fedgen.defenses.dp_sgd import ROUND_KEY, unflatten
from fedgen.evaluation.assess import assess
from fedgen.evaluation.pools import PaperPool
from fedgen.experiment.build import build_training
from fedgen.federation import train_federation
from fedgen.federation.data import client_data
from fedgen.models import MLP, Model, SGDLogistic
from fedgen.models.base import flatten
from tests.conftest import make_split, settings

INF = float("inf")


def _train(
    cohort: Cohort,
    defenses: list[Any] | None = None,
    *,
    model: Model | None = None,
    rounds: int = 2,
    epochs: int = 1,
    seed: int = 7,
    split: Split | None = None,
) -> FederationResult:
    split = split or make_split(cohort, 3)
    return train_federation(
        cohort, split, settings(3, rounds, epochs), model or SGDLogistic(), seed, defenses or []
    )


def _equal(a: FederationResult, b: FederationResult) -> bool:
    return all(
        np.array_equal(ra.global_params[k], rb.global_params[k])
        and all(
            np.array_equal(ca[k], cb[k])
            for ca, cb in zip(ra.client_params, rb.client_params, strict=True)
        )
        for ra, rb in zip(a.rounds, b.rounds, strict=True)
        for k in ra.global_params
    )


def _epsilon(z: float, count: int, delta: float, q: float = 1.0) -> float:
    """dp-accounting's RDP epsilon, computed here independently of fedgen."""
    event: Any = dp_accounting.GaussianDpEvent(z)
    if q < 1:
        event = dp_accounting.PoissonSampledDpEvent(q, event)
    accountant = rdp.RdpAccountant()
    accountant.compose(event, count)
    return float(accountant.get_epsilon(delta))


# --- central DP ------------------------------------------------------------------------------


@pytest.mark.parametrize("model", [SGDLogistic(), MLP(hidden_units=4)], ids=["linear", "mlp"])
def test_central_dp_without_noise_or_clipping_is_fedavg(tiny_cohort: Cohort, model: Model) -> None:
    plain = _train(tiny_cohort, model=model, rounds=3)
    dp = _train(
        tiny_cohort, [CentralDP(noise_multiplier=0.0, clip_norm=INF)], model=model, rounds=3
    )
    # Bit for bit in every round: no noise, no clipping (replies aggregated as received), and
    # the same FedAvg.
    for a, b in zip(plain.rounds, dp.rounds, strict=True):
        assert a.metrics == b.metrics
        for k in a.global_params:
            np.testing.assert_array_equal(b.global_params[k], a.global_params[k])
        for ca, cb in zip(a.client_params, b.client_params, strict=True):
            for k in ca:
                np.testing.assert_array_equal(cb[k], ca[k])


@pytest.fixture(scope="module")
def leaky() -> tuple[Cohort, Split]:
    """Many more SNPs than rows per client: membership leaks (AUC > 0.9 undefended)."""
    cohort = SyntheticCohort(n_individuals=300, n_snps=2000).load(child_rng(0, "cohort"))
    return cohort, make_split(cohort, 3)


def _aucs(cohort: Cohort, split: Split, result: FederationResult, model: Model) -> dict[str, float]:
    pool = PaperPool(n_bootstrap=0).pool(split, child_rng(0, "evaluation"))
    arena = Arena(cohort, pool, result, 0, model)
    attacks = [
        attack(model=which)
        for attack in (ConfidenceMIA, GradientNormMIA)
        for which in ("global", "client")
    ]
    return {f"{a.name}/{a.model}": assess(a, arena, 0).metrics["auc"] for a in attacks}


def test_central_dp_protects_the_released_model_not_the_servers_view(
    leaky: tuple[Cohort, Split],
) -> None:
    cohort, split = leaky
    model = SGDLogistic(learning_rate="constant", eta0=0.001)  # model=sgd_logistic_fit

    def run(defenses: list[Any]) -> FederationResult:
        # One round: the client models the server receives start from the clean initial model.
        return _train(cohort, defenses, model=model, rounds=1, epochs=5, seed=0, split=split)

    plain, noisy = run([]), run([CentralDP(noise_multiplier=1000.0, clip_norm=1.0)])
    before, after = _aucs(cohort, split, plain, model), _aucs(cohort, split, noisy, model)
    for attack in ("mia", "gmia"):
        assert before[f"{attack}/global"] > 0.9  # the released model leaks...
        assert abs(after[f"{attack}/global"] - 0.5) < 0.05  # ...until the server noises it
        # The server's own view is untouched: the same updates, the same attack, the same AUC.
        assert after[f"{attack}/client"] == before[f"{attack}/client"] > 0.9
    for a, b in zip(plain.rounds[0].client_params, noisy.rounds[0].client_params, strict=True):
        for k in a:
            np.testing.assert_array_equal(a[k], b[k])


def test_central_dp_noise_comes_from_the_seed_not_the_global_state(tiny_cohort: Cohort) -> None:
    def run(defense: CentralDP, global_seed: int, seed: int = 7) -> FederationResult:
        np.random.seed(global_seed)  # noqa: NPY002  (the global state must not matter)
        return _train(tiny_cohort, [defense], seed=seed, rounds=2)

    fixed = CentralDP(noise_multiplier=1.0, clip_norm=0.5)
    adaptive = CentralDP(
        noise_multiplier=0.5, clipping="adaptive", clip_norm=0.5, clipped_count_stddev=1.0
    )
    for defense in (fixed, adaptive):
        first, second = run(defense, 1), run(defense, 2)
        assert _equal(first, second)
        assert not _equal(first, run(defense, 1, seed=8))  # another seed, another noise
    # The noise is the named stream's: round 1's global model is the clean mean plus exactly
    # N(0, (z C / m)^2) drawn from `defense/central_dp/server/round/1`, array by array.
    clean = _train(tiny_cohort, [CentralDP(noise_multiplier=0.0, clip_norm=0.5)], rounds=1)
    noisy = _train(tiny_cohort, [fixed], rounds=1)
    rng = child_rng(7, "defense/central_dp/server/round/1")
    for k, mean in clean.rounds[0].global_params.items():
        expected = mean + rng.normal(0.0, 1.0 * 0.5 / 3, mean.shape)
        np.testing.assert_array_equal(noisy.rounds[0].global_params[k], expected)


@pytest.mark.parametrize(("z", "rounds"), [(0.5, 10), (1.0, 10), (2.0, 100)])
def test_central_dp_epsilon_is_dp_accountings(z: float, rounds: int) -> None:
    equal = TrainingShape(
        num_clients=5, num_rounds=rounds, local_epochs=1, client_train_sizes=(80,) * 5
    )
    account = CentralDP(noise_multiplier=z, clip_norm=1.0).account(equal)
    assert account is not None
    assert account.unit == "client" and account.delta == 1e-5
    assert account.epsilon == pytest.approx(_epsilon(z, rounds, 1e-5), rel=1e-12)
    # FedAvg weights by rows: the largest client moves the mean most, so its multiplier is lower.
    unequal = TrainingShape(5, rounds, 1, (40, 60, 80, 100, 120))
    weighted = CentralDP(noise_multiplier=z, clip_norm=1.0).account(unequal)
    assert weighted is not None
    assert weighted.epsilon == pytest.approx(_epsilon(z * 80 / 120, rounds, 1e-5), rel=1e-12)
    # Adaptive clipping spends the same budget on the updates and the clipped count together.
    adaptive = CentralDP(noise_multiplier=z, clipping="adaptive", clipped_count_stddev=5.0)
    spent = adaptive.account(equal)
    assert spent is not None
    assert spent.epsilon == pytest.approx(account.epsilon, rel=1e-9)


def test_central_dp_without_noise_claims_nothing() -> None:
    shape = TrainingShape(3, 10, 1, (80, 80, 80))
    account = CentralDP(noise_multiplier=0.0, clip_norm=1.0).account(shape)
    assert account is not None and account.epsilon == math.inf


def test_adaptive_clipping_moves_the_norm_towards_the_target_quantile(tiny_cohort: Cohort) -> None:
    defense = CentralDP(
        noise_multiplier=0.0, clipping="adaptive", initial_clip_norm=1.0, target_quantile=0.5
    )
    wrapper = defense.wrap_strategy(FedAvg(), 0, 4)
    assert isinstance(wrapper, SeededServerSideAdaptiveClipping)
    wrapper._geometric_update(wrapper._noisy_fraction(count=4, total=4))  # all clipped
    assert wrapper.clipping_norm == pytest.approx(math.exp(0.2 * 0.5))  # C grows
    wrapper._geometric_update(wrapper._noisy_fraction(count=0, total=4))  # none clipped
    assert wrapper.clipping_norm == pytest.approx(1.0)  # and shrinks back
    # End to end: Flower's clipping and aggregation with the seeded noise run every round.
    result = _train(
        tiny_cohort,
        [
            CentralDP(
                noise_multiplier=0.5,
                clipping="adaptive",
                initial_clip_norm=0.01,
                clipped_count_stddev=1.0,
            )
        ],
        rounds=3,
    )
    assert len(result.rounds) == 3
    assert all(np.isfinite(flatten(r.global_params)).all() for r in result.rounds)


def test_adaptive_noise_is_scaled_by_the_norm_the_round_clipped_to(tiny_cohort: Cohort) -> None:
    def adaptive(z: float) -> CentralDP:
        return CentralDP(
            noise_multiplier=z,
            clipping="adaptive",
            initial_clip_norm=0.05,
            clipped_count_stddev=1.0,
        )

    clean = _train(tiny_cohort, [adaptive(0.0)], rounds=1).rounds[0].global_params
    noisy = _train(tiny_cohort, [adaptive(0.5)], rounds=1).rounds[0].global_params
    # Flower's effective update multiplier (the count takes its share of the budget) times the
    # round's clipping norm 0.05 -- not the norm updated for round 2 (here all 3 updates are
    # clipped, so round 2's norm is larger).
    _, z_update = compute_adaptive_noise_params(0.5, 3, 1.0)
    rng = child_rng(7, "defense/central_dp/server/round/1")
    for k, mean in clean.items():
        expected = mean + rng.normal(0.0, z_update * 0.05 / 3, mean.shape)
        np.testing.assert_array_equal(noisy[k], expected)


@pytest.mark.parametrize(
    ("kwargs", "key"),
    [
        ({"noise_multiplier": -1.0, "clip_norm": 1.0}, "noise_multiplier"),
        ({"noise_multiplier": "lots", "clip_norm": 1.0}, "noise_multiplier"),
        ({"clipping": "median", "clip_norm": 1.0}, "clipping"),
        ({"clip_norm": 0.0}, "clip_norm"),
        ({}, "clip_norm"),
        ({"clip_norm": 1.0, "delta": 1.0}, "delta"),
        ({"clip_norm": 1.0, "target_quantile": 0.5}, "target_quantile"),
        ({"clipping": "adaptive", "initial_clip_norm": -1.0}, "initial_clip_norm"),
        ({"clipping": "adaptive", "clip_norm": 1.0, "initial_clip_norm": 2.0}, "initial_clip_norm"),
        ({"clipping": "adaptive", "target_quantile": 1.5}, "target_quantile"),
        ({"clipping": "adaptive", "clip_norm_lr": 0.0}, "clip_norm_lr"),
        ({"clipping": "adaptive", "clipped_count_stddev": -1.0}, "clipped_count_stddev"),
    ],
)
def test_central_dp_settings_are_checked(kwargs: dict[str, Any], key: str) -> None:
    with pytest.raises(ConfigError, match=rf"defense\.central_dp\.{key}"):
        CentralDP(**kwargs)


def test_adaptive_noise_too_large_for_the_clipped_count_is_a_config_error() -> None:
    defense = CentralDP(noise_multiplier=1.0, clipping="adaptive")  # count std 3 / 20 < 1 / 2
    with pytest.raises(ConfigError, match=r"defense\.central_dp\.clipped_count_stddev"):
        defense.wrap_strategy(FedAvg(), 0, 3)


# --- DP-SGD ----------------------------------------------------------------------------------


def _rows(cohort: Cohort, n: int = 40) -> tuple[np.ndarray, np.ndarray]:
    return cohort.genotypes[:n].astype(np.float64), cohort.labels[:n]


def test_dp_sgd_step_clips_each_sample_then_noises_the_sum(tiny_cohort: Cohort) -> None:
    X, y = _rows(tiny_cohort)
    n, p = X.shape
    q, C, sigma, lr = 0.7, 2.0, 0.8, 0.1  # round(1 / 0.7) = 1 step per epoch
    defense = DPSGD(clip_norm=C, noise_multiplier=sigma, sampling_rate=q, learning_rate=lr)
    start: Params = {"coef": np.linspace(-0.3, 0.3, p), "intercept": np.array([0.1])}
    new, state = defense.wrap_model(SGDLogistic(), 0).fit(
        start, X, y, epochs=1, seed=123, state=None
    )
    # The same step by hand, from the stream the wrapper draws: batch mask, then noise.
    rng = child_rng(123, "defense/dp_sgd/round/1")
    batch = rng.random(n) < q
    noise = rng.normal(0.0, sigma * C, p + 1)
    theta = np.append(start["coef"], start["intercept"])
    grads = []
    for i in np.flatnonzero(batch):
        x1 = np.append(X[i], 1.0)
        g = (expit(x1 @ theta) - y[i]) * x1
        grads.append(g * min(1.0, C / np.linalg.norm(g)))
    norms = [np.linalg.norm(g) for g in grads]
    assert min(norms) < C - 1e-9 and max(norms) == pytest.approx(C)  # some clipped, some not
    expected = theta - lr * (np.sum(grads, axis=0) + noise) / (q * n)
    np.testing.assert_allclose(flatten(new), expected, rtol=1e-12, atol=1e-14)
    assert state[ROUND_KEY][0] == 1.0


@pytest.mark.parametrize("model", [SGDLogistic(), MLP(hidden_units=3)], ids=["linear", "mlp"])
def test_dp_sgd_without_noise_or_clipping_is_gradient_descent(
    tiny_cohort: Cohort, model: Model
) -> None:
    """Oracle: sigma = 0, C = inf and q = 1 is full-batch gradient descent on the mean gradient.

    With ``q = 1`` every row is in every batch and the expected batch size is ``n``, so a step
    is ``theta - lr mean_i g_i``: no randomness is left, and ``epochs`` steps are taken.
    """
    X, y = _rows(tiny_cohort)
    start = model.init_params(X.shape[1], 3)
    defense = DPSGD(clip_norm=INF, noise_multiplier=0.0, sampling_rate=1.0, learning_rate=0.05)
    new, _ = defense.wrap_model(model, 0).fit(start, X, y, epochs=4, seed=9, state=None)
    theta = flatten(start)
    for _ in range(4):
        theta = theta - 0.05 * model.per_sample_gradients(unflatten(theta, start), X, y).mean(0)
    np.testing.assert_allclose(flatten(new), theta, rtol=1e-12, atol=1e-14)
    assert list(new) == list(start) and all(new[k].shape == start[k].shape for k in start)


@pytest.mark.parametrize("model", [SGDLogistic(), MLP(hidden_units=3)], ids=["linear", "mlp"])
def test_dp_sgd_federation_is_reproducible_from_the_seed(tiny_cohort: Cohort, model: Model) -> None:
    defense = DPSGD(clip_norm=1.0, noise_multiplier=1.0, batch_size=32, learning_rate=0.05)

    def run(global_seed: int, seed: int = 7) -> FederationResult:
        np.random.seed(global_seed)  # noqa: NPY002  (the global state must not matter)
        return _train(tiny_cohort, [defense], model=model, seed=seed)

    first = run(1)
    assert _equal(first, run(2))
    assert not _equal(first, run(1, seed=8))
    # Each round draws a new stream: the round is counted in the state the client keeps.
    X, y = _rows(tiny_cohort)
    start, wrapped = model.init_params(X.shape[1], 0), defense.wrap_model(model, 0)
    one, kept = wrapped.fit(start, X, y, epochs=1, seed=5, state=None)
    again, _ = wrapped.fit(start, X, y, epochs=1, seed=5, state=None)
    two, _ = wrapped.fit(start, X, y, epochs=1, seed=5, state=kept)
    assert np.array_equal(flatten(one), flatten(again))
    assert not np.allclose(flatten(one), flatten(two))


def test_dp_sgd_epsilon_is_dp_accountings() -> None:
    defense = DPSGD(clip_norm=1.0, noise_multiplier=1.1, batch_size=16, learning_rate=0.1)
    shape = TrainingShape(
        num_clients=3, num_rounds=10, local_epochs=2, client_train_sizes=(80,) * 3
    )
    account = defense.account(shape)
    assert account is not None and account.unit == "record"
    # q = 16 / 80, 5 steps per epoch, 2 epochs, 10 rounds.
    assert account.epsilon == pytest.approx(_epsilon(1.1, 100, 1e-5, 0.2), rel=1e-12)
    # Unequal clients: the worst client's account (here the smallest: highest q).
    uneven = TrainingShape(3, 10, 2, (32, 80, 160))
    worst = max(_epsilon(1.1, 2 * round(n / 16) * 10, 1e-5, 16 / n) for n in (32, 80, 160))
    got = defense.account(uneven)
    assert got is not None and got.epsilon == pytest.approx(worst, rel=1e-12)
    fixed_rate = DPSGD(noise_multiplier=1.1, sampling_rate=0.1).account(uneven)
    assert fixed_rate is not None
    assert fixed_rate.epsilon == pytest.approx(_epsilon(1.1, 2 * 10 * 10, 1e-5, 0.1), rel=1e-12)


@pytest.mark.parametrize(
    ("kwargs", "key"),
    [
        ({"clip_norm": 0.0, "batch_size": 8}, "clip_norm"),
        ({"clip_norm": INF, "batch_size": 8}, "clip_norm"),
        ({"noise_multiplier": -0.1, "batch_size": 8}, "noise_multiplier"),
        ({"batch_size": 0}, "batch_size"),
        ({"batch_size": 8.5}, "batch_size"),
        ({"sampling_rate": 1.5}, "sampling_rate"),
        ({"batch_size": 8, "learning_rate": 0.0}, "learning_rate"),
        ({"batch_size": 8, "weight_decay": -1.0}, "weight_decay"),
        ({"batch_size": 8, "delta": 0.0}, "delta"),
    ],
)
def test_dp_sgd_settings_are_checked(kwargs: dict[str, Any], key: str) -> None:
    with pytest.raises(ConfigError, match=rf"defense\.dp_sgd\.{key}"):
        DPSGD(**kwargs)


def test_dp_sgd_composes_with_suppression_only_inside_it(tiny_cohort: Cohort) -> None:
    dp_sgd = DPSGD(clip_norm=1.0, noise_multiplier=0.5, batch_size=32)
    suppression = SNPSuppression(top_k_correlated=3)
    with pytest.raises(ConfigError, match=r"defense\.dp_sgd replaces the model's training"):
        _train(tiny_cohort, [suppression, dp_sgd])
    # dp_sgd first: suppression zeroes the columns, DP-SGD trains, the weights are put back.
    split = make_split(tiny_cohort, 3)
    result = _train(tiny_cohort, [dp_sgd, suppression], split=split, rounds=1)
    rows = client_data(tiny_cohort, split)[0]
    gone = suppression.suppressed(rows.X_train, rows.y_train)
    coef = result.rounds[0].client_params[0]["coef"]
    np.testing.assert_array_equal(coef[gone], result.initial_params["coef"][gone])
    assert np.count_nonzero(coef) == tiny_cohort.n_snps - gone.size


def test_dp_sgd_needs_exactly_one_of_batch_size_and_sampling_rate() -> None:
    cases: list[dict[str, Any]] = [{}, {"batch_size": 8, "sampling_rate": 0.1}]
    for kwargs in cases:
        with pytest.raises(ConfigError, match=r"defense\.dp_sgd: set exactly one of batch_size"):
            DPSGD(**kwargs)


# --- SNP suppression -------------------------------------------------------------------------


def test_suppressed_snps_are_the_clients_top_correlated_and_keep_their_weights(
    tiny_cohort: Cohort,
) -> None:
    k = 4
    split = make_split(tiny_cohort, 3)
    result = _train(tiny_cohort, [SNPSuppression(top_k_correlated=k)], split=split)
    plain = _train(tiny_cohort, split=split)
    for c, rows in enumerate(client_data(tiny_cohort, split)):
        r = np.array(
            [np.corrcoef(rows.X_train[:, j], rows.y_train)[0, 1] for j in range(tiny_cohort.n_snps)]
        )
        top = set(np.argsort(-np.abs(np.nan_to_num(r)))[:k].tolist())
        assert set(SNPSuppression(top_k_correlated=k).suppressed(rows.X_train, rows.y_train)) == top
        others = sorted(set(range(tiny_cohort.n_snps)) - top)
        start = result.initial_params
        for record in result.rounds:
            coef = record.client_params[c]["coef"]
            # Zero update on the suppressed SNPs, as the server recorded it...
            np.testing.assert_array_equal(coef[sorted(top)], start["coef"][sorted(top)])
            # ...while every other SNP's weight trained.
            assert np.all(coef[others] != start["coef"][others])
            start = record.global_params
    assert not np.array_equal(result.final_params["coef"], plain.final_params["coef"])


def test_suppression_by_minor_allele_frequency() -> None:
    X = np.array([[0, 2, 1], [0, 2, 1], [1, 2, 1], [0, 1, 1]], dtype=np.float64)
    y = np.array([0, 1, 0, 1], dtype=np.int8)
    # MAFs: 1/8 (minor allele 1), 1/8 (allele 0 is minor), 1/2.
    assert SNPSuppression(min_maf=0.2).suppressed(X, y).tolist() == [0, 1]
    assert SNPSuppression(min_maf=0.1).suppressed(X, y).tolist() == []
    # Columns 0 and 1 tie at |r| = 1 / sqrt(3): the lower index goes first; column 2 is
    # constant (r = 0) and comes last.
    assert SNPSuppression(top_k_correlated=1).suppressed(X, y).tolist() == [0]
    assert SNPSuppression(top_k_correlated=2).suppressed(X, y).tolist() == [0, 1]


def test_mlp_suppression_keeps_the_input_rows_of_w1(tiny_cohort: Cohort) -> None:
    X, y = _rows(tiny_cohort, 120)
    model = MLP(hidden_units=4)
    defense = SNPSuppression(top_k_correlated=3)
    start = model.init_params(X.shape[1], 0)
    new, _ = defense.wrap_model(model, 0).fit(start, X, y, epochs=2, seed=1, state=None)
    gone = defense.suppressed(X, y)
    kept = np.setdiff1d(np.arange(X.shape[1]), gone)
    np.testing.assert_array_equal(new["W1"][gone], start["W1"][gone])
    assert not np.allclose(new["W1"][kept], start["W1"][kept])
    assert defense.account(TrainingShape(3, 1, 1, (80, 80, 80))) is None


@pytest.mark.parametrize(
    ("kwargs", "key"),
    [
        ({"top_k_correlated": -1}, "top_k_correlated"),
        ({"top_k_correlated": 2.5}, "top_k_correlated"),
        ({"min_maf": 0.6}, "min_maf"),
        ({"min_maf": "rare"}, "min_maf"),
    ],
)
def test_snp_suppression_settings_are_checked(kwargs: dict[str, Any], key: str) -> None:
    with pytest.raises(ConfigError, match=rf"defense\.snp_suppression\.{key}"):
        SNPSuppression(**kwargs)


# --- config ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("option", "cls"),
    [("central_dp", CentralDP), ("dp_sgd", DPSGD), ("snp_suppression", SNPSuppression)],
)
def test_each_defense_composes_from_its_config(
    compose_cfg: Callable[..., DictConfig], option: str, cls: type[Any]
) -> None:
    training = build_training(compose_cfg(f"defense={option}"))
    assert [type(d) for d in training.defenses] == [cls]
    assert training.defenses[0].name == option
    both = build_training(compose_cfg("defense=[snp_suppression,central_dp]"))
    assert [d.name for d in both.defenses] == ["snp_suppression", "central_dp"]
    adaptive = build_training(
        compose_cfg("defense=central_dp", "defense.central_dp.clipping=adaptive")
    )
    assert isinstance(adaptive.defenses[0], CentralDP)
    assert adaptive.defenses[0].initial_clip_norm == 1.0  # from clip_norm
