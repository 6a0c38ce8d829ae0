"""Model-dependent signals the attacks read: decision values and per-sample gradient norms.

Attacks are model-agnostic: they ask the model (:mod:`fedgen.models`) for decision values and
per-sample gradients at the parameters of the model they attack, and never write a model's
calculus themselves. Candidates are processed in row chunks so memory stays bounded: each
signal reads int8 genotype rows (:class:`fedgen.attacks.genotypes.GenotypeRows`) or a float
matrix, and casts one chunk at a time to float64.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Literal

import numpy as np
from numpy.typing import NDArray
from scipy.special import expit, log_expit

from fedgen.attacks.genotypes import (
    CHUNK_ROWS,
    Features,
    float_chunks,
    n_rows,
    row_chunks,
    take,
)
from fedgen.core.errors import ConfigError
from fedgen.core.records import FederationResult, Params
from fedgen.models import Model

ModelChoice = Literal["global", "client"]
MODEL_CHOICES = ("global", "client")
__all__ = ["CHUNK_ROWS", "Features"]


def check_model_choice(name: str, model: str) -> ModelChoice:
    """Validate an attack's ``model`` option (``global`` or ``client``)."""
    if model not in MODEL_CHOICES:
        raise ConfigError(
            f"attack.{name}.model={model!r} is not valid; choose one of: {', '.join(MODEL_CHOICES)}"
        )
    return "global" if model == "global" else "client"


def attacked_params(
    server: FederationResult, choice: ModelChoice, clients: NDArray[np.int64]
) -> list[tuple[Params, NDArray[np.intp]]]:
    """The parameters each target is scored against, with the targets they apply to.

    ``global`` is the aggregate after the last round, for every target; ``client`` is the
    last local model that the target's own client returned to the server. Under secure
    aggregation (an ``aggregate_only`` last round) the server holds no client's model, and the
    aggregate stands in for each (:mod:`fedgen.attacks.observers`): the server's attack then
    sees what the public sees.

    Returns
    -------
    list of (Params, ndarray of intp)
        Parameters and the indices (into the targets) scored with them; together the index
        arrays cover every target once.
    """
    if choice == "global" or not server.rounds or server.rounds[-1].aggregate_only:
        return [(server.final_params, np.arange(clients.shape[0]))]
    last = server.rounds[-1].client_params
    return [(last[c], np.flatnonzero(clients == c)) for c in np.unique(clients)]


def logits(model: Model, params: Params, X: Features) -> NDArray[np.float64]:
    """Each row's decision value (logit) on ``params``, chunk by chunk: X (n, p) -> float64 (n,)."""
    out = np.empty(n_rows(X))
    for part in row_chunks(np.arange(n_rows(X)), X.shape[1]):
        out[part] = model.decision_function(params, take(X, part))
    return out


def decision_values(
    model: Model,
    server: FederationResult,
    choice: ModelChoice,
    X: Features,
    clients: NDArray[np.int64],
) -> NDArray[np.float64]:
    """Each target's decision value (logit) on its attacked model: X (n, p) -> float64 (n,)."""
    out = np.empty(n_rows(X))
    for params, part, x in attacked_chunks(server, choice, clients, X):
        out[part] = model.decision_function(params, x)
    return out


def attacked_chunks(
    server: FederationResult, choice: ModelChoice, clients: NDArray[np.int64], X: Features
) -> Iterator[tuple[Params, NDArray[np.intp], NDArray[np.float64]]]:
    """Each attacked model with a bounded chunk of its targets, as float64 rows.

    Per attacked model (:func:`attacked_params`), then
    :func:`~fedgen.attacks.genotypes.row_chunks`; the rows are cast into one reused buffer
    (fresh memory costs more than the arithmetic at biobank scale), so each chunk's rows
    (k, p) are valid only until the next chunk is asked for.

    Yields
    ------
    (Params, ndarray of intp, ndarray of float64)
        The parameters, the targets' indices (k,) and their rows (k, p).
    """
    for params, rows in attacked_params(server, choice, clients):
        pieces = list(row_chunks(rows, X.shape[1]))
        for part, x in zip(pieces, float_chunks(X, pieces), strict=True):
            yield params, part, x


