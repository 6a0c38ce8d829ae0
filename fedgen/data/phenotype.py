"""The liability-threshold phenotype shared by the simulated cohort sources."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray


def cohort_checks(
    n_individuals: int, n_snps: int, n_causal: int, heritability: float, prevalence: float
) -> list[tuple[bool, str]]:
    """The size and phenotype settings every simulated source checks: (holds, message) pairs."""
    return [
        (n_individuals >= 2, "dataset.n_individuals must be at least 2"),
        (n_snps >= 1, "dataset.n_snps must be at least 1"),
        (
            0 <= n_causal <= n_snps,
            f"dataset.n_causal={n_causal} must be between 0 and dataset.n_snps={n_snps}",
        ),
        (0.0 <= heritability <= 1.0, "dataset.heritability must be in [0, 1]"),
        (0.0 < prevalence < 1.0, "dataset.prevalence must be in (0, 1)"),
    ]


@dataclass(frozen=True)
class LiabilityPhenotype:
    """A liability-threshold phenotype drawn for a cohort, reusable for reference individuals.

    ``n_causal`` SNPs drawn at random get effects ``beta ~ N(0, 1)``; the genetic liability
    ``G_std @ beta`` (genotypes standardised in the cohort) is scaled to variance
    ``heritability``, a ``N(0, 1 - heritability)`` environment term is added, and the
    ``prevalence`` share of individuals with the highest liability are cases (label 1).

    Attributes
    ----------
    labels : ndarray of int8, shape (n,)
        The cohort's phenotypes.
    causal : ndarray of intp, shape (k,)
        Causal SNP indices, sorted.
    beta : ndarray of float64, shape (k,)
        Their effects on standardised genotypes.
    mean, std : ndarray of float64, shape (k,)
        The cohort's standardisation of the causal SNPs.
    scale : float
        The genetic score's SD in the cohort (0: no genetic term).
    cutoff : float
        The liability at and above which an individual is a case.
    """

    labels: NDArray[np.int8]
    causal: NDArray[np.intp]
    beta: NDArray[np.float64]
    mean: NDArray[np.float64]
    std: NDArray[np.float64]
    scale: float
    cutoff: float

    @classmethod
    def draw(
        cls,
        rng: np.random.Generator,
        genotypes: NDArray[np.int8],
        *,
        n_causal: int,
        heritability: float,
        prevalence: float,
    ) -> LiabilityPhenotype:
        """Draw causal SNPs, effects and environment for ``genotypes`` (n, p) int8."""
        n, p = genotypes.shape
        h2 = heritability
        causal_idx = np.sort(rng.choice(p, size=n_causal, replace=False))
        beta = rng.standard_normal(n_causal)
        liability = np.sqrt(1.0 - h2) * rng.standard_normal(n)
        mean = np.zeros(n_causal)
        std = np.ones(n_causal)
        scale = 0.0
        if n_causal and h2 > 0.0:
            g = genotypes[:, causal_idx].astype(np.float64)
            mean = g.mean(axis=0)
            sd = g.std(axis=0)
            std = np.where(sd > 0, sd, 1.0)
            genetic = ((g - mean) / std) @ beta
            scale = float(genetic.std())
            if scale > 0:
                liability += genetic * (np.sqrt(h2) / scale)
        n_cases = round(prevalence * n)
        order = np.argsort(-liability, kind="stable")
        labels = np.zeros(n, dtype=np.int8)
        labels[order[:n_cases]] = 1
        cutoff = float(liability[order[n_cases - 1]]) if n_cases else np.inf
        return cls(labels, causal_idx, beta, mean, std, scale, cutoff)

    def causal_mask(self, p: int) -> NDArray[np.bool_]:
        """Whether each of ``p`` SNPs is causal, bool (p,)."""
        mask = np.zeros(p, dtype=bool)
        mask[self.causal] = True
        return mask

    def effects(self, p: int) -> NDArray[np.float64]:
        """Each of ``p`` SNPs' effect (0 if not causal), float64 (p,)."""
        out = np.zeros(p)
        out[self.causal] = self.beta
        return out

    def labels_of(
        self, rng: np.random.Generator, genotypes: NDArray[np.int8], h2: float
    ) -> NDArray[np.int8]:
        """Phenotypes of new individuals of the same population, int8 (m,)."""
        liability = np.sqrt(1.0 - h2) * rng.standard_normal(genotypes.shape[0])
        if self.scale > 0:
            g = genotypes[:, self.causal].astype(np.float64)
            liability += ((g - self.mean) / self.std) @ self.beta * (np.sqrt(h2) / self.scale)
        return np.asarray(liability >= self.cutoff, dtype=np.int8)
