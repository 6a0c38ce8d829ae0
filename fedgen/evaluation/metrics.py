"""Privacy-attack metrics: pure functions from attack scores and ground truth to report numbers."""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import ArrayLike, NDArray

Floats = NDArray[np.float64]
Bools = NDArray[np.bool_]
Ints = NDArray[np.int64]
Cuts = tuple[NDArray[np.intp], NDArray[np.intp]]

#: Resample-by-row cells per bootstrap chunk: arrays of 1 MiB stay in cache (fastest measured).
_CHUNK_CELLS = 1 << 17
_CI_KEYS = ("auc_ci_low", "auc_ci_high", "f1_ci_low", "f1_ci_high")


def _bools(x: ArrayLike, name: str) -> Bools:
    """``x`` as a bool array; 0/1 integers are accepted, any other value is a ValueError."""
    a = np.asarray(x)
    if a.dtype != np.bool_ and not np.isin(a, (0, 1)).all():
        raise ValueError(f"{name} must be boolean (or 0/1), got values {np.unique(a)[:5]}")
    return a.astype(np.bool_)


def _inputs(scores: ArrayLike, truth: ArrayLike, both: bool = False) -> tuple[Floats, Bools]:
    """Checked float64 ``scores`` and bool ``truth``, both (n,); ``both``: require both classes."""
    s, t = np.asarray(scores, dtype=np.float64), _bools(truth, "truth")
    if s.ndim != 1 or s.shape != t.shape or s.size == 0:
        raise ValueError(f"scores {s.shape} and truth {t.shape} must be equal non-empty 1-D")
    if np.isnan(s).any():
        raise ValueError("scores contain NaN")
    n_pos = int(np.count_nonzero(t))
    if both and n_pos in (0, t.size):
        raise ValueError(f"truth needs both classes, has {n_pos} of {t.size} positive")
    return s, t


def roc(scores: ArrayLike, truth: ArrayLike) -> tuple[Floats, Floats]:
    """ROC points of "positive if score >= t" for each distinct score t, strictest first.

    Parameters
    ----------
    scores : array of float, shape (n,)
        Higher means more likely a member.
    truth : array of bool, shape (n,)
        True for members; must hold both classes (else ValueError).

    Returns
    -------
    fpr, tpr : ndarray of float64, shape (g + 1,)
        For ``g`` distinct scores; non-decreasing, from (0, 0) to (1, 1).
    """
    s, t = _inputs(scores, truth, both=True)
    _, group = np.unique(-s, return_inverse=True)  # group 0 = highest score
    tp = np.cumsum(np.bincount(group, weights=t))
    fp = np.cumsum(np.bincount(group, weights=~t))
    zero = np.zeros(1)
    return np.concatenate([zero, fp / fp[-1]]), np.concatenate([zero, tp / tp[-1]])


def auc(scores: ArrayLike, truth: ArrayLike) -> float:
    """ROC AUC: chance a member outscores a non-member, ties counting 1/2 (as `roc`)."""
    s, t = _inputs(scores, truth, both=True)
    _, group = np.unique(s, return_inverse=True)  # ascending scores
    pos, neg = np.bincount(group, weights=t), np.bincount(group, weights=~t)
    below = np.cumsum(neg) - neg  # non-members scoring below each group
    return float(pos @ (below + neg / 2) / (pos.sum() * neg.sum()))  # Mann-Whitney U / (P N)


def advantage(scores: ArrayLike, truth: ArrayLike) -> float:
    """Membership advantage max_t TPR - FPR (Yeom et al. 2018) over the `roc` points; >= 0."""
    return _advantage(*roc(scores, truth))


def _advantage(fpr: Floats, tpr: Floats) -> float:
    """max TPR - FPR over ROC points ``fpr``, ``tpr`` (each (k,))."""
    return float(np.max(tpr - fpr))


def min_negatives(max_fpr: float) -> int:
    """Fewest non-members for which one false positive is an FPR <= ``max_fpr``: ceil(1/max_fpr)."""
    if not 0.0 < max_fpr <= 1.0:
        raise ValueError(f"max_fpr must be in (0, 1], got {max_fpr}")
    return math.ceil(round(1.0 / max_fpr, 9))  # round off float error before ceil


def tpr_at_fpr(scores: ArrayLike, truth: ArrayLike, max_fpr: float) -> float | None:
    """Highest TPR among `roc` points with FPR <= ``max_fpr``; shapes as in `roc`.

    None when there are fewer than ``min_negatives(max_fpr)`` non-members: no non-zero FPR that
    small can be observed, so the number would say nothing about that FPR.
    """
    s, t = _inputs(scores, truth, both=True)
    return _tpr_at(*roc(s, t), int(np.count_nonzero(~t)), max_fpr)


