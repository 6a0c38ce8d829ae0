"""Many FedAvg federations of SGD logistic regression at once, on one stacked parameter matrix.

Reference-model attacks (LiRA) train K federations that mimic the target's recipe. Running K
Flower federations costs K times one; here every client of every federation is one row of a
stacked parameter matrix ``W`` (K * C, p), all of them take their per-sample SGD step at once
(one vectorised numpy step per row position), and FedAvg is a sample-weighted mean over each
federation's C rows after every round.

The SGD is scikit-learn's ``SGDClassifier.partial_fit`` with the log loss
(``sklearn/linear_model/_sgd_fast.pyx.tp``): per row, ``z = w . x + b``; step size ``eta`` from
the step counter ``t`` (``optimal``: ``1 / (alpha (t0 + t - 1))`` with ``t0 = 1 / (alpha
sqrt(1 / sqrt(alpha)))``; ``constant`` and ``adaptive``, which one partial_fit epoch never
adapts: ``eta0``; ``invscaling``: ``eta0 / t^power_t``); ``g = sigmoid(z) - y``; the weights
decay by ``1 - eta alpha`` (L2), then ``w += -eta g x`` and ``b += -eta g``; ``t += 1``. Each
client keeps its counter across rounds (as :class:`fedgen.models.linear.SGDLogistic` does) and
shuffles its rows every epoch (its own order, not scikit-learn's).

Two exact forms of the same arithmetic, chosen by cost:

``primal``
    ``W`` itself, with the decay kept as a per-row scale applied every chunk of steps (as
    scikit-learn's ``WeightVector`` does), so each step is a dot product and an axpy per row.
``dual``
    When the pool of rows is smaller than the number of features (the genomic regime), every
    weight vector stays ``s w0 + A X_pool`` (``A`` (K * C, N)); the pool's Gram matrix is
    computed once (in float32 for small integer genotypes, where it is exact), and a step costs
    O(rows per client) instead of O(p).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
from numpy.typing import NDArray
from scipy.special import expit
from sklearn.linear_model import SGDClassifier

from fedgen.core.errors import ConfigError
from fedgen.models.linear import SGDLogistic

Method = Literal["auto", "primal", "dual"]
CHUNK_BYTES = 4_000_000  # rows gathered at once by the primal form (per chunk of steps)
_SUPPORTED_RATES = ("optimal", "constant", "adaptive", "invscaling")


@dataclass(frozen=True)
class SGDRule:
    """The step rule of one ``SGDLogistic``: what per-sample SGD does at step counter ``t``.

    Attributes
    ----------
    alpha : float
        L2 strength (also sets the ``optimal`` schedule).
    learning_rate : {"optimal", "constant", "adaptive", "invscaling"}
    eta0, power_t : float
    l2 : bool
        True for ``penalty="l2"``, False for no penalty.
    fit_intercept, shuffle : bool
    """

    alpha: float = 1e-4
    learning_rate: str = "optimal"
    eta0: float = 0.01
    power_t: float = 0.5
    l2: bool = True
    fit_intercept: bool = True
    shuffle: bool = True

    def step_sizes(self, t: NDArray[np.float64]) -> NDArray[np.float64]:
        """``eta`` at step counters ``t`` (1-based, any shape), float64 of the same shape."""
        if self.learning_rate == "optimal":
            typw = np.sqrt(1.0 / np.sqrt(self.alpha))
            # initial_eta0 = typw / max(1, dloss(1, -typw)); the log loss's dloss there is < 0.
            t0 = 1.0 / (typw * self.alpha)
            return np.asarray(1.0 / (self.alpha * (t0 + t - 1.0)), np.float64)
        if self.learning_rate == "invscaling":
            return np.asarray(self.eta0 / np.power(t, self.power_t), np.float64)
        return np.full(np.shape(t), float(self.eta0))


def sgd_rule(model: object) -> SGDRule | None:
    """The step rule of ``model`` if it is an ``SGDLogistic`` this trainer reproduces, else None.

    Raises
    ------
    ConfigError
        An ``SGDLogistic`` setting the stacked trainer does not implement (L1 or elastic-net
        penalty, class weights).
    """
    if not isinstance(model, SGDLogistic):
        return None
    p = SGDClassifier(**model.sgd).get_params()
    if p["penalty"] not in ("l2", None):
        raise ConfigError(
            f"model.penalty={p['penalty']!r}: reference federations are trained for penalty l2 "
            "or null only; remove model.penalty"
        )
    if p["class_weight"] is not None:
        raise ConfigError("model.class_weight is not supported by reference training; remove it")
    if p["learning_rate"] not in _SUPPORTED_RATES:
        raise ConfigError(
            f"model.learning_rate={p['learning_rate']!r} is not supported by reference training; "
            f"use one of: {', '.join(_SUPPORTED_RATES)}"
        )
    return SGDRule(
        alpha=float(p["alpha"]),
        learning_rate=str(p["learning_rate"]),
        eta0=float(p["eta0"]),
        power_t=float(p["power_t"]),
        l2=p["penalty"] == "l2",
        fit_intercept=bool(p["fit_intercept"]),
        shuffle=bool(p["shuffle"]),
    )


@dataclass(frozen=True)
class StackedFederations:
    """K trained federations.

    Attributes
    ----------
    coef : ndarray of float64, shape (K, p)
        Each federation's final global model.
    intercept : ndarray of float64, shape (K,)
    client_coef : ndarray of float64, shape (K, C, p)
        The model each client returned in the last round.
    client_intercept : ndarray of float64, shape (K, C)
    """

    coef: NDArray[np.float64]
    intercept: NDArray[np.float64]
    client_coef: NDArray[np.float64]
    client_intercept: NDArray[np.float64]


@dataclass
class _Epoch:
    """One epoch's schedule for all M client rows: order, step sizes and decay."""

    rows: NDArray[np.intp]  # (M, n) pool rows in step order (padding repeats a valid row)
    eta: NDArray[np.float64]  # (M, n), 0 where a client has no row at that position
    log_decay: NDArray[np.float64]  # (M, n + 1): log of the decay applied before each step


