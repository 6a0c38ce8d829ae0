"""A one-hidden-layer perceptron (scikit-learn's MLPClassifier) behind the Model interface."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np
from numpy.typing import NDArray
from scipy.special import expit
from sklearn.neural_network import MLPClassifier
from sklearn.neural_network._stochastic_optimizers import AdamOptimizer, SGDOptimizer

from fedgen.core.errors import ConfigError
from fedgen.models.base import CLASSES, Params

NAMES = ("W1", "b1", "W2", "b2")
# scikit-learn's optimisers see ``coefs_ + intercepts_``: [W1, W2, b1, b2].
SKLEARN_ORDER = ("W1", "W2", "b1", "b2")
DEFAULT_HIDDEN_UNITS = 16

Array = NDArray[np.float64]


def _activate(name: str, a: Array) -> tuple[Array, Array]:
    """The hidden activation of pre-activations ``a`` (n, h) and its derivative, both (n, h)."""
    if name == "relu":
        return np.maximum(a, 0.0), (a > 0.0).astype(np.float64)
    if name == "tanh":
        t = np.tanh(a)
        return t, 1.0 - t * t
    if name == "logistic":
        s = np.asarray(expit(a), dtype=np.float64)
        return s, s * (1.0 - s)
    return a, np.ones_like(a)  # identity


class MLP:
    """Binary classifier with one hidden layer: ``MLPClassifier`` continued by ``partial_fit``.

    Parameters (``Params``, float64, in this order): ``W1`` (p, h) input-to-hidden weights,
    ``b1`` (h,) hidden biases, ``W2`` (h,) hidden-to-output weights, ``b2`` (1,) output bias.
    The decision value is ``f(x) = act(x @ W1 + b1) @ W2 + b2`` and ``P(y = 1) = sigmoid(f(x))``.

    The client keeps between rounds everything scikit-learn's own estimator would carry from one
    ``partial_fit`` call to the next (state, float64 arrays): ``t`` (samples seen, for
    ``learning_rate="invscaling"``), ``best_loss`` and ``no_improvement_count`` (for
    ``"adaptive"``), the optimiser's ``current_learning_rate`` and its moments:
    ``step``, ``m_<name>`` and ``v_<name>`` for adam, ``velocity_<name>`` for sgd, each shaped as
    parameter ``<name>``. Two rounds with the state carried therefore train exactly as one
    estimator calling ``partial_fit`` in both rounds would.

    Parameters
    ----------
    name : str
        Short name for logs.
    hidden_units : int, default 16
        Width ``h`` of the hidden layer.
    **mlp
        Passed to ``MLPClassifier`` (``activation``, ``solver`` "adam"/"sgd", ``alpha``,
        ``learning_rate_init``, ``batch_size``, ``momentum``, ...) and checked by scikit-learn's
        own parameter validation. ``random_state`` is set by fedgen from each client's seed.

    Raises
    ------
    ConfigError
        On an invalid or unsupported setting; the message names the key and the fix.
    """

    linear = False

    def __init__(self, name: str = "mlp", hidden_units: int | None = None, **mlp: Any) -> None:
        if "hidden_layer_sizes" in mlp:
            hidden_units = _single_layer(mlp.pop("hidden_layer_sizes"), hidden_units)
        if hidden_units is None:
            hidden_units = DEFAULT_HIDDEN_UNITS
        if isinstance(hidden_units, bool) or not isinstance(hidden_units, int | np.integer):
            raise ConfigError(
                f"model.hidden_units={hidden_units!r} must be a positive integer (e.g. 16)"
            )
        if hidden_units < 1:
            raise ConfigError(f"model.hidden_units={hidden_units} must be at least 1")
        if "random_state" in mlp:
            raise ConfigError("model.random_state is set by fedgen from `seed`; remove it")
        for key in ("warm_start", "early_stopping"):
            if mlp.get(key):
                raise ConfigError(
                    f"model.{key} must be false: each round continues from the global "
                    "parameters with partial_fit"
                )
        unknown = sorted(set(mlp) - set(MLPClassifier().get_params()))
        if unknown:
            raise ConfigError(
                f"model.{unknown[0]} is not an option of the MLP; remove it (MLPClassifier's "
                "options and model.hidden_units are)"
            )
        if mlp.get("solver") == "lbfgs":
            raise ConfigError(
                "model.solver=lbfgs cannot train incrementally (no partial_fit); "
                "use model.solver=adam or model.solver=sgd"
            )
        template = MLPClassifier(hidden_layer_sizes=(int(hidden_units),), **_plain(mlp))
        try:
            template._validate_params()
        except (ValueError, TypeError) as exc:
            raise ConfigError(f"invalid model setting: {exc}") from None
        self.name = name
        self.hidden_units = int(hidden_units)
        self.mlp = _plain(mlp)
        self._template = template

    @property
    def activation(self) -> str:
        """The hidden layer's activation (``relu``, ``tanh``, ``logistic`` or ``identity``)."""
        return str(self._template.activation)

    def init_params(self, n_features: int, seed: int) -> Params:
        """Glorot-uniform weights and biases, as ``MLPClassifier._init_coef`` draws them.

        Each layer's weights and biases are uniform on ``[-b, b]``,
        ``b = sqrt(k / (fan_in + fan_out))`` with ``k = 2`` for the logistic activation and
        ``k = 6`` otherwise, drawn from ``np.random.default_rng(seed)`` in the order
        ``W1`` (p, h), ``b1`` (h,), ``W2`` (h,), ``b2`` (1,).
        """
        rng = np.random.default_rng(seed)
        factor = 2.0 if self.activation == "logistic" else 6.0
        h = self.hidden_units
        bound1 = np.sqrt(factor / (n_features + h))
        bound2 = np.sqrt(factor / (h + 1))
        return {
            "W1": rng.uniform(-bound1, bound1, (n_features, h)),
            "b1": rng.uniform(-bound1, bound1, h),
            "W2": rng.uniform(-bound2, bound2, h),
            "b2": rng.uniform(-bound2, bound2, 1),
        }

    def fit(
        self,
        params: Params,
        X: NDArray[np.float64],
        y: NDArray[np.int8],
        *,
        epochs: int,
        seed: int,
        state: Params | None,
    ) -> tuple[Params, Params]:
        """``epochs`` calls of ``partial_fit`` from ``params``, resuming the optimiser's ``state``.

        Parameters
        ----------
        params : Params
            ``W1`` (p, h), ``b1`` (h,), ``W2`` (h,), ``b2`` (1,).
        X : ndarray of float64, shape (n, p)
        y : ndarray of int8, shape (n,), values 0/1
        epochs : int
        seed : int
            ``random_state`` of the estimator (the order rows are shuffled in).
        state : Params or None
            What :meth:`fit` returned last round for this client, or None on its first round.

        Returns
        -------
        (Params, Params)
            The new parameters and the state to keep (see the class docstring).
        """
        model = _resume(self._template, params, X.shape[1], seed, state)
        for _ in range(epochs):
            model.partial_fit(X, y, classes=CLASSES)
        W1, W2 = model.coefs_
        b1, b2 = model.intercepts_
        new = {
            "W1": np.array(W1, dtype=np.float64),
            "b1": np.array(b1, dtype=np.float64),
            "W2": np.array(W2, dtype=np.float64).reshape(-1),
            "b2": np.array(b2, dtype=np.float64).reshape(1),
        }
        return new, _save_state(model)

    def decision_function(self, params: Params, X: NDArray[np.float64]) -> NDArray[np.float64]:
        """``act(X @ W1 + b1) @ W2 + b2``: the output unit's logit, float64 (n,)."""
        hidden, _ = _activate(self.activation, X @ params["W1"] + params["b1"])
        return np.asarray(hidden @ params["W2"] + params["b2"][0], dtype=np.float64)

    def per_sample_gradients(
        self, params: Params, X: NDArray[np.float64], y: NDArray[np.integer]
    ) -> NDArray[np.float64]:
        """Each row's log-loss gradient by back-propagation, vectorised over rows.

        Only the data term: the L2 penalty ``alpha`` that training adds is not included (the
        attacks use the loss of each record alone).

        Parameters
        ----------
        params : Params
        X : ndarray of float64, shape (n, p)
        y : ndarray of int, shape (n,), values 0/1

        Returns
        -------
        ndarray of float64, shape (n, p h + 2 h + 1)
            Columns: ``W1`` raveled in C order (p h), ``b1`` (h), ``W2`` (h), ``b2`` (1).
        """
        n, p = X.shape
        h = self.hidden_units
        hidden, slope = _activate(self.activation, X @ params["W1"] + params["b1"])
        z = hidden @ params["W2"] + params["b2"][0]
        # sigmoid(z) - y without cancellation: -sigmoid(-z) when y = 1.
        r = np.where(np.asarray(y) == 1, -expit(-z), expit(z)).astype(np.float64)
        delta = slope * params["W2"] * r[:, None]  # dloss/d(hidden pre-activation), (n, h)
        out = np.empty((n, p * h + 2 * h + 1))
        # A column slice whose last axis splits into (p, h) reshapes as a view: written in place.
        grad_w1 = out[:, : p * h].reshape(n, p, h)
        np.multiply(X[:, :, None], delta[:, None, :], out=grad_w1)
        out[:, p * h : p * h + h] = delta
        np.multiply(hidden, r[:, None], out=out[:, p * h + h : p * h + 2 * h])
        out[:, -1] = r
        return out

    def gradient_norm_bound(self, n_features: int, max_value: float = 2.0) -> float | None:
        """None: the gradient of ``W1`` scales with ``W2``, which is unbounded."""
        return None