RowSignal = Callable[[Model, Params, NDArray[np.float64], NDArray[np.integer]], NDArray[np.float64]]
"""A per-row signal of a chunk: (model, params, rows x (k, p), labels (k,)) -> float64 (k,)."""


def _per_target(
    signals: Sequence[RowSignal],
    model: Model,
    server: FederationResult,
    choice: ModelChoice,
    X: Features,
    y: NDArray[np.integer],
    clients: NDArray[np.int64],
) -> list[NDArray[np.float64]]:
    """Each of ``signals`` for every target on its attacked model, each float64 (n,): every
    chunk of :func:`attacked_chunks` is cast once and read by all of them."""
    outs = [np.empty(n_rows(X)) for _ in signals]
    for params, part, x in attacked_chunks(server, choice, clients, X):
        for out, signal in zip(outs, signals, strict=True):
            out[part] = signal(model, params, x, y[part])
    return outs


def _log_norms(
    model: Model, params: Params, x: NDArray[np.float64], y: NDArray[np.integer]
) -> NDArray[np.float64]:
    """``log ||g||`` of each row's log-loss gradient (see :func:`log_gradient_norms`)."""
    z = model.decision_function(params, x)
    easy = (z < 0).astype(np.int8)  # the label whose residual is >= 1/2 in size
    g = model.per_sample_gradients(params, x, easy)
    residual = np.where(easy == 1, expit(-z), expit(z))
    log_grad_z = 0.5 * np.log(np.einsum("ij,ij->i", g, g)) - np.log(residual)
    margin = np.where(y == 1, z, -z)
    out: NDArray[np.float64] = log_expit(-margin) + log_grad_z
    return out


def _norms(
    model: Model, params: Params, x: NDArray[np.float64], y: NDArray[np.integer]
) -> NDArray[np.float64]:
    """``||g||`` of each row's log-loss gradient (see :func:`gradient_norms`)."""
    g = model.per_sample_gradients(params, x, y)
    out: NDArray[np.float64] = np.sqrt(np.einsum("ij,ij->i", g, g))
    return out


def log_gradient_norms(
    model: Model,
    server: FederationResult,
    choice: ModelChoice,
    X: Features,
    y: NDArray[np.integer],
    clients: NDArray[np.int64],
) -> NDArray[np.float64]:
    """``log ||g||`` of each target's log-loss gradient, without rounding it to ``log 0``.

    For a binary model with logit ``z``, every parameter's loss gradient is the residual times
    that parameter's gradient of ``z``: ``g = (sigmoid(z) - y) grad z``. So ``log ||g|| =
    log sigmoid(-m) + log ||grad z||`` with the signed margin ``m = z`` for ``y = 1`` and
    ``-z`` for ``y = 0``; ``log sigmoid`` is computed directly (``log_expit``), and ``grad z``
    is read from the gradient at the label whose residual is at least 1/2 in size (so dividing
    by it loses nothing). Float64 (n,); finite even where ``||g||`` rounds to 0.
    """
    return _per_target((_log_norms,), model, server, choice, X, y, clients)[0]


def gradient_norms(
    model: Model,
    server: FederationResult,
    choice: ModelChoice,
    X: Features,
    y: NDArray[np.integer],
    clients: NDArray[np.int64],
) -> NDArray[np.float64]:
    """Each target's per-sample log-loss gradient norm on its attacked model, float64 (n,)."""
    return _per_target((_norms,), model, server, choice, X, y, clients)[0]