def _epoch(
    rows: NDArray[np.intp],
    sizes: NDArray[np.int64],
    t: NDArray[np.float64],
    rule: SGDRule,
    rng: np.random.Generator,
) -> _Epoch:
    """Shuffle each client's rows and tabulate its steps; advances the counters ``t`` (M,)."""
    m, n = rows.shape
    active = np.arange(n)[None, :] < sizes[:, None]
    if rule.shuffle and np.all(sizes == n):
        rows = rng.permuted(rows, axis=1)
    elif rule.shuffle:
        keys = np.where(active, rng.random((m, n)), np.inf)
        order = np.argsort(keys, axis=1, kind="stable")
        rows = np.take_along_axis(rows, order, axis=1)
    eta = np.where(active, rule.step_sizes(t[:, None] + np.arange(n)[None, :]), 0.0)
    t += sizes
    decay = 1.0 - eta * rule.alpha if rule.l2 else np.ones_like(eta)
    if np.any(decay <= 0.0):
        raise ConfigError(
            "model settings give a step size times alpha of 1 or more (every step would wipe "
            "the weights); reference training does not support that: lower model.eta0 or alpha"
        )
    log_decay = np.zeros((m, n + 1))
    np.cumsum(np.log(decay), axis=1, out=log_decay[:, 1:])
    return _Epoch(rows, eta, log_decay)


