"""Synthetic SNP cohorts: Hardy-Weinberg genotypes and a liability-threshold phenotype.

The model, step by step (``n`` individuals, ``p`` SNPs):

1. Minor-allele frequencies ``f_j ~ U(maf_low, maf_high)``.
2. Optional ancestry: ``n_ancestry_groups`` groups of equal expected size; with the
   Balding-Nichols model each group's frequency is ``f_kj ~ Beta(f_j (1-F)/F, (1-f_j)(1-F)/F)``
   for ``F = fst``. The group of each individual is returned as metadata, never as a feature.
3. Genotypes: without LD, each cell is the minor-allele count of a Hardy-Weinberg draw,
   ``P(0) = (1-f)^2, P(1) = 2f(1-f), P(2) = f^2``, made from one uniform 16-bit integer per cell
   compared against the two cumulative thresholds (probabilities exact to 2^-16). This costs
   one random 16-bit word per cell: far faster than a per-cell ``rng.binomial``.
   With ``ld_block_size > 1`` and ``ld_rho > 0``, consecutive SNPs form blocks: each of an
   individual's two haplotypes carries a block-wide Gaussian factor, and allele ``= 1`` where
   ``sqrt(rho) s + sqrt(1-rho) e < Phi^-1(f_j)`` (a Gaussian copula): the marginal frequency stays
   ``f_j`` and SNPs in a block are correlated. The block of each SNP is returned as metadata.
4. Phenotype: ``n_causal`` SNPs drawn at random get effects ``beta ~ N(0, 1)``; the genetic
   liability ``G_std @ beta`` (standardised genotypes) is scaled to variance ``heritability``, a
   ``N(0, 1 - heritability)`` environment term is added, and the ``prevalence`` share of
   individuals with the highest liability are cases (label 1).

With the defaults (10 causal SNPs, heritability 0.1) the largest single-SNP |Pearson r| with
the label is about 0.05-0.15, as in the reference study.

Reference individuals (``n_reference``, by default as many as the cohort in
``conf/dataset/synthetic_snp.yaml``): drawn after the cohort, from the same population (the
same allele frequencies, ancestry groups, LD and phenotype model: the cohort's causal effects,
its standardisation and its liability cutoff, so their prevalence matches in expectation), and
kept outside every client. They are what attackers calibrate on (``lrt``, ``lira``); drawing
them after the cohort leaves the cohort itself unchanged whatever their number.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray
from scipy.special import ndtri

from fedgen.core.errors import ConfigError
from fedgen.core.records import Cohort
from fedgen.data.phenotype import LiabilityPhenotype, cohort_checks

_LEVELS = 65536.0
_CHUNK_CELLS = 1 << 22


@dataclass(frozen=True)
class SyntheticCohort:
    """A synthetic SNP cohort source; every field is a ``dataset.*`` config key."""

    n_individuals: int = 20_000
    n_snps: int = 100
    n_causal: int = 10
    heritability: float = 0.1
    prevalence: float = 0.5
    maf_low: float = 0.05
    maf_high: float = 0.5
    n_ancestry_groups: int = 1
    fst: float = 0.0
    ld_block_size: int = 1
    ld_rho: float = 0.0
    n_reference: int = 0

    def __post_init__(self) -> None:
        for name in ("n_individuals", "n_snps", "n_causal", "n_ancestry_groups", "ld_block_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int):
                raise ConfigError(f"dataset.{name}={value!r} must be an integer")
        for name in ("heritability", "prevalence", "maf_low", "maf_high", "fst", "ld_rho"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise ConfigError(f"dataset.{name}={value!r} must be a number")
        if isinstance(self.n_reference, bool) or not isinstance(self.n_reference, int):
            raise ConfigError(f"dataset.n_reference={self.n_reference!r} must be an integer")
        checks = [
            *cohort_checks(
                self.n_individuals, self.n_snps, self.n_causal, self.heritability, self.prevalence
            ),
            (
                0.0 < self.maf_low <= self.maf_high <= 0.5,
                "dataset.maf_low and dataset.maf_high must satisfy 0 < maf_low <= maf_high <= 0.5",
            ),
            (self.n_ancestry_groups >= 1, "dataset.n_ancestry_groups must be at least 1"),
            (0.0 <= self.fst < 1.0, "dataset.fst must be in [0, 1)"),
            (self.ld_block_size >= 1, "dataset.ld_block_size must be at least 1"),
            (0.0 <= self.ld_rho < 1.0, "dataset.ld_rho must be in [0, 1)"),
            (self.n_reference >= 0, "dataset.n_reference must be a non-negative integer"),
        ]
        for ok, message in checks:
            if not ok:
                raise ConfigError(message)

    def load(self, rng: np.random.Generator) -> Cohort:
        """Generate the cohort from ``rng``."""
        n, p = self.n_individuals, self.n_snps
        maf = rng.uniform(self.maf_low, self.maf_high, size=p)
        groups = rng.integers(0, self.n_ancestry_groups, size=n).astype(np.int8)
        group_maf = _balding_nichols(rng, maf, self.n_ancestry_groups, self.fst)
        blocks = np.arange(p, dtype=np.int32) // self.ld_block_size
        genotypes = self._genotypes(rng, maf, group_maf, groups, blocks)
        phenotype = LiabilityPhenotype.draw(
            rng,
            genotypes,
            n_causal=self.n_causal,
            heritability=self.heritability,
            prevalence=self.prevalence,
        )
        metadata: dict[str, NDArray[np.generic]] = {
            "maf": maf,
            "causal": phenotype.causal_mask(p),
            "effect": phenotype.effects(p),
            "ld_block": blocks,
            "ancestry_group": groups,
        }
        names = tuple(f"snp_{j}" for j in range(p))
        reference = None
        if self.n_reference:
            m = self.n_reference
            ref_groups = rng.integers(0, self.n_ancestry_groups, size=m).astype(np.int8)
            ref_genotypes = self._genotypes(rng, maf, group_maf, ref_groups, blocks)
            reference = Cohort(
                genotypes=ref_genotypes,
                labels=phenotype.labels_of(rng, ref_genotypes, self.heritability),
                snp_names=names,
                metadata={"ancestry_group": ref_groups},
            )
        return Cohort(
            genotypes=genotypes,
            labels=phenotype.labels,
            snp_names=names,
            metadata=metadata,
            reference=reference,
        )

    def _genotypes(
        self,
        rng: np.random.Generator,
        maf: NDArray[np.float64],
        group_maf: NDArray[np.float64],
        groups: NDArray[np.int8],
        blocks: NDArray[np.int32],
    ) -> NDArray[np.int8]:
        """Genotypes of individuals in ``groups`` (n,), int8 (n, p)."""
        n, p = groups.size, maf.size
        with_ld = self.ld_block_size > 1 and self.ld_rho > 0.0
        if self.n_ancestry_groups == 1 and not with_ld:
            return hwe_genotypes(rng, maf, n)  # the common case, without a copy
        genotypes = np.empty((n, p), dtype=np.int8)
        for k in range(self.n_ancestry_groups):
            rows = np.flatnonzero(groups == k)
            if with_ld:
                genotypes[rows] = _ld_genotypes(rng, group_maf[k], blocks, self.ld_rho, rows.size)
            else:
                genotypes[rows] = hwe_genotypes(rng, group_maf[k], rows.size)
        return genotypes


def hwe_genotypes(rng: np.random.Generator, maf: NDArray[np.float64], n: int) -> NDArray[np.int8]:
    """Draw Hardy-Weinberg genotypes.

    Parameters
    ----------
    rng : Generator
    maf : ndarray of float64, shape (p,)
        Minor-allele frequency of each SNP.
    n : int
        Number of individuals.

    Returns
    -------
    ndarray of int8, shape (n, p)
        Minor-allele counts; ``P(2) = f^2``, ``P(0) = (1-f)^2`` up to 2^-16.
    """
    p = maf.size
    # Cell value = (u >= t0) + (u >= t1) with u uniform on 0..65535, written as u > t - 1 so
    # that both sides stay uint16 (no upcast temporaries); t = 65536 (probability 0) -> 65535.
    t0 = np.clip(np.round((1.0 - maf) ** 2 * _LEVELS), 1, _LEVELS).astype(np.int64) - 1
    t1 = np.clip(np.round((1.0 - maf**2) * _LEVELS), 1, _LEVELS).astype(np.int64) - 1
    t0_u = t0.astype(np.uint16)
    t1_u = t1.astype(np.uint16)
    out = np.empty((n, p), dtype=np.int8)
    rows_per_chunk = max(1, _CHUNK_CELLS // max(p, 1))
    for start in range(0, n, rows_per_chunk):
        stop = min(n, start + rows_per_chunk)
        cells = (stop - start) * p
        # Raw 64-bit words cut into four 16-bit ones: the cheapest uniform bits numpy offers
        # (~3x faster than rng.integers). Little-endian order keeps the draw platform-independent.
        raw = rng.bit_generator.random_raw(-(-cells // 4)).astype("<u8", copy=False)
        u = raw.view("<u2")[:cells].reshape(stop - start, p)
        block = out[start:stop]
        np.greater(u, t0_u, out=block, casting="unsafe")
        block += u > t1_u
    return out


def _balding_nichols(
    rng: np.random.Generator, maf: NDArray[np.float64], n_groups: int, fst: float
) -> NDArray[np.float64]:
    """Per-group allele frequencies, shape (n_groups, p); the ancestral ones when fst == 0."""
    if n_groups == 1 or fst == 0.0:
        return np.broadcast_to(maf, (n_groups, maf.size)).copy()
    a = maf * (1.0 - fst) / fst
    b = (1.0 - maf) * (1.0 - fst) / fst
    freq = rng.beta(a, b, size=(n_groups, maf.size))
    # A group frequency of exactly 0 or 1 would make a monomorphic SNP in that group only.
    return np.clip(freq, 1e-3, 1 - 1e-3)


def _ld_genotypes(
    rng: np.random.Generator,
    maf: NDArray[np.float64],
    blocks: NDArray[np.int32],
    rho: float,
    n: int,
) -> NDArray[np.int8]:
    """Genotypes with within-block correlation (Gaussian copula per haplotype), shape (n, p)."""
    p = maf.size
    n_blocks = int(blocks[-1]) + 1
    cut = ndtri(maf)
    out = np.zeros((n, p), dtype=np.int8)
    for _ in range(2):
        shared = rng.standard_normal((n, n_blocks))[:, blocks]
        z = np.sqrt(rho) * shared + np.sqrt(1.0 - rho) * rng.standard_normal((n, p))
        out += z < cut
    return out
