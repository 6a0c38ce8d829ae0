"""Tests for fedgen.models: gradients by finite differences, sklearn oracles, fitting options."""

from __future__ import annotations

from collections.abc import Iterator
from importlib.resources import files
from typing import Any

import numpy as np
import pytest
from hydra.utils import instantiate
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from numpy.typing import NDArray
from omegaconf import OmegaConf
from scipy.special import expit
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import train_test_split
from sklearn.neural_network import MLPClassifier

from fedgen.core.errors import ConfigError
from fedgen.data import SyntheticCohort
from fedgen.models import MLP, Model, Params, SGDLogistic, flatten, loss_and_accuracy

PROPERTY = settings(max_examples=40, deadline=None)
ACTIVATIONS = ("relu", "tanh", "logistic", "identity")
STEP = 1e-6


def per_sample_loss(
    model: Model, params: Params, X: NDArray[np.float64], y: NDArray[np.integer]
) -> NDArray[np.float64]:
    """``log(1 + exp(z)) - y z`` for each row, float64 (n,)."""
    z = model.decision_function(params, X)
    return np.asarray(np.logaddexp(0.0, z) - y * z, dtype=np.float64)


def unflatten(flat: NDArray[np.float64], like: Params) -> Params:
    """The inverse of ``flatten``: ``flat`` (d,) cut into arrays shaped as ``like``'s."""
    out, start = {}, 0
    for name, array in like.items():
        out[name] = flat[start : start + array.size].reshape(array.shape)
        start += array.size
    return out


def finite_differences(
    model: Model, params: Params, X: NDArray[np.float64], y: NDArray[np.integer]
) -> NDArray[np.float64]:
    """Central differences of every row's log loss in every flattened coordinate, (n, d)."""
    theta = flatten(params)
    grads = np.empty((X.shape[0], theta.size))
    for j in range(theta.size):
        plus, minus = theta.copy(), theta.copy()
        plus[j] += STEP
        minus[j] -= STEP
        up = per_sample_loss(model, unflatten(plus, params), X, y)
        down = per_sample_loss(model, unflatten(minus, params), X, y)
        grads[:, j] = (up - down) / (2 * STEP)
    return grads


def genotypes(rng: np.random.Generator, n: int, p: int) -> NDArray[np.float64]:
    return rng.integers(0, 3, (n, p)).astype(np.float64)


def labels(rng: np.random.Generator, n: int) -> NDArray[np.int8]:
    return (rng.random(n) < 0.5).astype(np.int8)


def sklearn_reference(model: MLP, start: Params, seed: int) -> MLPClassifier:
    """A plain ``MLPClassifier`` whose own first ``partial_fit`` starts from ``start``.

    Its ``_init_coef`` is replaced by one returning ``start``'s arrays, so everything else
    (attributes, optimiser, shuffling) is scikit-learn's own, uninterrupted code path.
    """
    reference = MLPClassifier(**model._template.get_params()).set_params(random_state=seed)
    layers: Iterator[tuple[NDArray[np.float64], NDArray[np.float64]]] = iter(
        [
            (start["W1"].copy(), start["b1"].copy()),
            (start["W2"].reshape(-1, 1).copy(), start["b2"].copy()),
        ]
    )
    reference._init_coef = lambda fan_in, fan_out, dtype: next(layers)
    return reference


def sklearn_params(estimator: MLPClassifier) -> NDArray[np.float64]:
    """An estimator's weights flattened in ``MLP``'s order: W1, b1, W2, b2."""
    (W1, W2), (b1, b2) = estimator.coefs_, estimator.intercepts_
    return np.concatenate([W1.ravel(), b1, W2.ravel(), b2])


# --- per-sample gradients -------------------------------------------------------------------


@PROPERTY
@given(st.integers(1, 5), st.integers(1, 4), st.integers(0, 2**32 - 1), st.floats(0.1, 3.0))
def test_sgd_logistic_gradients_match_finite_differences(
    n: int, p: int, seed: int, scale: float
) -> None:
    rng = np.random.default_rng(seed)
    X, y = genotypes(rng, n, p), labels(rng, n)
    model = SGDLogistic()
    params = {"coef": scale * rng.standard_normal(p), "intercept": scale * rng.standard_normal(1)}
    grads = model.per_sample_gradients(params, X, y)
    assert grads.shape == (n, p + 1) and grads.dtype == np.float64
    np.testing.assert_allclose(grads, finite_differences(model, params, X, y), rtol=1e-5, atol=1e-7)


