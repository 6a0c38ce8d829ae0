"""label_counts and phenotype against oracles, and the gradient-descent model they rest on."""

from __future__ import annotations

import dataclasses
from functools import cache

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from sklearn.linear_model import SGDClassifier

from fedgen.attacks.base import Arena
from fedgen.attacks.label_counts import LabelCountAttack, sgd_step_sizes
from fedgen.attacks.phenotype import PhenotypeAttack
from fedgen.core.errors import ConfigError
from fedgen.core.records import Cohort, FederationResult, Split
from fedgen.core.seeding import child_rng
from fedgen.data import SyntheticCohort
from fedgen.evaluation.assess import assess
from fedgen.evaluation.pools import BalancedPool, PaperPool
from fedgen.federation import train_federation
from fedgen.models import MLP, GDLogistic, Model, SGDLogistic
from tests.conftest import make_split
from tests.conftest import settings as fed_settings

FIT = SGDLogistic(name="sgd_logistic_fit", learning_rate="constant", eta0=0.001)


@cache
def _cohort(n: int, p: int, seed: int, heritability: float = 0.1) -> Cohort:
    source = SyntheticCohort(
        n_individuals=n, n_snps=p, n_causal=min(10, p), heritability=heritability, n_reference=n
    )
    return source.load(child_rng(seed, "cohort"))


def _arena(
    cohort: Cohort, clients: int, rounds: int, model: Model, epochs: int = 1
) -> tuple[Arena, Split]:
    split = make_split(cohort, clients)
    fed = fed_settings(clients, rounds, local_epochs=epochs)
    server = train_federation(cohort, split, fed, model, seed=0)
    pool = PaperPool().pool(split, child_rng(0, "evaluation"))
    return Arena(cohort, pool, server, 0, model, split), split


# --- the gradient-descent model -------------------------------------------------------------


