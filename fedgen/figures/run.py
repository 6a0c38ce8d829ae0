"""The figures of one job, as drawing tasks, from its cohort, federation and assessments."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from fedgen.attacks import Arena, Attack, GradientNormMIA
from fedgen.core.records import Cohort
from fedgen.core.seeding import child_rng
from fedgen.evaluation.assess import Assessment
from fedgen.figures.base import PCA_MAX_CELLS
from fedgen.figures.pool import FigureTask as Task

POOLED = ("fed/train_loss", "fed/test_loss", "fed/train_accuracy", "fed/test_accuracy")


def run_figures(
    arena: Arena,
    attacks: Sequence[Attack[Any]],
    assessments: Sequence[Assessment],
    subtitle: str,
    cohort_too: bool = True,
) -> list[Task]:
    """Every per-run figure: leakage (histogram, ROC, threshold curves, per-client AUC,
    and over rounds for attacks on every round), the cohort (PCA, top SNP correlations) and
    training (per-round curves).

    Leakage figures follow the attacks that ran, with their own options and thresholds
    (``assessments[i]`` is ``attacks[i]``'s): the gradient-norm histogram is G-MIA's scores as
    that attack computed them, drawn only if it ran. ``subtitle`` names the experiment;
    figures that show a threshold add it. Figures that do not depend on a threshold are then
    identical across a threshold sweep, and the figure pool draws them once. The cohort
    figures depend on the cohort only, so their subtitle names only its size (and the causal
    SNPs a simulated cohort knows, which the correlation bars mark), and they are drawn once
    for all federation settings too. ``cohort_too=False`` leaves them out (a job submits them
    early, from :func:`cohort_figures`).
    """
    # Attacks that score no targets (label_counts estimates per client) have no ROC or scores.
    scored = [(attack, a) for attack, a in zip(attacks, assessments, strict=True) if a.truth.size]
    attacks = [attack for attack, _ in scored]
    assessments = [a for _, a in scored]
    thresholds = ", ".join(f"{a.name} t={a.threshold:g}" for a in assessments)
    at_threshold = f"{subtitle}, {thresholds}" if thresholds else subtitle
    cohort = arena.cohort
    figures = [
        Task(
            "gradient_norm_histogram",
            (a.result.scores, a.truth, a.threshold, f"{subtitle}, t={a.threshold:g}"),
        )
        for attack, a in zip(attacks, assessments, strict=True)
        if isinstance(attack, GradientNormMIA)
    ][:1]
    if cohort_too:
        figures += cohort_figures(arena.cohort, arena.seed)
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
                {"prevalence": float(np.mean(cohort.labels))},
            )
        )
    if not assessments:
        return figures
    points = {}
    for a in assessments:
        called = a.result.predict(a.threshold)
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
                a.threshold,
                f"{subtitle}, t={a.threshold:g}",
            ),
        )
        for a in assessments
    ]
    per_client = {
        a.name: {
            int(key.split("/")[0].removeprefix("client_")): value
            for key, value in a.metrics.items()
            if key.startswith("client_") and key.endswith("/auc")
        }
        for a in assessments
    }
    figures.append(Task("client_auc_bars", (per_client, subtitle)))
    per_round = {a.name: a.rounds for a in assessments if a.rounds}
    if per_round:
        figures.append(Task("leakage_over_rounds", (per_round, subtitle)))
    return figures


def cohort_figures(cohort: Cohort, seed: int) -> list[Task]:
    """The cohort's figures (PCA, top SNP correlations): they depend on the cohort only, so a
    job submits them before training, to be drawn while it trains and attacks."""
    # The cohort figures see at most PCA_MAX_CELLS genotype cells (a random subset of rows of
    # a biobank-sized cohort): each task is pickled to the drawing process.
    genotypes, labels = cohort.genotypes, cohort.labels
    causal = cohort.metadata.get("causal")
    about_cohort = f"{cohort.n_individuals:,} individuals x {cohort.n_snps:,} SNPs"
    if causal is not None:
        about_cohort += f", {int(np.count_nonzero(causal))} causal"
    correlated_on = about_cohort
    if genotypes.size > PCA_MAX_CELLS:
        keep = PCA_MAX_CELLS // max(1, cohort.n_snps)
        rows = np.sort(child_rng(seed, "figures/rows").choice(cohort.n_individuals, keep, False))
        genotypes, labels = genotypes[rows], labels[rows]
        correlated_on = f"{about_cohort}; r on {keep:,} random individuals"
    return [
        Task(
            "snp_pca",
            (genotypes, labels, about_cohort, child_rng(seed, "figures/pca")),
            # A simulated cohort (it knows its causal SNPs) gets dots by label; a real one
            # (a file) only a density: its individuals' points stay out of shared figures.
            {"density": "causal" not in cohort.metadata},
        ),
        Task(
            "top_snp_correlations",
            (genotypes, labels, list(cohort.snp_names), correlated_on),
            {} if causal is None else {"causal": causal},
        ),
    ]
