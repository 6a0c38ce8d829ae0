"""Logistic regression by full-batch gradient descent (FedSGD with one step per round)."""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import NDArray
from scipy.special import expit

from fedgen.core.errors import ConfigError
from fedgen.models.base import Params
from fedgen.models.linear import LinearLogistic


class GDLogistic(LinearLogistic):
    """Binary logistic regression trained by full-batch gradient descent on the mean log loss.

    Each step from ``(coef, intercept)`` on a client's rows ``X`` (n, p), ``y`` (n,) is::

        r         = sigmoid(X @ coef + intercept) - y          # (n,)
        coef      -= learning_rate * (X.T @ r / n + alpha * coef)
        intercept -= learning_rate * mean(r)                   # the intercept is not penalised

    ``steps`` such steps make one epoch, so with ``federation.local_epochs=1`` and ``steps=1``
    every client returns the global model moved by one gradient step on its own data: FedAvg is
    then FedSGD. Parameters are ``coef`` float64 (p,) and ``intercept`` float64 (1,), zero at the
    start. The learning rate is constant, so the only state a client keeps is the count of steps
    it took (``t``), for the record.

    Parameters
    ----------
    name : str
        Short name for logs and errors.
    learning_rate : float > 0
        The constant step size ``eta``.
    steps : int >= 1
        Full-batch gradient steps per local epoch.
    alpha : float >= 0
        L2 penalty ``alpha / 2 ||coef||^2`` added to the mean log loss (the attacks' per-sample
        gradients leave it out, as for the other models).
    """

    def __init__(
        self,
        name: str = "gd_logistic",
        learning_rate: float = 0.1,
        steps: int = 1,
        alpha: float = 0.0,
    ) -> None:
        if (
            isinstance(learning_rate, bool)
            or not isinstance(learning_rate, int | float)
            or not math.isfinite(learning_rate)
            or learning_rate <= 0
        ):
            raise ConfigError(
                f"model.learning_rate={learning_rate!r} must be a positive number (e.g. 0.1)"
            )
        if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
            raise ConfigError(f"model.steps={steps!r} must be a positive integer (e.g. 1)")
        if (
            isinstance(alpha, bool)
            or not isinstance(alpha, int | float)
            or not math.isfinite(alpha)
            or alpha < 0
        ):
            raise ConfigError(f"model.alpha={alpha!r} must be a non-negative number (e.g. 0)")
        self.name = name
        self.learning_rate = float(learning_rate)
        self.steps = steps
        self.alpha = float(alpha)

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
        """``epochs * steps`` full-batch gradient steps from ``params``; ``seed`` is unused."""
        del seed
        X = np.asarray(X, np.float64)
        target = np.asarray(y, np.float64)
        coef = np.asarray(params["coef"], np.float64).copy()
        intercept = float(params["intercept"][0])
        eta, n = self.learning_rate, X.shape[0]
        taken = 0.0 if state is None else float(state["t"][0])
        for _ in range(epochs * self.steps):
            r = np.asarray(expit(X @ coef + intercept), np.float64) - target
            coef -= eta * (X.T @ r / n + self.alpha * coef)
            intercept -= eta * float(np.mean(r))
            taken += 1.0
        return {"coef": coef, "intercept": np.array([intercept])}, {"t": np.array([taken])}
