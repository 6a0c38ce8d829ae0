"""The privacy-utility frontier of a sweep: utility against leakage per observer, with epsilon.

Each run of a sweep over a defense's strength is one point per observer: the phenotype model's
test accuracy (utility) against the strongest membership attack that observer can run
(leakage: AUC and TPR at 1% FPR), labelled with the accounted epsilon. Observers follow the
attacks' ``observer`` option (:mod:`fedgen.attacks.observers`): the honest-but-curious
**server**, a **peer** (another participant) or the **public** (the released model); runs
stored before that option existed name the attacked ``model`` (``client``: the server,
``global``: the public).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from fedgen.attacks.observers import OBSERVERS
from fedgen.figures.base import Plot, new_figure
from fedgen.reporting.report import RunRecord, swept_params

LEAKAGE = ("auc", "tpr_at_fpr_0.01", "epsilon_lower_bound")
OBSERVER_OF_MODEL = {"client": "server", "global": "public"}  # runs from before ``observer``
UTILITY = ("fed/test_accuracy", "fed/test_loss")


def membership_attacks(record: RunRecord) -> dict[str, str]:
    """The run's membership attacks and the observer of each.

    An attack with an ``observer`` param is a membership attack if it has an empirical epsilon
    bound (``<attack>/epsilon_lower_bound``; label attacks have none); in older runs the
    membership attacks are those with a ``model`` param, and it implies the observer.
    """
    out: dict[str, str] = {}
    for key, value in sorted(record.params.items(), key=lambda kv: kv[0].endswith("model")):
        parts = key.split(".")
        if len(parts) != 3 or parts[0] != "attack":
            continue
        if parts[2] == "observer" and value in OBSERVERS:
            if f"{parts[1]}/epsilon_lower_bound" in record.metrics:
                out[parts[1]] = value
        elif parts[2] == "model" and value in OBSERVER_OF_MODEL:
            out.setdefault(parts[1], OBSERVER_OF_MODEL[value])
    return out


def is_privacy_sweep(records: Sequence[RunRecord]) -> bool:
    """A sweep worth a frontier: some run has a defense, and some run has a membership attack."""
    defended = any(k.startswith("defense.") for r in records for k in r.params)
    return defended and any(membership_attacks(r) for r in records)


def frontier_table(records: Sequence[RunRecord]) -> list[dict[str, str]]:
    """One row per run: swept params, epsilon, utility, and the best leakage per observer.

    ``best_<observer>_<metric>`` is the largest value of ``<metric>`` over that observer's
    membership attacks in the run (empty where it has none); ``epsilon`` is the accounted
    ``privacy/epsilon``, ``inf`` for a run without a DP guarantee.
    """
    swept = swept_params(records)
    rows = []
    for r in records:
        row = {"run_name": r.run_name, **{p: r.params.get(p, "") for p in swept}}
        eps = r.metrics.get("privacy/epsilon", math.inf)
        row["epsilon"] = repr(float(eps))
        for m in UTILITY:
            row[m.split("/")[1]] = repr(float(r.metrics[m])) if m in r.metrics else ""
        attacks = membership_attacks(r)
        for observer in OBSERVERS:
            mine = [a for a, o in attacks.items() if o == observer]
            for m in LEAKAGE:
                values = [r.metrics[f"{a}/{m}"] for a in mine if f"{a}/{m}" in r.metrics]
                row[f"best_{observer}_{m}"] = repr(float(max(values))) if values else ""
        rows.append(row)
    return sorted(rows, key=lambda row: (-float(row["epsilon"]), row["run_name"]))


def frontier_plot(records: Sequence[RunRecord], subtitle: str) -> Plot:
    """Test accuracy against the best attack's AUC and TPR at 1% FPR, per observer.

    ``data[observer]`` holds arrays ``auc``, ``tpr``, ``accuracy`` and ``epsilon`` (one entry
    per run that has that observer's attacks), in the table's order.
    """
    table = frontier_table(records)
    data: dict[str, dict[str, np.ndarray]] = {}
    for observer in OBSERVERS:
        rows = [row for row in table if row[f"best_{observer}_auc"] and row["test_accuracy"]]
        if not rows:
            continue
        data[observer] = {
            "auc": np.array([float(row[f"best_{observer}_auc"]) for row in rows]),
            "tpr": np.array(
                [float(row[f"best_{observer}_tpr_at_fpr_0.01"] or "nan") for row in rows]
            ),
            "accuracy": np.array([float(row["test_accuracy"]) for row in rows]),
            "epsilon": np.array([float(row["epsilon"]) for row in rows]),
        }
    fig = new_figure("Privacy-utility frontier", subtitle, size=(11.0, 4.4))
    axes = fig.subplots(1, 2, sharey=True)
    markers = {"server": "o", "peer": "^", "public": "s"}
    for i, (observer, s) in enumerate(data.items()):
        for ax, x in zip(axes, ("auc", "tpr"), strict=True):
            ax.plot(
                s[x],
                s["accuracy"],
                marker=markers[observer],
                ls="-",
                color=f"C{i}",
                label=f"{observer} observer",
            )
            for xv, yv, eps in zip(s[x], s["accuracy"], s["epsilon"], strict=True):
                label = "no DP" if math.isinf(eps) else f"ε={eps:.3g}"
                ax.annotate(label, (xv, yv), fontsize=6, xytext=(3, 3), textcoords="offset points")
    if not any(np.isfinite(s["tpr"]).any() for s in data.values()):
        axes[1].text(
            0.5,
            0.5,
            "TPR at 1% FPR not estimable:\nfewer than 100 non-members in every run",
            ha="center",
            va="center",
            transform=axes[1].transAxes,
        )
    axes[0].axvline(0.5, color="grey", ls=":", label="chance (AUC 0.5)")
    axes[1].axvline(0.01, color="grey", ls=":", label="chance (TPR = FPR = 1%)")
    axes[0].set(xlabel="best membership attack AUC", ylabel="test accuracy (phenotype model)")
    axes[1].set(xlabel="best membership attack TPR at 1% FPR")
    for ax in axes:
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    return Plot("privacy_utility_frontier", fig, data)
