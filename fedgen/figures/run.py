"""The figures of one job, as drawing tasks, from its cohort, federation and assessments."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from fedgen.attacks import Arena, GradientNormMIA
from fedgen.attacks.views import membership_view
from fedgen.core.seeding import child_rng
from fedgen.evaluation.assess import Assessment
from fedgen.figures.pool import FigureTask as Task

POOLED = ("fed/train_loss", "fed/test_loss", "fed/train_accuracy", "fed/test_accuracy")


def run_figures(
    arena: Arena, assessments: Sequence[Assessment], threshold: float, subtitle: str
) -> list[Task]:
    """Every per-run figure: leakage (histogram, ROC, threshold curves, radar, per-client AUC),
    the cohort (PCA, top SNP correlations) and training (per-round curves).

    ``subtitle`` names the experiment; figures that show the threshold add it. Figures that do
    not depend on the threshold are then identical across a threshold sweep, and the figure
    pool draws them once.
    """
    at_threshold = f"{subtitle}, t={threshold:g}"
    cohort, pool = arena.cohort, arena.pool
    # The histogram shows G-MIA's statistic whichever attacks ran: it is cheap to compute.
    norms = GradientNormMIA().run(membership_view(arena).view).scores
    figures = [
        Task("gradient_norm_histogram", (norms, pool.is_member, threshold, at_threshold)),
        Task(
            "snp_pca",
            (cohort.genotypes, cohort.labels, subtitle, child_rng(arena.seed, "figures/pca")),
        ),
        Task(
            "top_snp_correlations",
            (cohort.genotypes, cohort.labels, list(cohort.snp_names), subtitle),
        ),
    ]
    rounds = arena.server.rounds
    if rounds:
        figures.append(
            Task(
                "training_curves",
                (
                    np.array([r.round for r in rounds]),
                    {k: [r.metrics[k] for r in rounds] for k in POOLED},
                    subtitle,
                ),
            )
        )
    if not assessments:
        return figures
    points = {}
    for a in assessments:
        called = a.result.predict(threshold)
        points[a.name] = (float(np.mean(called[~a.truth])), float(np.mean(called[a.truth])))
    figures.append(
        Task(
            "roc_curves",
            (
                {a.name: (a.result.oriented_scores, a.truth) for a in assessments},
                points,
                at_threshold,
            ),
        )
    )
    figures += [
        Task(
            "threshold_curves",
            (
                a.name,
                a.result.scores,
                a.truth,
                a.result.higher_is_positive,
                threshold,
                at_threshold,
            ),
        )
        for a in assessments
    ]
    figures.append(Task("radar", ({a.name: a.metrics for a in assessments}, at_threshold)))
    per_client = {
        a.name: {
            int(key.split("/")[0].removeprefix("client_")): value
            for key, value in a.metrics.items()
            if key.startswith("client_") and key.endswith("/auc")
        }
        for a in assessments
    }
    figures.append(Task("client_auc_bars", (per_client, subtitle)))
    return figures
