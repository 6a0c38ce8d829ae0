"""Run one attack on the arena and score it against the truth: pooled and per client."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from fedgen.attacks.base import Arena, Attack
from fedgen.attacks.membership import MembershipAttack
from fedgen.core.records import AttackResult
from fedgen.core.seeding import child_rng
from fedgen.evaluation.audit import epsilon_lower_bound
from fedgen.evaluation.metrics import attack_metrics

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
    """

    result: AttackResult
    truth: NDArray[np.bool_]
    clients: NDArray[np.int64]
    threshold: float
    metrics: dict[str, float]
    omitted: dict[str, str]

    @property
    def name(self) -> str:
        return self.result.name


def assess(attack: Attack[Any], arena: Arena, n_bootstrap: int, delta: float = 0.0) -> Assessment:
    """Observe, attack and measure at the attack's own threshold; the attack never sees truth.

    Membership attacks also get an empirical epsilon lower bound (:mod:`.audit`) for a
    guarantee with this ``delta`` (0 when no defense claims one).
    """
    threshold = attack.threshold
    observation = attack.observe(arena)
    result = attack.run(observation.view)
    truth, clients = observation.truth, observation.clients
    scores, predicted = result.oriented_scores, result.predict(threshold)
    rng = child_rng(arena.seed, f"bootstrap/{result.name}")
    metrics, omitted = attack_metrics(scores, truth, predicted, rng=rng, n_bootstrap=n_bootstrap)
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
    if isinstance(attack, MembershipAttack) and truth.any() and not truth.all():
        audit_rng = child_rng(arena.seed, f"audit/{result.name}")
        metrics.update(epsilon_lower_bound(scores, truth, audit_rng, delta=delta))
    return Assessment(result, truth, clients, threshold, metrics, omitted)


def rule_metrics(rule: str, calls: NDArray[np.int8], truth: NDArray[np.bool_]) -> dict[str, float]:
    """Accuracy of a side rule where it makes a call (0/1), and the share where it does."""
    made = calls >= 0
    coverage = float(np.mean(made)) if calls.size else 0.0
    out = {f"{rule}_coverage": coverage}
    if made.any():
        out[f"{rule}_accuracy"] = float(np.mean((calls[made] == 1) == truth[made]))
    return out
