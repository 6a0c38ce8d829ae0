"""Logistic-regression calculus the attackers use: logits, residuals, per-sample gradients."""

from __future__ import annotations

from typing import Literal

import numpy as np
from numpy.typing import NDArray
from scipy.special import expit

from fedgen.core.errors import ConfigError
from fedgen.core.records import FederationResult, LinearParams

ModelChoice = Literal["global", "client"]
MODEL_CHOICES = ("global", "client")


def check_model_choice(name: str, model: str) -> ModelChoice:
    """Validate an attack's ``model`` option (``global`` or ``client``)."""
    if model not in MODEL_CHOICES:
        raise ConfigError(
            f"attack.{name}.model={model!r} is not valid; choose one of: {', '.join(MODEL_CHOICES)}"
        )
    return "global" if model == "global" else "client"


def target_models(
    server: FederationResult, model: ModelChoice, clients: NDArray[np.int64]
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """The parameters each target is scored against.

    ``global`` is the aggregate after the last round; ``client`` is the last local model that
    the target's own client returned to the server.

    Returns
    -------
    coef : ndarray of float64, shape (n, p)  (a broadcast view for ``global``)
    intercept : ndarray of float64, shape (n,)
    """
    n = clients.shape[0]
    if model == "global" or not server.rounds:
        final = server.final_params
        p = final.coef.shape[0]
        return np.broadcast_to(final.coef, (n, p)), np.full(n, final.intercept)
    last = server.rounds[-1].client_params
    coef = np.stack([c.coef for c in last])
    intercept = np.array([c.intercept for c in last])
    return coef[clients], intercept[clients]


def logits(
    X: NDArray[np.float64], coef: NDArray[np.float64], intercept: NDArray[np.float64]
) -> NDArray[np.float64]:
    """Row-wise decision values ``z_i = x_i . w_i + b_i``: X (n, p), coef (n, p), intercept (n,)."""
    return np.asarray(np.einsum("ij,ij->i", X, coef) + intercept, dtype=np.float64)


def residuals(z: NDArray[np.float64], y: NDArray[np.integer]) -> NDArray[np.float64]:
    """``sigmoid(z) - y``, float64 (n,): the derivative of the log loss with respect to z."""
    return np.asarray(expit(z) - y, dtype=np.float64)


def per_sample_gradients(
    params: LinearParams, X: NDArray[np.float64], y: NDArray[np.integer]
) -> NDArray[np.float64]:
    """Gradient of each sample's log loss with respect to ``[coef, intercept]``.

    ``g_i = (sigmoid(z_i) - y_i) * [x_i, 1]``, computed for all rows at once.

    Parameters
    ----------
    params : LinearParams
    X : ndarray of float64, shape (n, p)
    y : ndarray of int, shape (n,), values 0/1

    Returns
    -------
    ndarray of float64, shape (n, p + 1); the last column is the intercept's gradient.
    """
    r = residuals(X @ params.coef + params.intercept, y)
    out = np.empty((X.shape[0], X.shape[1] + 1))
    np.multiply(X, r[:, None], out=out[:, :-1])
    out[:, -1] = r
    return out


def gradient_norms(X: NDArray[np.float64], r: NDArray[np.float64]) -> NDArray[np.float64]:
    """``||g_i|| = |r_i| * sqrt(||x_i||^2 + 1)`` without forming the gradients: X (n, p), r (n,)."""
    return np.asarray(np.abs(r) * np.sqrt(np.einsum("ij,ij->i", X, X) + 1.0))


def gradient_norm_bound(n_features: int, max_value: float = 2.0) -> float:
    """The largest per-sample gradient norm any genotype record can have.

    With genotypes in {0, 1, 2} and ``|sigmoid(z) - y| < 1``, ``||g|| < sqrt(4 p + 1)``. The
    bound depends on the number of SNPs only, never on the evaluated pool.
    """
    return float(np.sqrt(n_features * max_value**2 + 1.0))