def _single_layer(sizes: Any, hidden_units: int | None) -> int:
    """``hidden_layer_sizes`` given instead of ``hidden_units``: it must name one layer."""
    layers = list(sizes) if isinstance(sizes, Iterable) and not isinstance(sizes, str) else [sizes]
    if len(layers) != 1:
        raise ConfigError(
            f"model.hidden_layer_sizes={sizes!r}: this MLP has exactly one hidden layer; "
            "set model.hidden_units to its width instead"
        )
    width = layers[0]
    if hidden_units is not None and hidden_units != width:
        raise ConfigError(
            f"model.hidden_layer_sizes={sizes!r} contradicts model.hidden_units={hidden_units}; "
            "set only model.hidden_units"
        )
    return width  # type: ignore[no-any-return]


def _plain(mlp: dict[str, Any]) -> dict[str, Any]:
    """Config containers (Hydra's) as plain values, so scikit-learn's validation sees them."""
    return {
        k: (list(v) if isinstance(v, Iterable) and not isinstance(v, str) else v)
        for k, v in mlp.items()
    }


def _resume(
    template: MLPClassifier, params: Params, n_features: int, seed: int, state: Params | None
) -> MLPClassifier:
    """An estimator whose next ``partial_fit`` continues from ``params`` and ``state``.

    ``partial_fit`` initialises the network only when ``coefs_`` is missing, so every
    attribute its ``_initialize`` would set is set here; ``classes_`` and the label binariser
    are left to ``partial_fit(classes=...)``. Without ``state`` scikit-learn builds a fresh
    optimiser on the first call; with it, the optimiser is rebuilt and its moments restored.
    """
    model: MLPClassifier = MLPClassifier(**template.get_params()).set_params(random_state=seed)
    model.coefs_ = [
        np.array(params["W1"], dtype=np.float64),
        np.array(params["W2"], dtype=np.float64).reshape(-1, 1),
    ]
    model.intercepts_ = [
        np.array(params["b1"], dtype=np.float64),
        np.array(params["b2"], dtype=np.float64).reshape(1),
    ]
    model.n_features_in_ = n_features
    model.n_outputs_ = 1
    model.n_layers_ = 3
    model.out_activation_ = "logistic"
    model.n_iter_ = 0
    model.loss_curve_ = []
    model.validation_scores_ = None
    model.best_validation_score_ = None
    model.t_ = 0
    model.best_loss_ = np.inf
    model._no_improvement_count = 0
    if state is not None:
        _restore_state(model, state)
    return model


