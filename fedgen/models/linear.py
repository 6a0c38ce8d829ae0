"""Logistic regression by scikit-learn's SGD (the study's model) behind the Model interface."""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import NDArray
from sklearn import config_context
from sklearn.linear_model import SGDClassifier

from fedgen.core.errors import ConfigError
from fedgen.models.base import CLASSES, Params, log_loss_residual


class LinearLogistic:
    """What every logistic-regression model shares: the logit ``x . coef + intercept``.

    Parameters are ``coef`` float64 (p,) and ``intercept`` float64 (1,), both zero at the start;
    subclasses say how a client trains them (``fit``).
    """

    linear = True

    def init_params(self, n_features: int, seed: int) -> Params:
        """All-zero ``coef`` (p,) and ``intercept`` (1,)."""
        return {"coef": np.zeros(n_features), "intercept": np.zeros(1)}

    def decision_function(self, params: Params, X: NDArray[np.float64]) -> NDArray[np.float64]:
        """``X @ coef + intercept``, float64 (n,)."""
        return np.asarray(X @ params["coef"] + params["intercept"][0], dtype=np.float64)

    def per_sample_gradients(
        self, params: Params, X: NDArray[np.float64], y: NDArray[np.integer]
    ) -> NDArray[np.float64]:
        """``g_i = (sigmoid(z_i) - y_i) [x_i, 1]``, float64 (n, p + 1), intercept last."""
        r = log_loss_residual(self.decision_function(params, X), y)
        out = np.empty((X.shape[0], X.shape[1] + 1))
        np.multiply(X, r[:, None], out=out[:, :-1])
        out[:, -1] = r
        return out

    def gradient_norm_bound(self, n_features: int, max_value: float = 2.0) -> float | None:
        """``sqrt(p max_value^2 + 1)``: ``|sigmoid(z) - y| < 1``, ``||[x, 1]||`` at most that."""
        return float(np.sqrt(n_features * max_value**2 + 1.0))


class SGDLogistic(LinearLogistic):
    """Binary logistic regression, ``SGDClassifier(loss="log_loss")`` continued by ``partial_fit``.

    Parameters are ``coef`` float64 (p,) and ``intercept`` float64 (1,), both zero at the start
    (as a fresh ``partial_fit`` would begin). The client keeps scikit-learn's step counter
    ``t_`` between rounds (state ``t``), so the learning-rate schedule continues.

    Every keyword argument is passed to ``SGDClassifier`` (``alpha``, ``learning_rate``,
    ``eta0``, ...) and checked by scikit-learn's own parameter validation when the model is
    built. The loss must stay ``log_loss``: the attacks use the log loss's gradients.
    """

    def __init__(self, name: str = "sgd_logistic", **sgd: Any) -> None:
        loss = sgd.setdefault("loss", "log_loss")
        if loss != "log_loss":
            raise ConfigError(
                f"model.loss={loss!r} is not supported: the attacks and the per-sample gradients "
                "assume the logistic loss; use model.loss=log_loss"
            )
        for key in ("average", "warm_start", "early_stopping"):
            if sgd.get(key):
                raise ConfigError(f"model.{key} must be false: FedAvg cannot share its state")
        if "random_state" in sgd:
            raise ConfigError("model.random_state is set by fedgen from `seed`; remove it")
        self.name = name
        self.sgd = sgd
        template = SGDClassifier(**sgd)
        try:
            template._validate_params()
        except (ValueError, TypeError) as exc:
            raise ConfigError(f"invalid model setting: {exc}") from None
        self._template = template

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
        """``epochs`` calls of ``partial_fit`` from ``params``; state ``t`` is the step counter.

        ``X`` must be finite (genotypes are): scikit-learn's check that it is, a full pass over
        ``X`` on every call (3 % of a 2,000 x 50,000 client's training), is skipped.
        """
        model = SGDClassifier(**self.sgd).set_params(random_state=seed)
        model.coef_ = np.asarray(params["coef"], np.float64).reshape(1, -1).copy()
        model.intercept_ = np.array([float(params["intercept"][0])])
        if state is not None:
            model.t_ = float(state["t"][0])
        with config_context(assume_finite=True):
            for _ in range(epochs):
                model.partial_fit(X, y, classes=CLASSES)
        new = {"coef": model.coef_.ravel().copy(), "intercept": np.array([model.intercept_[0]])}
        return new, {"t": np.array([float(model.t_)])}
