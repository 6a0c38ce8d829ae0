"""The model interface: the only place that knows a model's calculus.

Parameters travel as named arrays (``Params``: a dict from name to float64 array, in a fixed
order), which is what Flower's ``ArrayRecord`` carries. Training, evaluation, the federation's
record, the cache and the attacks see only this interface; an attack asks the model for
decision values and per-sample gradients and never writes ``sigmoid(X @ coef + b)`` itself.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import numpy as np
from numpy.typing import NDArray
from scipy.special import expit

Params = dict[str, NDArray[np.float64]]
CLASSES = np.array([0, 1])  # every model is a binary classifier (partial_fit's ``classes``)
"""Named parameter arrays, float64, in the model's fixed order (e.g. ``coef``, ``intercept``)."""


@runtime_checkable
class Model(Protocol):
    """A binary classifier trained locally by each client and averaged by FedAvg.

    Attributes
    ----------
    name : str
        Short name for logs and errors (``sgd_logistic``, ``mlp``).
    linear : bool
        True if the decision value is ``x . coef + intercept`` with ``Params`` keys ``coef``
        (p,) and ``intercept`` (1,); attacks that rely on that say so when it is False.
    """

    name: str
    linear: bool

    def init_params(self, n_features: int, seed: int) -> Params:
        """The parameters FedAvg starts from (drawn from ``seed`` where they are random)."""
        ...

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
        """Continue training ``params`` on one client's rows.

        Parameters
        ----------
        params : Params
            Starting parameters (this round's global model).
        X : ndarray of float64, shape (n, p)
        y : ndarray of int8, shape (n,), values 0/1
        epochs : int
            Passes over all rows.
        seed : int
            The client's own seed (its stream of the experiment's seed).
        state : Params or None
            The optimiser state this client kept from its previous round; None on its first.

        Returns
        -------
        (Params, Params)
            The new parameters (sent to the server) and the optimiser state the client keeps
            (never sent).
        """
        ...

    def decision_function(self, params: Params, X: NDArray[np.float64]) -> NDArray[np.float64]:
        """The logit of P(y = 1) for each row: X (n, p) -> float64 (n,)."""
        ...

    def per_sample_gradients(
        self, params: Params, X: NDArray[np.float64], y: NDArray[np.integer]
    ) -> NDArray[np.float64]:
        """Each row's log-loss gradient with respect to every parameter, flattened.

        Returns
        -------
        ndarray of float64, shape (n, d)
            Row i is the gradient of ``log_loss(y_i, sigmoid(f(x_i)))``; columns follow
            :func:`flatten`'s order of ``params`` (each array raveled in C order).
        """
        ...

    def gradient_norm_bound(self, n_features: int, max_value: float) -> float | None:
        """The largest per-record gradient norm for features in [0, max_value], or None."""
        ...


class ModelWrapper:
    """A model that changes how ``inner`` trains (a defense's ``fit``) and nothing else.

    Subclasses override ``fit``; initial parameters, decision values, per-sample gradients and
    the gradient bound stay the inner model's, so evaluation and attacks see the same model.
    """

    def __init__(self, inner: Model, suffix: str) -> None:
        self.inner = inner
        self.name = f"{inner.name}+{suffix}"
        self.linear = inner.linear

    def init_params(self, n_features: int, seed: int) -> Params:
        return self.inner.init_params(n_features, seed)

    def decision_function(self, params: Params, X: NDArray[np.float64]) -> NDArray[np.float64]:
        return self.inner.decision_function(params, X)

    def per_sample_gradients(
        self, params: Params, X: NDArray[np.float64], y: NDArray[np.integer]
    ) -> NDArray[np.float64]:
        return self.inner.per_sample_gradients(params, X, y)

    def gradient_norm_bound(self, n_features: int, max_value: float) -> float | None:
        return self.inner.gradient_norm_bound(n_features, max_value)


def log_loss_residual(z: NDArray[np.float64], y: NDArray[np.integer]) -> NDArray[np.float64]:
    """``sigmoid(z) - y``, the log loss's derivative in the logit, float64 (n,).

    ``expit(z) - 1`` rounds to exactly 0 once ``z`` passes ~37, although the residual is
    ``-expit(-z)``, non-zero down to ~1e-308. Where the direct difference is 0 that form is used
    instead; elsewhere the value is the direct difference, bit for bit.
    """
    direct = np.asarray(expit(z) - y, dtype=np.float64)
    exact = np.where(np.asarray(y) == 1, -expit(-z), expit(z))
    return np.asarray(np.where(direct == 0.0, exact, direct), dtype=np.float64)


def flatten(params: Params) -> NDArray[np.float64]:
    """All parameters in one float64 vector (d,), in ``params``' order, each raveled."""
    return np.concatenate([np.ravel(a) for a in params.values()]).astype(np.float64, copy=False)


def num_parameters(params: Params) -> int:
    """Total number of scalars in ``params``."""
    return int(sum(np.size(a) for a in params.values()))


def loss_and_accuracy(
    model: Model, params: Params, X: NDArray[np.float64], y: NDArray[np.integer]
) -> tuple[float, float]:
    """Mean log loss (natural log) and accuracy at decision value 0 on rows ``X`` (n, p)."""
    z = model.decision_function(params, X)
    loss = float(np.mean(np.logaddexp(0.0, z) - y * z))
    accuracy = float(np.mean((z > 0) == (y == 1)))
    return loss, accuracy