def _tpr_at(fpr: Floats, tpr: Floats, n_neg: int, max_fpr: float) -> float | None:
    """:func:`tpr_at_fpr` on ROC points ``fpr``, ``tpr`` (each (k,)) of ``n_neg`` non-members."""
    if n_neg < min_negatives(max_fpr):
        return None
    return float(np.max(tpr[fpr <= max_fpr]))


def threshold_metrics(predicted: ArrayLike, truth: ArrayLike) -> dict[str, float]:
    """Precision, recall, F1, accuracy, balanced accuracy of bool decisions; both shape (n,).

    Undefined ratios follow scikit-learn's ``zero_division=0``: precision is 0.0 when nothing is
    predicted positive, recall 0.0 when there are no positives, F1 0.0 when precision + recall
    is 0. Balanced accuracy (TPR + TNR) / 2 averages only the rates of classes in ``truth``.
    """
    p, t = _bools(predicted, "predicted"), _bools(truth, "truth")
    if p.ndim != 1 or p.shape != t.shape or p.size == 0:
        raise ValueError(f"predicted {p.shape} and truth {t.shape} must be equal non-empty 1-D")
    tp, fp = int(np.sum(p & t)), int(np.sum(p & ~t))
    fn, tn = int(np.sum(~p & t)), int(np.sum(~p & ~t))
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    rates = [tp / (tp + fn)] if tp + fn else []
    rates += [tn / (tn + fp)] if tn + fp else []
    return {
        "precision": precision,
        "recall": recall,
        "f1": 2 * precision * recall / (precision + recall) if precision + recall else 0.0,
        "accuracy": (tp + tn) / p.size,
        "balanced_accuracy": float(np.mean(rates)),
    }


def trivial_metrics(truth: ArrayLike) -> dict[str, float]:
    """The "everyone is a member" attack on the pool ``truth`` (bool, shape (n,)).

    With member share s: precision s, recall 1 (0.0 if there is no member, as in
    `threshold_metrics`), F1 2s / (1 + s).
    """
    t = _bools(truth, "truth")
    if t.ndim != 1 or t.size == 0:
        raise ValueError(f"truth must be non-empty 1-D, got shape {t.shape}")
    s = float(np.mean(t))
    return {
        "member_share": s,
        "trivial_precision": s,
        "trivial_recall": 1.0 if s > 0 else 0.0,
        "trivial_f1": 2 * s / (1 + s),
    }


def _cuts(scores: Floats, n_neg: int) -> Cuts:
    """Per member: non-members scoring below it, and at most its score; shapes (n - n_neg,).

    Rows must be sorted by (truth, score): the ``n_neg`` non-members first, each class ascending.
    """
    neg, pos = scores[:n_neg], scores[n_neg:]
    return np.searchsorted(neg, pos, "left"), np.searchsorted(neg, pos, "right")


def _weighted_auc_f1(predicted: Bools, n_neg: int, cuts: Cuts, counts: Ints) -> tuple[Floats, ...]:
    """AUC, F1 and a both-classes flag (as 0/1) of k weighted copies of the pool, each (k,).

    Rows are ordered as for `_cuts`; ``counts`` (k, n) holds each row's multiplicity per copy.
    AUC = Σ_members w (N_below + N_tied / 2) / (P N); it is NaN where a class is missing.
    """
    lo, hi = cuts
    w_neg, w_pos = counts[:, :n_neg], counts[:, n_neg:]
    below = np.zeros((counts.shape[0], n_neg + 1), dtype=np.int64)  # weighted non-members < cut
    np.cumsum(w_neg, axis=1, out=below[:, 1:])
    at_lo = np.take(below, lo, axis=1)  # np.take: much faster than below[:, lo]
    twice = 2 * at_lo if np.array_equal(lo, hi) else at_lo + np.take(below, hi, axis=1)
    n_pos_k, n_neg_k = w_pos.sum(axis=1), below[:, -1]
    with np.errstate(divide="ignore", invalid="ignore"):
        aucs = np.einsum("kn,kn->k", w_pos, twice) / (2.0 * n_pos_k * n_neg_k)
    tp = w_pos @ predicted[n_neg:].astype(np.int64)
    denom = (tp + n_pos_k + w_neg @ predicted[:n_neg].astype(np.int64)).astype(np.float64)
    f1 = np.divide(2.0 * tp, denom, out=np.zeros_like(denom), where=denom > 0)  # 2TP/(2TP+FP+FN)
    return aucs.astype(np.float64), f1, ((n_pos_k > 0) & (n_neg_k > 0)).astype(np.float64)