def _scalar(state: Params, key: str) -> float:
    if key not in state:
        raise ValueError(f"MLP optimiser state has no {key!r} (keys: {sorted(state)})")
    return float(np.asarray(state[key]).reshape(-1)[0])


def _restore_state(model: MLPClassifier, state: Params) -> None:
    model.t_ = int(_scalar(state, "t"))
    model.best_loss_ = _scalar(state, "best_loss")
    model._no_improvement_count = int(_scalar(state, "no_improvement_count"))
    shaped = dict(zip(SKLEARN_ORDER, model.coefs_ + model.intercepts_, strict=True))

    def arrays(prefix: str) -> list[Array]:
        for name in SKLEARN_ORDER:
            if f"{prefix}{name}" not in state:
                raise ValueError(f"MLP optimiser state has no {prefix}{name!r}")
        return [
            np.array(state[f"{prefix}{name}"], dtype=np.float64).reshape(shaped[name].shape)
            for name in SKLEARN_ORDER
        ]

    params = model.coefs_ + model.intercepts_
    optimizer: AdamOptimizer | SGDOptimizer
    if model.solver == "adam":
        optimizer = AdamOptimizer(
            params, model.learning_rate_init, model.beta_1, model.beta_2, model.epsilon
        )
        optimizer.t = int(_scalar(state, "step"))
        optimizer.ms = arrays("m_")
        optimizer.vs = arrays("v_")
    else:
        optimizer = SGDOptimizer(
            params,
            model.learning_rate_init,
            model.learning_rate,
            model.momentum,
            model.nesterovs_momentum,
            model.power_t,
        )
        optimizer.velocities = arrays("velocity_")
    optimizer.learning_rate = _scalar(state, "current_learning_rate")
    model._optimizer = optimizer


def _save_state(model: MLPClassifier) -> Params:
    optimizer = model._optimizer
    state: Params = {
        "t": np.array([float(model.t_)]),
        "best_loss": np.array([float(model.best_loss_)]),
        "no_improvement_count": np.array([float(model._no_improvement_count)]),
        "current_learning_rate": np.array([float(optimizer.learning_rate)]),
    }
    moments: dict[str, list[Array]]
    if isinstance(optimizer, AdamOptimizer):
        state["step"] = np.array([float(optimizer.t)])
        moments = {"m_": optimizer.ms, "v_": optimizer.vs}
    else:
        moments = {"velocity_": optimizer.velocities}
    for prefix, values in moments.items():
        by_name = dict(zip(SKLEARN_ORDER, values, strict=True))
        for name in NAMES:  # stored in the parameters' order, shaped as the parameters
            value = np.array(by_name[name], dtype=np.float64)
            state[f"{prefix}{name}"] = value.reshape(-1) if name in ("W2", "b2") else value
    return state
