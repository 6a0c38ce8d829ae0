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
    ``[W, b]`` itself (K * C, p + 1), with the decay kept as a per-row scale applied every
    chunk of steps (as scikit-learn's ``WeightVector`` does) and the intercept as one more
    weight, so each step is one row-wise dot product and one axpy for all rows at once: seven
    numpy calls on (K * C, p + 1) arrays. The pool stays int8 (genotypes) and a chunk of
    gathered rows is cast to float64 at a time; for large p the rows are stepped a
    cache-sized group at a time.
``dual``
    When the pool of rows is smaller than the number of features (the genomic regime), every
    weight vector stays ``s w0 + A X_pool`` (``A`` (K * C, N)); the pool's Gram matrix is
    computed once (in float32 for small integer genotypes, where it is exact), and a step costs
    O(rows per client) instead of O(p).

"Exact" means the same operations up to float round-off (tests check both forms against
``partial_fit`` to 1e-10). Where the SGD is chaotic, round-off grows: on the default
experiment (step sizes near 10 on 0/1/2 genotypes) two exact implementations, scikit-learn's
included, agree to 1e-13 after 400 steps and differ by O(1) in the weights after 3,200, so
there only the distribution of the reference models (what LiRA uses) is reproducible across
implementations, while this one is deterministic run to run.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, fields
from typing import Any, Literal

import numpy as np
from numpy.typing import NDArray
from scipy.special import expit
from sklearn.linear_model import SGDClassifier

from fedgen.core.errors import ConfigError
from fedgen.core.forked import fork_map
from fedgen.models.linear import SGDLogistic

Method = Literal["auto", "primal", "dual"]
GROUP_VALUES = 65_536  # weights of the models stepped together (W and x stay in L2 cache)
CHUNK_VALUES = 131_072  # gathered row values per chunk of steps (float64: 1 MiB)
# Steps between two foldings of the lazy decay into the weights. The same for every model
# whichever models it is stepped with, so that its arithmetic (and round-off) does not depend
# on the grouping, the number of models trained at once or the worker processes.
FOLD_STEPS = 256
# Row-wise dot products longer than this are split: OpenBLAS threads a dot product of more
# than 10,000 values, and on a busy machine its threads' handshake costs 50x the arithmetic.
DOT_COLUMNS = 8192
_vecdot = getattr(np, "vecdot", None)
POOL_VALUES = 1 << 23  # values of the pool cast to float at once by the dual form (64 MiB)
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

    def logits(self, X: NDArray[np.float64], client: int | None = None) -> NDArray[np.float64]:
        """Each row's logit under every federation's global model (``client`` None) or under
        the model its client ``client`` returned last: one matrix product, X (n, p) ->
        float64 (n, K)."""
        if client is None:
            coef, intercept = self.coef, self.intercept
        else:
            coef, intercept = self.client_coef[:, client], self.client_intercept[:, client]
        out: NDArray[np.float64] = X @ coef.T
        out += intercept
        return out


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
    rngs: Sequence[np.random.Generator],
) -> _Epoch:
    """Shuffle each client's rows and tabulate its steps; advances the counters ``t`` (M,).

    Federation k's C clients (rows ``k C : (k + 1) C``) draw their orders from ``rngs[k]``.
    """
    m, n = rows.shape
    c = m // len(rngs)
    active = np.arange(n)[None, :] < sizes[:, None]
    if rule.shuffle and np.all(sizes == n):
        rows = np.concatenate(
            [r.permuted(rows[k * c : (k + 1) * c], axis=1) for k, r in enumerate(rngs)]
        )
    elif rule.shuffle:
        keys = np.concatenate([r.random((c, n)) for r in rngs])
        keys[~active] = np.inf
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


def _wide_rowdot(W: NDArray[np.float64], x: NDArray[np.float64], out: NDArray[np.float64]) -> None:
    """``out[i] = W[i] . x[i]`` for rows (g, q) longer than :data:`DOT_COLUMNS`, a piece of
    columns at a time (each piece single-threaded in BLAS)."""
    out[:] = 0.0
    for j in range(0, W.shape[1], DOT_COLUMNS):
        piece = slice(j, j + DOT_COLUMNS)
        if _vecdot is not None:
            out += _vecdot(W[:, piece], x[:, piece])
        else:
            out += np.einsum("gp,gp->g", W[:, piece], x[:, piece])


