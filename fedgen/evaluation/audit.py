"""Empirical lower bound on epsilon from a membership attack (a privacy audit).

If a mechanism is (epsilon, delta)-DP, every membership test's true- and false-positive rates
satisfy TPR <= e^epsilon FPR + delta and 1 - FPR <= e^epsilon (1 - TPR) + delta (Kairouz et al.
2015). An attack that achieves some (TPR, FPR) therefore proves epsilon >= max(log((TPR -
delta) / FPR), log((1 - FPR - delta) / (1 - TPR))). Following Jagielski et al. 2020 and Nasr et
al. 2021, the threshold is chosen on one half of the pool and the rates are measured on the
other half, with one-sided Clopper-Pearson bounds (TPR from below, FPR from above) so that the
bound holds with probability 1 - alpha. Members and non-members are individuals randomly
assigned to training or test rows, so the audit bounds the record-level privacy of the
training (a client-level guarantee of epsilon implies record-level epsilon for add/remove of a
record within a client, and 2 epsilon for replacing one).
"""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import NDArray
from scipy.stats import beta


def clopper_pearson(successes: int, trials: int, alpha: float) -> tuple[float, float]:
    """Two-sided exact binomial interval at level ``1 - alpha`` for ``successes / trials``."""
    if trials == 0:
        return 0.0, 1.0
    low = 0.0 if successes == 0 else float(beta.ppf(alpha / 2, successes, trials - successes + 1))
    if successes == trials:
        return low, 1.0
    high = float(beta.ppf(1 - alpha / 2, successes + 1, trials - successes))
    return low, high


def epsilon_from_rates(tpr: float, fpr: float, delta: float) -> float:
    """The smallest epsilon consistent with a test of rates (``tpr``, ``fpr``); 0 if none."""
    candidates = [0.0]
    if fpr > 0 and tpr - delta > 0:
        candidates.append(math.log((tpr - delta) / fpr))
    if tpr < 1 and 1 - fpr - delta > 0:
        candidates.append(math.log((1 - fpr - delta) / (1 - tpr)))
    return max(candidates)


def _best_threshold(scores: NDArray[np.float64], truth: NDArray[np.bool_], delta: float) -> float:
    """The threshold (call positive at score >= t) with the largest point-estimate epsilon.

    A pseudo-count on the false positives keeps a threshold with none from winning by chance.
    Ties go to the highest threshold (the first cut in descending score order).
    """
    pos, neg = int(truth.sum()), int((~truth).sum())
    order = np.argsort(-scores, kind="stable")
    s, t = scores[order], truth[order]
    cuts = np.flatnonzero(np.r_[s[1:] != s[:-1], True])  # only between distinct scores
    if cuts.size == 0:
        return 0.0
    tpr = np.cumsum(t)[cuts] / max(pos, 1)
    fpr = (np.cumsum(~t)[cuts] + 1) / (neg + 1)
    with np.errstate(divide="ignore", invalid="ignore"):
        above = np.where(tpr - delta > 0, np.log((tpr - delta) / fpr), 0.0)
        below = np.where(
            (tpr < 1) & (1 - fpr - delta > 0), np.log((1 - fpr - delta) / (1 - tpr)), 0.0
        )
    eps = np.maximum(0.0, np.maximum(above, below))
    return float(s[cuts[int(np.argmax(eps))]])


def epsilon_lower_bound(
    scores: NDArray[np.float64],
    truth: NDArray[np.bool_],
    rng: np.random.Generator,
    *,
    delta: float = 0.0,
    alpha: float = 0.05,
) -> dict[str, float]:
    """An empirical epsilon lower bound from membership scores, holding with prob. 1 - alpha.

    Parameters
    ----------
    scores : ndarray of float64, shape (n,)
        Oriented scores: higher means more likely a member.
    truth : ndarray of bool, shape (n,)
        Membership.
    rng : numpy Generator
        Splits the pool into the half that chooses the threshold and the half that measures.
    delta : float
        The delta of the guarantee being audited (0 when none is claimed).
    alpha : float
        The bound holds with probability at least ``1 - alpha`` (Clopper-Pearson, one-sided
        ``alpha / 2`` on each rate).

    Returns
    -------
    dict
        ``epsilon_lower_bound`` and the rates behind it: ``audit_tpr_low``,
        ``audit_fpr_high``, ``audit_threshold``.
    """
    n = scores.shape[0]
    order = rng.permutation(n)
    choose, measure = order[: n // 2], order[n // 2 :]
    threshold = _best_threshold(scores[choose], truth[choose], delta)
    called = scores[measure] >= threshold
    member = truth[measure]
    pos, neg = int(member.sum()), int((~member).sum())
    tp, fp = int((called & member).sum()), int((called & ~member).sum())
    # One-sided bounds at alpha/2 each: the two-sided interval at level 1 - alpha gives them.
    tpr_low = clopper_pearson(tp, pos, alpha)[0]
    fpr_high = clopper_pearson(fp, neg, alpha)[1]
    return {
        "epsilon_lower_bound": epsilon_from_rates(tpr_low, fpr_high, delta),
        "audit_tpr_low": tpr_low,
        "audit_fpr_high": fpr_high,
        "audit_threshold": threshold,
    }