@settings(max_examples=30, deadline=None)
@given(
    X=arrays(np.int8, (7, 4), elements=st.integers(0, 2)),
    y=arrays(np.int8, 7, elements=st.integers(0, 1)),
    eta=st.floats(0.01, 2.0),
    alpha=st.floats(0.0, 1.0),
)
def test_one_gradient_step_from_zero_is_the_closed_form(
    X: np.ndarray, y: np.ndarray, eta: float, alpha: float
) -> None:
    model = GDLogistic(learning_rate=eta, alpha=alpha)
    params, state = model.fit(
        model.init_params(4, 0), X.astype(np.float64), y, epochs=1, seed=0, state=None
    )
    residual = y - 0.5  # sigmoid(0) = 1/2 at the zero model; the penalty of zero is zero
    np.testing.assert_allclose(params["coef"], eta * (residual @ X) / 7, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(params["intercept"], [eta * residual.mean()], atol=1e-15)
    assert state["t"][0] == 1.0
    grads = model.per_sample_gradients(params, X.astype(np.float64), y)
    assert grads.shape == (7, 5)


def test_federated_gradient_descent_with_one_client_is_local_training() -> None:
    cohort = _cohort(300, 20, 0)
    model = GDLogistic(learning_rate=0.2, steps=2, alpha=0.01)
    arena, split = _arena(cohort, 1, 3, model, epochs=2)
    X = cohort.genotypes[split.clients[0].train].astype(np.float64)
    y = cohort.labels[split.clients[0].train]
    params, state = model.init_params(20, 0), None
    for _ in range(3):
        params, state = model.fit(params, X, y, epochs=2, seed=1, state=state)
    final = arena.server.final_params
    np.testing.assert_allclose(final["coef"], params["coef"], rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(final["intercept"], params["intercept"], rtol=1e-12)
    assert state is not None and state["t"][0] == 12.0


@pytest.mark.parametrize(
    ("kwargs", "key"),
    [
        ({"learning_rate": 0.0}, "learning_rate"),
        ({"learning_rate": float("nan")}, "learning_rate"),
        ({"steps": 0}, "steps"),
        ({"steps": 1.5}, "steps"),
        ({"alpha": -1.0}, "alpha"),
    ],
)
def test_gd_rejects_bad_settings_naming_the_key(kwargs: dict[str, float], key: str) -> None:
    with pytest.raises(ConfigError, match=rf"model\.{key}"):
        GDLogistic(**kwargs)  # type: ignore[arg-type]


# --- label_counts ---------------------------------------------------------------------------


@pytest.mark.parametrize("rounds", [1, 3])
def test_label_counts_are_exact_for_a_gradient_step(rounds: int) -> None:
    arena, split = _arena(_cohort(300, 20, 0), 3, rounds, GDLogistic(learning_rate=0.5))
    attack = LabelCountAttack()
    observation = attack.observe(arena)
    truth = np.array([arena.cohort.labels[c.train].sum() for c in split.clients], np.float64)
    np.testing.assert_array_equal(observation.facts["cases"], truth)
    result = attack.run(observation.view)
    assert result.scores.size == 0 and observation.truth.size == 0
    for key in ("cases_round_1", "cases"):
        estimate = result.estimates[key].values
        assert np.max(np.abs(estimate - truth)) < 1e-6, key
        np.testing.assert_array_equal(np.round(estimate), truth)
    # The trivial guess is wrong here, so exactness is not the trivial guess's.
    assert np.max(np.abs(observation.baselines["cases"] - truth)) > 1
    metrics = assess(attack, arena, n_bootstrap=0).metrics
    assert metrics["cases_mae"] < 1e-6 < 1 < metrics["cases_trivial_mae"]


def test_label_counts_of_a_step_without_a_reference_panel_are_exact_in_round_1() -> None:
    cohort = dataclasses.replace(_cohort(300, 20, 0), reference=None)
    arena, split = _arena(cohort, 3, 2, GDLogistic(learning_rate=0.5))
    truth = np.array([cohort.labels[c.train].sum() for c in split.clients], np.float64)
    estimate = assess(LabelCountAttack(), arena, n_bootstrap=0).result.estimates
    assert np.max(np.abs(estimate["cases_round_1"].values - truth)) < 1e-6


def test_label_counts_beat_the_trivial_guess_on_the_fitting_sgd_model() -> None:
    arena, _ = _arena(_cohort(600, 30, 2), 3, 3, FIT)
    metrics = assess(LabelCountAttack(), arena, n_bootstrap=0).metrics
    assert metrics["cases_round_1_mae"] < 0.25 * metrics["cases_round_1_trivial_mae"]
    assert metrics["cases_mae"] < 0.25 * metrics["cases_trivial_mae"]


def test_label_counts_are_deterministic() -> None:
    arena, _ = _arena(_cohort(600, 30, 2), 3, 2, FIT)
    first = LabelCountAttack().run(LabelCountAttack().observe(arena).view)
    second = LabelCountAttack().run(LabelCountAttack().observe(arena).view)
    for key, estimate in first.estimates.items():
        np.testing.assert_array_equal(estimate.values, second.estimates[key].values)


def test_sgd_step_sizes_follow_scikit_learn() -> None:
    # All-zero genotypes: the logit is the intercept alone, so replaying the intercept with our
    # step sizes must give scikit-learn's, for every schedule and a counter carried over.
    y = np.ones(50, np.int8)
    X = np.zeros((50, 3))
    for kwargs in (
        {},
        {"alpha": 0.01},
        {"learning_rate": "constant", "eta0": 0.05},
        {"learning_rate": "invscaling", "eta0": 0.5, "power_t": 0.3},
    ):
        model = SGDLogistic(**kwargs)
        params, state = model.fit(model.init_params(3, 0), X, y, epochs=1, seed=0, state=None)
        params, _ = model.fit(params, X, y, epochs=1, seed=0, state=state)
        etas = sgd_step_sizes(SGDClassifier(**model.sgd).get_params(), 1.0, 100)
        b = 0.0
        for eta in etas:
            b += eta * (1.0 - 1.0 / (1.0 + np.exp(-b)))
        assert params["intercept"][0] == pytest.approx(b, rel=1e-9), kwargs


# --- phenotype ------------------------------------------------------------------------------


def test_phenotype_beats_the_population_baseline_where_updates_leak() -> None:
    # Many SNPs, few rows per client: each update carries its rows' genotypes.
    arena, _ = _arena(_cohort(200, 2000, 0), 2, 3, SGDLogistic())
    assessment = assess(PhenotypeAttack(), arena, n_bootstrap=0)
    m = assessment.metrics
    assert m["auc"] > 0.85
    assert m["auc"] > m["population_auc"] + 0.2
    assert assessment.truth.size == int(arena.pool.is_member.sum())
    scores = assessment.result.scores
    assert np.all((scores >= 0) & (scores <= 1))
    assert len(assessment.result.per_round) == 3 and "round_1/auc" in m
    # Summing one round is that round's statistic.
    first = PhenotypeAttack(rounds=1)
    result = first.run(first.observe(arena).view)
    np.testing.assert_allclose(result.ranks, assessment.result.per_round[0], rtol=1e-12)


def test_phenotype_is_chance_on_a_model_that_never_saw_the_targets() -> None:
    # Trained on one cohort, asked about the members of another: no target is in an update.
    trained, _ = _arena(_cohort(200, 2000, 5, heritability=0.0), 2, 3, SGDLogistic())
    target = _cohort(1000, 2000, 6, heritability=0.0)
    pool = PaperPool().pool(make_split(target, 2), child_rng(0, "evaluation"))
    arena = dataclasses.replace(trained, cohort=target, pool=pool, split=None)
    m = assess(PhenotypeAttack(), arena, n_bootstrap=0).metrics
    assert abs(m["auc"] - 0.5) < 0.05


def test_phenotype_is_deterministic_and_scores_balanced_pools() -> None:
    arena, split = _arena(_cohort(200, 300, 1), 2, 2, FIT)
    arena = dataclasses.replace(arena, pool=BalancedPool().pool(split, child_rng(0, "evaluation")))
    first = assess(PhenotypeAttack(), arena, n_bootstrap=0)
    second = assess(PhenotypeAttack(), arena, n_bootstrap=0)
    np.testing.assert_array_equal(first.result.scores, second.result.scores)
    np.testing.assert_array_equal(first.result.oriented_scores, second.result.oriented_scores)
    assert first.metrics == second.metrics


# --- configuration errors -------------------------------------------------------------------


@pytest.mark.parametrize("attack", [LabelCountAttack, PhenotypeAttack])
@pytest.mark.parametrize("observer", ["public", "peer", "nobody"])
def test_only_the_server_runs_them(attack: type, observer: str) -> None:
    with pytest.raises(ConfigError, match="observer"):
        attack(observer=observer)


def test_they_name_what_they_cannot_attack() -> None:
    with pytest.raises(ConfigError, match="model=gd_logistic"):
        LabelCountAttack().check_model(MLP())
    with pytest.raises(ConfigError, match="learning_rate"):
        LabelCountAttack().check_model(SGDLogistic(learning_rate="pa1", eta0=0.1))
    with pytest.raises(ConfigError, match="linear"):
        PhenotypeAttack().check_model(MLP())
    with pytest.raises(ConfigError, match="local_epochs"):
        LabelCountAttack(local_epochs=0)
    with pytest.raises(ConfigError, match="rounds"):
        PhenotypeAttack(rounds=0)
    cohort = dataclasses.replace(_cohort(300, 20, 0), reference=None)
    arena = Arena(
        cohort,
        PaperPool().pool(make_split(cohort, 2), child_rng(0, "e")),
        FederationResult(GDLogistic().init_params(20, 0), ()),
        0,
        GDLogistic(),
    )
    with pytest.raises(ConfigError, match=r"dataset\.n_reference"):
        PhenotypeAttack().observe(arena)