def _primal_epoch(
    W: NDArray[np.float64],
    X: NDArray[np.number[Any]],
    y: NDArray[np.float64],
    ep: _Epoch,
    fit_intercept: bool,
) -> None:
    """One epoch of per-sample SGD on every row of ``W`` (M, p + 1), intercept last, in place.

    ``X`` (N, p + 1) is the pool with one more column (its values are never read). The models
    are stepped a cache-sized group at a time (all of them when p is small). The decay is
    folded in every :data:`FOLD_STEPS` steps, or every step if the decay over that many steps
    could underflow; that choice depends on the step schedule alone, which is the same for
    client c of every federation, so it is the same for any set of whole federations.
    """
    m, n = ep.rows.shape
    fold = FOLD_STEPS
    L = ep.log_decay
    if np.min(L[:, 1:] - L[:, np.arange(n) // fold * fold], initial=0.0) < -600.0:
        fold = 1  # the scale would underflow within a block: fold it in every step
    group = max(1, min(m, GROUP_VALUES // W.shape[1]))
    for g0 in range(0, m, group):
        part = slice(g0, min(m, g0 + group))
        _primal_steps(W[part], X, y, ep.rows[part], ep.eta[part], L[part], fit_intercept, fold)


def _primal_steps(
    W: NDArray[np.float64],
    X: NDArray[np.number[Any]],
    y: NDArray[np.float64],
    rows: NDArray[np.intp],
    eta: NDArray[np.float64],
    log_decay: NDArray[np.float64],
    fit_intercept: bool,
    fold: int,
) -> None:
    """Every step of one epoch for the models ``W`` (g, p + 1), in place; ``X`` (N, p + 1).

    The decay is kept lazily as a scale per row (``W[:, :p] = s V``), folded in every ``fold``
    steps, and the intercept rides along as weight ``p``: a step's row is ``[x, 1 / s]`` for the
    dot product (so ``s (V . x + b / s) = w . x + b``) and ``[x, s']`` for the update (``s'``
    the scale after the step's decay), so each step is one row-wise dot product and one axpy.
    The residual is ``sigmoid(z) - y = sign * sigmoid(sign * z)`` with ``sign = 1 - 2y`` (as
    scikit-learn computes it for y = 1), the sign folded into the per-step factors.
    """
    g, n = rows.shape
    p = W.shape[1] - 1
    first = np.arange(n) // fold * fold  # the first step of each step's fold block
    before = np.exp(log_decay[:, :n] - log_decay[:, first])  # (g, n): scale before each step
    after = np.exp(log_decay[:, 1:] - log_decay[:, first])  # ... and after its decay
    # Rows are gathered (and cast) a chunk of steps at a time, within a fold block.
    chunk = int(np.clip(CHUNK_VALUES // (g * (p + 1)), 1, fold))
    # sigmoid(z) - y = sign sigmoid(sign z) with sign = 1 - 2y: the sign joins the scale.
    sign = 1.0 - 2.0 * y[rows]
    flip = np.ascontiguousarray((sign * before).T)  # (n, g): z -> sign z
    lazy = np.ascontiguousarray((-sign * eta / after).T)  # the axpy's factor per sigmoid
    tail = after.T if fit_intercept else np.zeros((n, g))  # weight p's row value in the axpy
    head = 1.0 / before.T  # ... and in the dot product
    z = np.empty(g)
    u = np.empty(g)
    u2, V = u.reshape(g, 1), W[:, :p]
    wide = p + 1 > DOT_COLUMNS
    xs = np.empty((chunk, g, p + 1))
    for b0 in range(0, n, fold):
        b1 = min(n, b0 + fold)
        for k0 in range(b0, b1, chunk):
            k1 = min(b1, k0 + chunk)
            kk = k1 - k0
            xs[:kk] = np.take(X, rows[:, k0:k1].T, axis=0)  # one cast (X has the extra column)
            xs[:kk, :, p] = head[k0:k1]
            for x, f, t, lz in zip(xs[:kk], flip[k0:k1], tail[k0:k1], lazy[k0:k1], strict=True):
                if wide:
                    _wide_rowdot(W, x, z)
                elif _vecdot is not None:  # numpy >= 2: a little faster than einsum
                    _vecdot(W, x, out=z)
                else:
                    np.einsum("gp,gp->g", W, x, out=z)
                z *= f
                expit(z, out=z)
                x[:, p] = t
                np.multiply(z, lz, out=u)
                x *= u2
                W += x
        V *= after[:, b1 - 1 : b1]


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


def _column_chunks(X: NDArray[np.number[Any]]) -> list[slice]:
    """Column ranges of ``X`` (N, p) holding at most :data:`POOL_VALUES` values each."""
    step = max(1, POOL_VALUES // max(1, X.shape[0]))
    return [slice(j, j + step) for j in range(0, X.shape[1], step)]


def _gram(X: NDArray[np.number[Any]]) -> NDArray[np.float64]:
    """``X X^T`` (N, N), float64, a chunk of columns at a time; through float32 when that is
    exact (integers whose products sum below 2^24, e.g. genotypes)."""
    ints = np.issubdtype(X.dtype, np.integer) or bool(np.array_equal(X, np.rint(X)))
    exact32 = ints and float(np.max(np.abs(X), initial=0)) ** 2 * X.shape[1] < 2.0**24
    G = np.zeros((X.shape[0], X.shape[0]), np.float32 if exact32 else np.float64)
    for cols in _column_chunks(X):
        part = X[:, cols].astype(G.dtype)
        G += part @ part.T
    return G.astype(np.float64, copy=False)


def _pool_product(A: NDArray[np.float64], X: NDArray[np.number[Any]]) -> NDArray[np.float64]:
    """``A @ X`` (..., p) for ``A`` (..., N), with ``X`` cast to float64 a chunk of columns at a
    time."""
    out = np.empty((*A.shape[:-1], X.shape[1]))
    for cols in _column_chunks(X):
        out[..., cols] = A @ X[:, cols].astype(np.float64)
    return out


def train_stacked(
    X: NDArray[np.number[Any]],
    y: NDArray[np.integer],
    rows: NDArray[np.integer],
    sizes: NDArray[np.integer] | tuple[int, ...],
    *,
    rounds: int,
    epochs: int,
    rule: SGDRule,
    rngs: Sequence[np.random.Generator],
    initial_coef: NDArray[np.float64] | None = None,
    initial_intercept: float = 0.0,
    method: Method = "auto",
    workers: int = 1,
    on_round: Callable[[int], None] | None = None,
) -> StackedFederations:
    """Train K FedAvg federations of C clients each, all at once.

    Parameters
    ----------
    X : ndarray, shape (N, p)
        The pool of rows the clients hold: int8 genotypes (cast to float64 a few rows at a
        time, never copied whole) or any float matrix.
    y : ndarray of int, shape (N,), values 0/1
    rows : ndarray of int, shape (K, sum(sizes))
        Federation k's rows (indices into ``X``): client c holds the slice
        ``sizes[:c].sum() : sizes[:c + 1].sum()``.
    sizes : ndarray of int, shape (C,)
        Rows per client (also FedAvg's weights).
    rounds, epochs : int
        FedAvg rounds, and local passes over the rows per round.
    rule : SGDRule
    rngs : sequence of K numpy Generators
        Federation k's clients draw their row orders every epoch from ``rngs[k]``.
    initial_coef : ndarray of float64, shape (p,), optional
        The global model of round 1 (zeros by default), with ``initial_intercept``.
    method : {"auto", "primal", "dual"}
        ``auto``: ``dual`` when the pool ``X`` has no more rows than features (at most 4,096,
        and at most 2e7 coupling entries K C n^2), else ``primal``. Both compute the same
        arithmetic.
    workers : int >= 1
        Processes for the ``primal`` form: the federations are split into that many blocks,
        one trained here and the others in forked children (:func:`fedgen.core.forked.fork_map`;
        Linux only, elsewhere one after the other). Every federation's numbers are the same
        bit for bit whatever ``workers`` is: a federation's arithmetic and its row orders do
        not depend on the others.
    on_round : callable, optional
        Called with 1 after every FedAvg round (e.g. a progress bar's ``advance``), by the
        federations trained in this process.

    Returns
    -------
    StackedFederations
    """
    client_n: NDArray[np.int64] = np.asarray(sizes, np.int64)
    fed_rows: NDArray[np.intp] = np.asarray(rows, np.intp)
    k_fed, c = fed_rows.shape[0], client_n.shape[0]
    m, p = k_fed * c, X.shape[1]
    offsets = np.concatenate([[0], np.cumsum(client_n)])
    if fed_rows.shape[1] != offsets[-1]:
        raise ValueError(f"rows has {fed_rows.shape[1]} columns; the sizes sum to {offsets[-1]}")
    if len(rngs) != k_fed:
        raise ValueError(f"{len(rngs)} generators for {k_fed} federations")
    n = int(client_n.max())
    w0 = np.zeros(p) if initial_coef is None else np.asarray(initial_coef, np.float64)
    if method == "auto":
        small = X.shape[0] <= min(p, 4096) and m * n * n <= 20_000_000
        method = "dual" if small else "primal"
    recipe = _Recipe(client_n, rounds, epochs, rule, w0, float(initial_intercept))
    yf = np.asarray(y, np.float64)
    if method == "dual":
        return _train("dual", X, yf, fed_rows, list(rngs), recipe, on_round)
    Xx = np.empty((X.shape[0], p + 1), X.dtype)  # room for the intercept's row value
    Xx[:, :p], Xx[:, p] = X, 0
    blocks = np.array_split(np.arange(k_fed), max(1, min(workers, k_fed)))

    def block(i: int) -> StackedFederations:
        fed = blocks[i]
        done = on_round if i == 0 else None
        return _train("primal", Xx, yf, fed_rows[fed], [rngs[k] for k in fed], recipe, done)

    parts = fork_map(block, range(len(blocks)))
    return StackedFederations(
        *(np.concatenate([getattr(part, f.name) for part in parts]) for f in fields(parts[0]))
    )


@dataclass(frozen=True)
class _Recipe:
    """What every federation shares: rows per client, rounds, epochs, the SGD and the start."""

    sizes: NDArray[np.int64]
    rounds: int
    epochs: int
    rule: SGDRule
    w0: NDArray[np.float64]
    b0: float

    @property
    def weights(self) -> NDArray[np.float64]:
        """FedAvg's weights, the clients' shares of the rows, shape (1, C, 1)."""
        return np.asarray((self.sizes / self.sizes.sum())[None, :, None], np.float64)


def _epochs(
    rows: NDArray[np.intp], rngs: list[np.random.Generator], recipe: _Recipe
) -> Iterator[tuple[_Epoch, bool]]:
    """Every epoch's schedule for the federations ``rows`` (K, sum(sizes)), in order, each
    with True if it ends a FedAvg round."""
    client_rows = _client_rows(rows, recipe.sizes)
    client_sizes, t = np.tile(recipe.sizes, rows.shape[0]), np.ones(client_rows.shape[0])
    for _ in range(recipe.rounds):
        for e in range(recipe.epochs):
            ep = _epoch(client_rows, client_sizes, t, recipe.rule, rngs)
            yield ep, e == recipe.epochs - 1


def _client_rows(rows: NDArray[np.intp], sizes: NDArray[np.int64]) -> NDArray[np.intp]:
    """Every client's rows (K * C, max size), federation-major, short clients padded with a
    valid row (their steps there have size 0)."""
    k_fed, c, n = rows.shape[0], sizes.shape[0], int(sizes.max())
    offsets = np.concatenate([[0], np.cumsum(sizes)])
    out = np.empty((k_fed * c, n), np.intp)
    for ci in range(c):
        part = rows[:, offsets[ci] : offsets[ci + 1]]
        pad = np.repeat(part[:, :1], n - part.shape[1], axis=1)
        out[ci::c] = np.concatenate([part, pad], axis=1)
    return out


def _train(
    form: Literal["primal", "dual"],
    X: NDArray[np.number[Any]],
    y: NDArray[np.float64],
    rows: NDArray[np.intp],
    rngs: list[np.random.Generator],
    recipe: _Recipe,
    on_round: Callable[[int], None] | None,
) -> StackedFederations:
    """The federations ``rows`` (K, sum(sizes)) in ``form``: ``primal`` on the pool ``X``
    (N, p + 1) whose last column is room for the intercept, ``dual`` on the pool ``X`` (N, p).

    Every client's state is one row of each state array (primal: ``[W]``, W (K C, p + 1);
    dual: ``[s, A, b]``); after each round FedAvg replaces every row by its federation's
    weighted mean, and the last round's rows are the models the clients returned.
    """
    k_fed, c, fit = rows.shape[0], recipe.sizes.shape[0], recipe.rule.fit_intercept
    m, p = k_fed * c, X.shape[1] - 1 if form == "primal" else X.shape[1]
    G = xw0 = np.empty(0)
    if form == "primal":
        W = np.empty((m, p + 1))  # each client's [coef, intercept]
        W[:, :p], W[:, p] = recipe.w0, recipe.b0
        state = [W]
    else:
        G, xw0 = _gram(X), _pool_product(recipe.w0[None, :], X.T)[0]
        state = [np.ones(m), np.zeros((m, X.shape[0])), np.full(m, recipe.b0)]  # s, A, b
    clients = [a.reshape(k_fed, c, -1).copy() for a in state]
    for ep, round_end in _epochs(rows, rngs, recipe):
        if form == "primal":
            _primal_epoch(state[0], X, y, ep, fit)
        else:
            _dual_epoch(state[0], state[1], state[2], G, xw0, y, ep, fit)
        if round_end:
            clients = [a.reshape(k_fed, c, -1).copy() for a in state]
            for a, client in zip(state, clients, strict=True):
                mean = (client * recipe.weights).sum(axis=1)  # (K, width)
                a.reshape(m, -1)[:] = np.repeat(mean, c, axis=0)
            if on_round is not None:
                on_round(1)
    if form == "primal":
        W, client = state[0], clients[0]
        return StackedFederations(
            W[::c, :p].copy(), W[::c, p].copy(), client[..., :p].copy(), client[..., p].copy()
        )
    (s_, A, b), (client_s, client_A, client_b) = state, clients
    client_coef = client_s * recipe.w0 + _pool_product(client_A, X)
    coef = s_[::c, None] * recipe.w0 + _pool_product(A[::c], X)
    return StackedFederations(coef, b[::c].copy(), client_coef, client_b[..., 0])