def bootstrap_intervals(
    scores: ArrayLike,
    predicted: ArrayLike,
    truth: ArrayLike,
    rng: np.random.Generator,
    n_resamples: int,
    level: float = 0.95,
) -> dict[str, float]:
    """Percentile bootstrap intervals of AUC and F1, resampling the pool's rows with replacement.

    Parameters
    ----------
    scores : array of float, shape (n,)
    predicted, truth : array of bool, shape (n,)
        ``truth`` must hold both classes (else ValueError).
    rng : numpy.random.Generator
        The only randomness: the same state gives the same intervals.
    n_resamples : int
        Number of resamples; 0 returns ``{}``. Resamples lacking a class are dropped.
    level : float
        Coverage of the central interval, in (0, 1).

    Returns
    -------
    dict of str to float
        ``auc_ci_low, auc_ci_high, f1_ci_low, f1_ci_high``; ``{}`` if no resample is kept.
    """
    s, t = _inputs(scores, truth, both=True)
    p = _bools(predicted, "predicted")
    if p.shape != s.shape or n_resamples < 0 or not 0.0 < level < 1.0:
        raise ValueError(f"need predicted of shape {s.shape}, n_resamples >= 0, 0 < level < 1")
    order = np.lexsort((s, t))  # the one sort: non-members, then members, each by score
    n, n_neg, p = s.size, int(np.count_nonzero(~t)), p[order]
    cuts, chunk = _cuts(s[order], n_neg), max(1, _CHUNK_CELLS // n)
    stats = [np.empty((3, 0))]
    for start in range(0, n_resamples, chunk):  # loops over memory-bounded chunks only
        k = min(chunk, n_resamples - start)
        idx = rng.integers(0, n, size=(k, n))
        idx += n * np.arange(k)[:, None]  # row r counts into bins r n .. r n + n - 1
        counts = np.bincount(idx.ravel(), minlength=k * n).reshape(k, n)
        stats.append(np.stack(_weighted_auc_f1(p, n_neg, cuts, counts)))
    aucs, f1s, both = np.concatenate(stats, axis=1)
    if not both.any():
        return {}
    q = [(1 - level) / 2, (1 + level) / 2]
    bounds = np.concatenate([np.quantile(aucs[both > 0], q), np.quantile(f1s[both > 0], q)])
    return dict(zip(_CI_KEYS, map(float, bounds), strict=True))


def attack_metrics(
    scores: ArrayLike,
    truth: ArrayLike,
    predicted: ArrayLike,
    *,
    rng: np.random.Generator,
    n_bootstrap: int,
) -> tuple[dict[str, float], dict[str, str]]:
    """All report numbers of one attack (inputs as in `bootstrap_intervals`), and omissions.

    Returns the metrics and, for each metric left out, a one-line reason; a one-class pool
    omits AUC, advantage, TPR at low FPR and the intervals rather than raising.
    """
    s, t = _inputs(scores, truth)
    out = threshold_metrics(predicted, t) | trivial_metrics(t)
    n_pos, n_neg = int(np.count_nonzero(t)), int(np.count_nonzero(~t))
    if n_pos == 0 or n_neg == 0:
        why = f"pool has one class only ({n_pos} members, {n_neg} non-members)"
        names = ("auc", "advantage", "tpr_at_fpr_0.01", "tpr_at_fpr_0.001", *_CI_KEYS)
        return out, dict.fromkeys(names, why)
    fpr, tpr = roc(s, t)  # once, for the advantage and each TPR at low FPR
    out |= {"auc": auc(s, t), "advantage": _advantage(fpr, tpr)}
    omitted: dict[str, str] = {}
    for max_fpr in (0.01, 0.001):
        value = _tpr_at(fpr, tpr, n_neg, max_fpr)
        if value is None:
            need = min_negatives(max_fpr)
            omitted[f"tpr_at_fpr_{max_fpr}"] = f"needs >= {need} non-members, pool has {n_neg}"
        else:
            out[f"tpr_at_fpr_{max_fpr}"] = value
    out |= bootstrap_intervals(s, predicted, t, rng, n_bootstrap)
    why = "no resamples (n_bootstrap=0)" if not n_bootstrap else "no resample held both classes"
    omitted |= {key: why for key in _CI_KEYS if key not in out}
    return out, omitted