def norms_and_log_norms(
    model: Model,
    server: FederationResult,
    choice: ModelChoice,
    X: Features,
    y: NDArray[np.integer],
    clients: NDArray[np.int64],
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """:func:`gradient_norms` and :func:`log_gradient_norms` from one cast of each chunk.

    Returns
    -------
    (ndarray of float64, ndarray of float64), each shape (n,)
        ``||g||`` and ``log ||g||``, bit for bit those of the two functions.
    """
    norms, log_norms = _per_target((_norms, _log_norms), model, server, choice, X, y, clients)
    return norms, log_norms


def logit_gradients(model: Model, params: Params, X: NDArray[np.float64]) -> NDArray[np.float64]:
    """Each row's gradient of the logit ``z`` with respect to every parameter, float64 (n, d).

    The model gives only loss gradients, ``g = (sigmoid(z) - y) grad z``; at the true label the
    residual may round to 0 (a saturated model) and take ``grad z`` with it. So the gradient is
    read at the label whose residual is at least 1/2 in size and divided by that residual,
    which loses nothing. Columns follow :func:`fedgen.models.base.flatten`'s order.
    """
    z = model.decision_function(params, X)
    easy = (z < 0).astype(np.int8)  # the label whose residual is >= 1/2 in size
    g = model.per_sample_gradients(params, X, easy)
    residual = np.where(easy == 1, -expit(-z), expit(z))  # sigmoid(z) - easy, signed
    return np.asarray(g / residual[:, None], np.float64)


def per_sample_gradients(
    model: Model, params: Params, X: Features, y: NDArray[np.integer]
) -> NDArray[np.float64]:
    """Each row's log-loss gradient, float64 (n, d), with X cast to float64 chunk by chunk.

    The result itself is (n, d): for attacks whose statistic is the gradient matrix.
    """
    n = n_rows(X)
    if n == 0:
        return model.per_sample_gradients(params, take(X, slice(0, 0)), y[:0])
    out: NDArray[np.float64] | None = None
    for part in row_chunks(np.arange(n), X.shape[1]):
        g = model.per_sample_gradients(params, take(X, part), y[part])
        if out is None:
            out = np.empty((n, g.shape[1]))
        out[part] = g
    assert out is not None
    return out


def update_alignments(
    model: Model,
    params: Params,
    X: Features,
    y: NDArray[np.integer],
    updates: NDArray[np.float64],
    chunk_values: int = CHUNK_ROWS * 1024,
) -> NDArray[np.float64]:
    """Cosine of each row's negative log-loss gradient with each update, float64 (n, K).

    ``-g = (y - sigmoid(z)) grad z`` points along ``grad z`` for ``y = 1`` and against it for
    ``y = 0``, so ``cos(-g, u) = (2 y - 1) cos(grad z, u)`` exactly, and is computed so: finite
    and exact where ``g`` itself rounds to 0. A zero update has cosine 0 with every row. Equal
    updates give bit-equal columns (each distinct update is computed once).

    Parameters
    ----------
    model : Model
    params : Params
        The model the gradients are taken at (a round's starting global model).
    X : GenotypeRows or ndarray of float, shape (n, p)
    y : ndarray of int, shape (n,), values 0/1
    updates : ndarray of float64, shape (K, d)
        Parameter changes in :func:`fedgen.models.base.flatten`'s order.
    chunk_values : int
        At most this many gradient values in memory at once (rows are processed in chunks of
        at most ``CHUNK_ROWS``).
    """
    distinct, inverse = np.unique(updates, axis=0, return_inverse=True)
    norms = np.linalg.norm(distinct, axis=1)
    unit = np.divide(
        distinct, norms[:, None], out=np.zeros_like(distinct), where=norms[:, None] > 0
    )
    sign = np.where(np.asarray(y) == 1, 1.0, -1.0)
    out = np.empty((n_rows(X), distinct.shape[0]))
    rows = max(1, min(CHUNK_ROWS, chunk_values // max(1, distinct.shape[1])))
    for start in range(0, n_rows(X), rows):
        part = slice(start, start + rows)
        grad_z = logit_gradients(model, params, take(X, part))
        length = np.linalg.norm(grad_z, axis=1)
        cos = np.divide(
            grad_z @ unit.T,
            length[:, None],
            out=np.zeros((grad_z.shape[0], unit.shape[0])),
            where=length[:, None] > 0,
        )
        out[part] = sign[part, None] * cos
    return out[:, np.reshape(inverse, -1)]
