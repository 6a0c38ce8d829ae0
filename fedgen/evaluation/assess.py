"""Run one attack on the arena and score it against the truth: pooled and per client."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray

from fedgen.attacks.base import Arena, Attack
from fedgen.core.records import AttackResult, Estimate
from fedgen.core.seeding import child_rng
from fedgen.evaluation.audit import epsilon_lower_bound
from fedgen.evaluation.metrics import advantage, attack_metrics, auc, tpr_at_fpr

# Per-client leakage: the threshold metrics and the threshold-free ones, without intervals.
CLIENT_METRICS = ("precision", "recall", "f1", "auc", "advantage", "member_share", "trivial_f1")


@dataclass(frozen=True)
class Assessment:
    """One attack's outcome.

    Attributes
    ----------
    result : AttackResult
        The attack's scores on its targets.
    truth : ndarray of bool, shape (n,)
    clients : ndarray of int64, shape (n,)
    threshold : float
    metrics : dict of str to float
        Pooled metrics (``precision``, ``auc``, ...), per-client ones as ``client_<i>/<name>``
        and side rules as ``<rule>_accuracy`` / ``<rule>_coverage``.
    omitted : dict of str to str
        Metrics that could not be estimated on this pool, with the reason.
    rounds : dict of int to dict of str to float
        For attacks with per-round statistics: round (1-based) to its ``auc``, ``advantage``
        and ``tpr_at_fpr_0.01`` (leakage over rounds; logged with ``step=round``).
    """

    result: AttackResult
    truth: NDArray[np.bool_]
    clients: NDArray[np.int64]
    threshold: float
    metrics: dict[str, float]
    omitted: dict[str, str]
    rounds: dict[int, dict[str, float]] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.result.name


def assess(attack: Attack[Any], arena: Arena, n_bootstrap: int, delta: float = 0.0) -> Assessment:
    """Observe, attack and measure at the attack's own threshold; the attack never sees truth.

    Membership attacks also get an empirical epsilon lower bound (:mod:`.audit`) for a
    guarantee with this ``delta`` (0 when no defense claims one). An attack's ``estimates``
    are scored against the observation's ``facts`` (:func:`estimate_metrics`), its per-round
    statistics round by round.
    """
    threshold = attack.threshold
    observation = attack.observe(arena)
    result = attack.run(observation.view)
    truth, clients = observation.truth, observation.clients
    metrics: dict[str, float] = {}
    omitted: dict[str, str] = {}
    for key, estimate in result.estimates.items():
        metrics.update(
            estimate_metrics(
                key,
                estimate,
                observation.facts[key],
                observation.baselines.get(key),
            )
        )
    if truth.size == 0:
        return Assessment(result, truth, clients, threshold, metrics, omitted)
    scores, predicted = result.oriented_scores, result.predict(threshold)
    rng = child_rng(arena.seed, f"bootstrap/{result.name}")
    pooled, omitted = attack_metrics(scores, truth, predicted, rng=rng, n_bootstrap=n_bootstrap)
    metrics.update(pooled)
    if truth.any() and not truth.all():
        for key, baseline in result.baselines.items():
            metrics[f"{key}_auc"] = auc(baseline, truth)
    rounds = {
        r: per_round_metrics(statistic, truth)
        for r, statistic in enumerate(result.per_round, start=1)
    }
    for r, values in rounds.items():
        for key, value in values.items():
            metrics[f"round_{r}/{key}"] = value
    for cid in np.unique(clients):
        mask = clients == cid
        sub, sub_omitted = attack_metrics(
            scores[mask], truth[mask], predicted[mask], rng=rng, n_bootstrap=0
        )
        for key in CLIENT_METRICS:
            if key in sub:
                metrics[f"client_{cid}/{key}"] = sub[key]
            elif key in sub_omitted:
                omitted[f"client_{cid}/{key}"] = sub_omitted[key]
    for rule, calls in result.rules.items():
        metrics.update(rule_metrics(rule, calls, truth))
    if getattr(attack, "kind", "") == "membership" and truth.any() and not truth.all():
        audit_rng = child_rng(arena.seed, f"audit/{result.name}")
        metrics.update(epsilon_lower_bound(scores, truth, audit_rng, delta=delta))
    return Assessment(result, truth, clients, threshold, metrics, omitted, rounds)


def per_round_metrics(statistic: NDArray[np.float64], truth: NDArray[np.bool_]) -> dict[str, float]:
    """AUC, advantage and TPR at 1% FPR of one round's statistic (n,), higher = positive."""
    out = {"auc": auc(statistic, truth), "advantage": advantage(statistic, truth)}
    tpr = tpr_at_fpr(statistic, truth, 0.01)
    if tpr is not None:
        out["tpr_at_fpr_0.01"] = tpr
    return out


def estimate_metrics(
    key: str,
    estimate: Estimate,
    fact: NDArray[np.float64],
    baseline: NDArray[np.float64] | None,
) -> dict[str, float]:
    """Score an attack's estimate against the truth, beside the trivial guess or chance.

    ``count``: ``<key>_mae`` (mean absolute error), ``<key>_max_error``, ``<key>_mae_share``
    (the MAE over the mean true value) and, with a baseline (the trivial guess, same shape),
    ``<key>_trivial_mae``. ``category``: ``<key>_accuracy`` and, with a baseline (one value),
    ``<key>_chance``.
    """
    values = np.asarray(estimate.values, np.float64)
    truth = np.asarray(fact, np.float64)
    if values.shape != truth.shape:
        raise ValueError(f"estimate {key}: shape {values.shape} but the truth has {truth.shape}")
    if estimate.kind == "category":
        out = {f"{key}_accuracy": float(np.mean(values == truth))}
        if baseline is not None:
            out[f"{key}_chance"] = float(np.ravel(baseline)[0])
        return out
    error = np.abs(values - truth)
    out = {f"{key}_mae": float(error.mean()), f"{key}_max_error": float(error.max())}
    if truth.mean() != 0:
        out[f"{key}_mae_share"] = float(error.mean() / abs(truth.mean()))
    if baseline is not None:
        out[f"{key}_trivial_mae"] = float(np.mean(np.abs(np.asarray(baseline) - truth)))
    return out


def rule_metrics(rule: str, calls: NDArray[np.int8], truth: NDArray[np.bool_]) -> dict[str, float]:
    """Accuracy of a side rule where it makes a call (0/1), and the share where it does."""
    made = calls >= 0
    coverage = float(np.mean(made)) if calls.size else 0.0
    out = {f"{rule}_coverage": coverage}
    if made.any():
        out[f"{rule}_accuracy"] = float(np.mean((calls[made] == 1) == truth[made]))
    return out