@PROPERTY
@given(
    st.integers(1, 5),
    st.integers(1, 4),
    st.integers(1, 4),
    st.sampled_from(ACTIVATIONS),
    st.integers(0, 2**32 - 1),
    st.floats(0.5, 4.0),
)
def test_mlp_gradients_match_finite_differences(
    n: int, p: int, h: int, activation: str, seed: int, scale: float
) -> None:
    rng = np.random.default_rng(seed)
    X, y = genotypes(rng, n, p), labels(rng, n)
    model = MLP(hidden_units=h, activation=activation)
    params = {k: scale * v for k, v in model.init_params(p, seed).items()}
    if activation == "relu":  # a difference across the kink is not the derivative
        assume(np.all(np.abs(X @ params["W1"] + params["b1"]) > 1e-4))
    grads = model.per_sample_gradients(params, X, y)
    assert grads.shape == (n, p * h + 2 * h + 1) and grads.dtype == np.float64
    np.testing.assert_allclose(grads, finite_differences(model, params, X, y), rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_mlp_mean_gradient_is_sklearn_backprop_without_the_penalty(activation: str) -> None:
    rng = np.random.default_rng(5)
    X, y = genotypes(rng, 30, 6), labels(rng, 30)
    alpha = 0.3
    model = MLP(hidden_units=5, activation=activation, alpha=alpha)
    params = model.init_params(6, 1)
    est = MLPClassifier(hidden_layer_sizes=(5,), activation=activation, alpha=alpha)
    est.n_layers_, est.out_activation_ = 3, "logistic"  # what its _initialize would set
    est.coefs_ = [params["W1"].copy(), params["W2"].reshape(-1, 1).copy()]
    est.intercepts_ = [params["b1"].copy(), params["b2"].copy()]
    coef_grads = [np.empty_like(c) for c in est.coefs_]
    intercept_grads = [np.empty_like(b) for b in est.intercepts_]
    activations: list[Any] = [X, None, None]
    _, cg, ig = est._backprop(
        X, y.reshape(-1, 1), None, activations, [None, None], coef_grads, intercept_grads
    )
    # scikit-learn adds the L2 term alpha W / n to each weight's batch gradient; ours leaves it out.
    penalty = np.concatenate(
        [alpha * params["W1"].ravel() / 30, np.zeros(5), alpha * params["W2"] / 30, np.zeros(1)]
    )
    ours = model.per_sample_gradients(params, X, y).mean(axis=0)
    theirs = np.concatenate([cg[0].ravel(), ig[0], cg[1].ravel(), ig[1]])
    np.testing.assert_allclose(ours + penalty, theirs, rtol=1e-10, atol=1e-13)


def test_mlp_residual_is_stable_at_large_logits() -> None:
    model = MLP(hidden_units=2, activation="tanh")
    params = {"W1": np.zeros((1, 2)), "b1": np.zeros(2), "W2": np.zeros(2), "b2": np.array([40.0])}
    X, y = np.zeros((2, 1)), np.array([1, 0], dtype=np.int8)
    grads = model.per_sample_gradients(params, X, y)
    # sigmoid(40) - 1 rounds to 0 in float64; the exact residual is -sigmoid(-40) ~ -4e-18.
    assert grads[0, -1] == pytest.approx(-expit(-40.0), rel=1e-12)
    assert grads[1, -1] == pytest.approx(expit(40.0), rel=1e-12)


def test_gradient_norm_bounds() -> None:
    assert MLP().gradient_norm_bound(10, 2.0) is None
    assert SGDLogistic().gradient_norm_bound(10, 2.0) == pytest.approx(np.sqrt(41.0))


# --- initial parameters ---------------------------------------------------------------------


@PROPERTY
@given(st.integers(1, 50), st.integers(1, 20), st.sampled_from(ACTIVATIONS), st.integers(0, 2**31))
def test_mlp_init_is_glorot_uniform_from_the_seed(
    p: int, h: int, activation: str, seed: int
) -> None:
    model = MLP(hidden_units=h, activation=activation)
    # The legacy global generator, on purpose: drawing from it is what init_params must not do.
    np.random.seed(0)  # noqa: NPY002
    before = np.random.random()  # noqa: NPY002
    np.random.seed(0)  # noqa: NPY002
    params = model.init_params(p, seed)
    assert np.random.random() == before  # noqa: NPY002
    assert list(params) == ["W1", "b1", "W2", "b2"]
    shapes = {"W1": (p, h), "b1": (h,), "W2": (h,), "b2": (1,)}
    assert {k: v.shape for k, v in params.items()} == shapes
    assert all(v.dtype == np.float64 for v in params.values())
    factor = 2.0 if activation == "logistic" else 6.0
    bounds = {"W1": (p, h), "b1": (p, h), "W2": (h, 1), "b2": (h, 1)}
    for name, (fan_in, fan_out) in bounds.items():
        bound = np.sqrt(factor / (fan_in + fan_out))
        assert np.all(np.abs(params[name]) <= bound) and np.all(params[name] != 0.0)
    again = model.init_params(p, seed)
    other = model.init_params(p, seed + 1)
    assert all(np.array_equal(params[k], again[k]) for k in params)
    assert not np.array_equal(flatten(params), flatten(other))


def test_mlp_init_spreads_over_the_glorot_interval() -> None:
    W1 = MLP(hidden_units=16).init_params(100, 3)["W1"]
    bound = np.sqrt(6.0 / 116)
    # Uniform on [-b, b]: mean 0, variance b^2 / 3 (1,600 draws: tolerances ~5 standard errors).
    assert abs(W1.mean()) < 5 * bound / np.sqrt(3 * 1600)
    assert W1.var() == pytest.approx(bound**2 / 3, rel=0.1)


# --- training: state carried between rounds, and sklearn's own predictions -----------------


@settings(max_examples=25, deadline=None)
@given(
    st.sampled_from(
        [
            {"solver": "adam"},
            {"solver": "sgd"},
            {"solver": "sgd", "nesterovs_momentum": False},
            {"solver": "sgd", "learning_rate": "invscaling", "learning_rate_init": 0.05},
            # tol so large that every epoch counts as no improvement: the step is cut each epoch.
            {"solver": "sgd", "learning_rate": "adaptive", "tol": 10.0, "n_iter_no_change": 1},
        ]
    ),
    st.sampled_from(ACTIVATIONS),
    st.sampled_from(["auto", 1, 7]),
    st.integers(1, 3),
    st.integers(1, 3),
    st.integers(0, 2**31 - 1),
)
def test_mlp_two_rounds_with_state_equal_uninterrupted_partial_fit(
    options: dict[str, Any], activation: str, batch_size: Any, e1: int, e2: int, seed: int
) -> None:
    rng = np.random.default_rng(seed)
    X, y = genotypes(rng, 40, 5), labels(rng, 40)
    model = MLP(hidden_units=3, activation=activation, batch_size=batch_size, **options)
    start = model.init_params(5, seed)
    first, state = model.fit(start, X, y, epochs=e1, seed=seed, state=None)
    second, _ = model.fit(first, X, y, epochs=e2, seed=seed, state=state)
    reference = sklearn_reference(model, start, seed)
    for _ in range(e1 + e2):
        reference.partial_fit(X, y, classes=[0, 1])
    assert np.array_equal(flatten(second), sklearn_params(reference))
    assert all(v.dtype == np.float64 for v in (*first.values(), *state.values()))
    np.testing.assert_allclose(
        expit(model.decision_function(second, X)), reference.predict_proba(X)[:, 1], rtol=1e-12
    )


def test_mlp_round_without_state_restarts_the_optimiser() -> None:
    """The control: dropping the state changes round 2, so the test above can fail."""
    rng = np.random.default_rng(0)
    X, y = genotypes(rng, 40, 5), labels(rng, 40)
    for solver in ("adam", "sgd"):
        model = MLP(hidden_units=3, solver=solver)
        first, state = model.fit(model.init_params(5, 0), X, y, epochs=2, seed=0, state=None)
        kept, _ = model.fit(first, X, y, epochs=1, seed=0, state=state)
        dropped, _ = model.fit(first, X, y, epochs=1, seed=0, state=None)
        assert not np.allclose(flatten(kept), flatten(dropped), rtol=1e-6, atol=0.0), solver


def test_mlp_fit_does_not_modify_its_inputs_and_returns_its_param_layout() -> None:
    rng = np.random.default_rng(1)
    X, y = genotypes(rng, 30, 4), labels(rng, 30)
    model = MLP(hidden_units=6)
    start = model.init_params(4, 2)
    copy = {k: v.copy() for k, v in start.items()}
    new, state = model.fit(start, X, y, epochs=2, seed=3, state=None)
    assert all(np.array_equal(start[k], copy[k]) for k in start)
    assert {k: v.shape for k, v in new.items()} == {k: v.shape for k, v in start.items()}
    assert list(new) == list(start)
    assert state["step"][0] == 2 * 1 and state["t"][0] == 2 * 30  # one batch of 30 per epoch
    assert {f"m_{k}" for k in start} | {f"v_{k}" for k in start} <= set(state)


# --- configuration --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "key"),
    [
        ({"activation": "softmax"}, "activation"),
        ({"solver": "lbfgs"}, "solver"),
        ({"alpha": -1.0}, "alpha"),
        ({"learning_rate_init": 0.0}, "learning_rate_init"),
        ({"batch_size": 0}, "batch_size"),
        ({"momentum": 2.0}, "momentum"),
        ({"random_state": 1}, "random_state"),
        ({"warm_start": True}, "warm_start"),
        ({"early_stopping": True}, "early_stopping"),
        ({"hidden_layer_sizes": (8, 4)}, "hidden_layer_sizes"),
        ({"hidden_layer_sizes": (8,), "hidden_units": 4}, "hidden_layer_sizes"),
        ({"hidden_units": 0}, "hidden_units"),
        ({"hidden_units": 2.5}, "hidden_units"),
        ({"no_such_option": 1}, "no_such_option"),
    ],
)
def test_mlp_rejects_bad_settings_naming_the_key(kwargs: dict[str, Any], key: str) -> None:
    with pytest.raises(ConfigError, match=key):
        MLP(**kwargs)


