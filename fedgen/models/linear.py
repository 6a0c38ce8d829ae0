"""Binary linear models as plain arrays: local training, logits, loss and accuracy."""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import NDArray
from sklearn.base import clone

from fedgen.core.errors import ConfigError
from fedgen.core.records import LinearParams

CLASSES = np.array([0, 1])


def zeros(n_features: int) -> LinearParams:
    """The starting point of FedAvg (and of a fresh ``partial_fit``): all-zero parameters."""
    return LinearParams(coef=np.zeros(n_features), intercept=0.0)


def check_template(template: Any) -> None:
    """Fail early, naming the fix, if the configured model cannot be federated as a linear model."""
    if not (hasattr(template, "partial_fit") and hasattr(template, "decision_function")):
        raise ConfigError(
            f"model {type(template).__name__} has no partial_fit/decision_function; choose a "
            "scikit-learn linear classifier trained incrementally (SGDClassifier, Perceptron, ...)"
        )
    if getattr(template, "average", False):
        raise ConfigError(
            "model.average must be false: averaged SGD keeps state FedAvg cannot share"
        )


def fit_local(
    template: Any,
    params: LinearParams,
    X: NDArray[np.floating],
    y: NDArray[np.integer],
    *,
    epochs: int,
    seed: int,
    step_count: float | None,
) -> tuple[LinearParams, float]:
    """Continue training ``params`` on one client's rows with ``partial_fit``.

    Parameters
    ----------
    template : scikit-learn estimator
        Unfitted model; cloned, never modified.
    params : LinearParams
        Starting parameters (the global model of this round).
    X : ndarray of float, shape (n, p)
    y : ndarray of int, shape (n,)
    epochs : int
        Passes over all of ``X`` (one ``partial_fit`` call each).
    seed : int
        ``random_state`` of the clone (the client's own stream).
    step_count : float or None
        The optimiser's step counter ``t_`` left by this client's previous round, so the
        learning-rate schedule continues; None on the client's first round.

    Returns
    -------
    (LinearParams, float)
        The new parameters and the step counter to keep for the next round.
    """
    model = clone(template).set_params(random_state=seed)
    model.coef_ = params.coef.reshape(1, -1).copy()
    model.intercept_ = np.array([params.intercept])
    if step_count is not None:
        model.t_ = step_count
    for _ in range(epochs):
        model.partial_fit(X, y, classes=CLASSES)
    new = LinearParams(coef=model.coef_.ravel().copy(), intercept=float(model.intercept_[0]))
    return new, float(model.t_)


def logits(params: LinearParams, X: NDArray[np.floating]) -> NDArray[np.float64]:
    """Decision values ``X @ coef + intercept``, shape (n,)."""
    return np.asarray(X @ params.coef + params.intercept, dtype=np.float64)


def loss_and_accuracy(
    params: LinearParams, X: NDArray[np.floating], y: NDArray[np.integer]
) -> tuple[float, float]:
    """Mean logistic loss (natural log) and accuracy at decision value 0 on rows ``X`` (n, p)."""
    z = logits(params, X)
    loss = float(np.mean(np.logaddexp(0.0, z) - y * z))
    accuracy = float(np.mean((z > 0) == (y == 1)))
    return loss, accuracy