def _primal_epoch(
    W: NDArray[np.float64],
    b: NDArray[np.float64],
    X: NDArray[np.float64],
    y: NDArray[np.float64],
    ep: _Epoch,
    fit_intercept: bool,
) -> None:
    """One epoch of per-sample SGD on every row of ``W`` (M, p) and ``b`` (M,), in place.

    The decay is kept lazily as a scale per row (``W = s V``), folded in at each chunk's end.
    """
    m, n = ep.rows.shape
    p = W.shape[1]
    chunk = int(np.clip(CHUNK_BYTES // max(1, m * p * 8), 1, 256))
    z = np.empty(m)
    u = np.empty(m)
    z3, u2, W3 = z.reshape(m, 1, 1), u.reshape(m, 1), W[:, None, :]  # views, made once
    for k0 in range(0, n, chunk):
        k1 = min(n, k0 + chunk)
        xs = X[ep.rows[:, k0:k1].T]  # (k, M, p): a fresh buffer, scaled in place below
        ys = y[ep.rows[:, k0:k1].T]
        scale = np.exp(ep.log_decay[:, k0 : k1 + 1] - ep.log_decay[:, k0 : k0 + 1]).T
        neg_eta = -ep.eta[:, k0:k1].T
        lazy = neg_eta / scale[1:]  # -eta / s after the step's decay
        for k in range(k1 - k0):
            x = xs[k]
            np.matmul(W3, x[:, :, None], out=z3)
            z *= scale[k]
            z += b
            expit(z, out=z)
            z -= ys[k]  # g = sigmoid(z) - y
            if fit_intercept:
                np.multiply(z, neg_eta[k], out=u)
                b += u
            np.multiply(z, lazy[k], out=u)
            x *= u2
            W += x
        W *= scale[-1][:, None]


def _dual_epoch(
    s: NDArray[np.float64],
    A: NDArray[np.float64],
    b: NDArray[np.float64],
    G: NDArray[np.float64],
    xw0: NDArray[np.float64],
    y: NDArray[np.float64],
    ep: _Epoch,
    fit_intercept: bool,
) -> None:
    """One epoch on weights ``s w0 + A X_pool`` (s (M,), A (M, N), b (M,)), in place.

    ``G`` (N, N) is the pool's Gram matrix and ``xw0`` (N,) the pool rows' dot products with
    ``w0``. With ``L`` the running log decay, row k's logit is
    ``exp(L_k) (w . x_k) + b + sum_{j<k} u_j (exp(L_k - L_{j+1}) x_j . x_k + 1)`` with
    ``u_j = -eta_j (sigmoid(z_j) - y_j)``: a recursion over the client's rows only.
    """
    rows, eta, L = ep.rows, ep.eta, ep.log_decay
    m, n = rows.shape
    big = G.shape[0]
    mi = np.arange(m)[:, None]
    start = (A @ G)[mi, rows] + s[:, None] * xw0[rows]  # (M, n): w . x_k at the epoch start
    # coupling[m, j, k] = -eta_j (exp(L_k - L_{j+1}) x_j . x_k + 1); only j < k is read.
    coupling = np.take(G.ravel(), rows[:, :, None] * big + rows[:, None, :])
    if L[:, -1].min() > -600.0:  # exp(-L) stays finite: the decay ratio as an outer product
        coupling *= np.exp(L[:, None, :-1])
        coupling *= (-eta * np.exp(-L[:, 1:]))[:, :, None]
    else:
        coupling *= np.exp(np.minimum(L[:, None, :-1] - L[:, 1:, None], 0.0))
        coupling *= -eta[:, :, None]
    if fit_intercept:
        coupling -= eta[:, :, None]
    yr = y[rows]
    acc = np.exp(L[:, :-1]) * start + b[:, None]
    g = np.empty((m, n))
    for k in range(n):
        expit(acc[:, k], out=g[:, k])
        g[:, k] -= yr[:, k]  # sigmoid(z_k) - y_k
        acc[:, k + 1 :] += g[:, k, None] * coupling[:, k, k + 1 :]
    u = -eta * g
    end = np.exp(L[:, -1])
    s *= end
    A *= end[:, None]
    np.add.at(A, (np.broadcast_to(mi, rows.shape), rows), u * np.exp(L[:, -1:] - L[:, 1:]))
    if fit_intercept:
        b += u.sum(axis=1)


def _gram(X: NDArray[np.float64]) -> NDArray[np.float64]:
    """``X X^T`` (N, N), float64; through float32 when that is exact (small integers)."""
    ints = np.array_equal(X, np.rint(X))
    if ints and float(np.max(np.abs(X), initial=0.0)) ** 2 * X.shape[1] < 2.0**24:
        X32 = X.astype(np.float32)
        return (X32 @ X32.T).astype(np.float64)
    return np.asarray(X @ X.T, np.float64)


def train_stacked(
    X: NDArray[np.float64],
    y: NDArray[np.integer],
    rows: NDArray[np.integer],
    sizes: NDArray[np.integer] | tuple[int, ...],
    *,
    rounds: int,
    epochs: int,
    rule: SGDRule,
    rng: np.random.Generator,
    initial_coef: NDArray[np.float64] | None = None,
    initial_intercept: float = 0.0,
    method: Method = "auto",
) -> StackedFederations:
    """Train K FedAvg federations of C clients each, all at once.

    Parameters
    ----------
    X : ndarray of float64, shape (N, p)
        The pool of rows the clients hold.
    y : ndarray of int, shape (N,), values 0/1
    rows : ndarray of int, shape (K, sum(sizes))
        Federation k's rows (indices into ``X``): client c holds the slice
        ``sizes[:c].sum() : sizes[:c + 1].sum()``.
    sizes : ndarray of int, shape (C,)
        Rows per client (also FedAvg's weights).
    rounds, epochs : int
        FedAvg rounds, and local passes over the rows per round.
    rule : SGDRule
    rng : numpy Generator
        Draws each client's row order every epoch.
    initial_coef : ndarray of float64, shape (p,), optional
        The global model of round 1 (zeros by default), with ``initial_intercept``.
    method : {"auto", "primal", "dual"}
        ``auto``: ``dual`` when the pool ``X`` has no more rows than features (at most 4,096,
        and at most 2e7 coupling entries K C n^2), else ``primal``. Both compute the same
        arithmetic.

    Returns
    -------
    StackedFederations
    """
    sizes = np.asarray(sizes, np.int64)
    rows = np.asarray(rows, np.intp)
    k_fed, c = rows.shape[0], sizes.shape[0]
    m, p = k_fed * c, X.shape[1]
    offsets = np.concatenate([[0], np.cumsum(sizes)])
    if rows.shape[1] != offsets[-1]:
        raise ValueError(f"rows has {rows.shape[1]} columns; the sizes sum to {offsets[-1]}")
    n = int(sizes.max())
    client_rows = np.empty((m, n), np.intp)
    for ci in range(c):
        part = rows[:, offsets[ci] : offsets[ci + 1]]
        pad = np.repeat(part[:, :1], n - part.shape[1], axis=1)
        client_rows[ci::c] = np.concatenate([part, pad], axis=1)
    client_sizes = np.tile(sizes, k_fed)
    weights = (sizes / sizes.sum())[None, :, None]
    w0 = np.zeros(p) if initial_coef is None else np.asarray(initial_coef, np.float64)
    if method == "auto":
        small = X.shape[0] <= min(p, 4096) and m * n * n <= 20_000_000
        method = "dual" if small else "primal"
    yf = np.asarray(y, np.float64)
    t = np.ones(m)
    b = np.full(m, float(initial_intercept))
    if method == "primal":
        W = np.tile(w0, (m, 1))
        for _ in range(rounds):
            for _ in range(epochs):
                ep = _epoch(client_rows, client_sizes, t, rule, rng)
                _primal_epoch(W, b, X, yf, ep, rule.fit_intercept)
            client_coef, client_b = W.reshape(k_fed, c, p).copy(), b.reshape(k_fed, c).copy()
            W[:] = np.repeat((client_coef * weights).sum(axis=1), c, axis=0)
            b[:] = np.repeat((client_b * weights[..., 0]).sum(axis=1), c)
        return StackedFederations(W[::c].copy(), b[::c].copy(), client_coef, client_b)
    G, xw0 = _gram(X), X @ w0
    s, A = np.ones(m), np.zeros((m, X.shape[0]))
    for _ in range(rounds):
        for _ in range(epochs):
            ep = _epoch(client_rows, client_sizes, t, rule, rng)
            _dual_epoch(s, A, b, G, xw0, yf, ep, rule.fit_intercept)
        client_s, client_A = s.reshape(k_fed, c).copy(), A.reshape(k_fed, c, -1).copy()
        client_b = b.reshape(k_fed, c).copy()
        s[:] = np.repeat((client_s * weights[..., 0]).sum(axis=1), c)
        A[:] = np.repeat((client_A * weights).sum(axis=1), c, axis=0)
        b[:] = np.repeat((client_b * weights[..., 0]).sum(axis=1), c)
    client_coef = client_s[..., None] * w0 + client_A @ X
    coef = s[::c, None] * w0 + A[::c] @ X
    return StackedFederations(coef, b[::c].copy(), client_coef, client_b)