def test_mlp_accepts_a_single_hidden_layer_size() -> None:
    assert MLP(hidden_layer_sizes=[8]).hidden_units == 8
    assert MLP().hidden_units == 16 and MLP().linear is False


@pytest.mark.parametrize(
    ("kwargs", "key"),
    [({"loss": "hinge"}, "loss"), ({"random_state": 0}, "random_state"), ({"alpha": -1}, "alpha")],
)
def test_sgd_logistic_rejects_bad_settings_naming_the_key(kwargs: dict[str, Any], key: str) -> None:
    with pytest.raises(ConfigError, match=key):
        SGDLogistic(**kwargs)


def _option(name: str) -> Any:
    text = files("fedgen.conf").joinpath("model", f"{name}.yaml").read_text()
    return OmegaConf.create(text)


def test_mlp_config_builds_the_mlp() -> None:
    model = instantiate(_option("mlp"))
    assert isinstance(model, MLP) and isinstance(model, Model)
    assert (model.hidden_units, model.activation) == (16, "relu")


# --- the fitting SGD option against a centralised logistic regression -----------------------


def _centralised(
    model: Model, Xtr: NDArray[np.float64], ytr: NDArray[np.int8], epochs: int
) -> Params:
    """``epochs`` one-epoch rounds of local training, the state carried: one client alone."""
    params, state = model.init_params(Xtr.shape[1], 0), None
    for _ in range(epochs):
        params, state = model.fit(params, Xtr, ytr, epochs=1, seed=1, state=state)
    return params


def test_fitting_sgd_option_matches_logistic_regression_and_the_default_does_not() -> None:
    cohort = SyntheticCohort(n_individuals=4000, n_snps=100).load(np.random.default_rng(0))
    X, y = cohort.genotypes.astype(np.float64), cohort.labels
    Xtr, Xte, ytr, yte = train_test_split(X, y, test_size=0.2, stratify=y, random_state=0)
    z = LogisticRegression(max_iter=2000).fit(Xtr, ytr).decision_function(Xte)
    reference_auc = roc_auc_score(yte, z)
    assert float(np.mean(np.logaddexp(0.0, z) - yte * z)) < np.log(2)

    fitting = instantiate(_option("sgd_logistic_fit"))
    assert isinstance(fitting, SGDLogistic)
    params = _centralised(fitting, Xtr, ytr, epochs=10)
    loss, _ = loss_and_accuracy(fitting, params, Xte, yte)
    auc = roc_auc_score(yte, fitting.decision_function(params, Xte))
    assert abs(auc - reference_auc) < 0.02
    assert loss < np.log(2)

    # The study's option (conf/model/sgd_logistic.yaml: loss=log_loss, scikit-learn's defaults).
    study_keys = {k: v for k, v in _option("sgd_logistic").items() if k not in ("_target_", "name")}
    study = SGDLogistic(**study_keys)
    params = _centralised(study, Xtr, ytr, epochs=10)
    loss, _ = loss_and_accuracy(study, params, Xte, yte)
    assert loss > np.log(2)
