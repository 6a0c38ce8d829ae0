"""What the cohort file readers share: call counts, QC filters, imputation, reference rows.

Used by the file readers (:mod:`fedgen.data.csv`, :mod:`fedgen.data.plink`,
:mod:`fedgen.data.pgen`) so that every source filters and imputes the same way.

**Imputation rule.** A missing call is replaced by its SNP's *rounded mean genotype*: the mean
of the observed calls of that SNP (over the individuals kept), rounded to the nearest integer
with halves to even (``numpy.rint``), so that imputed values stay 0/1/2 and the cohort stays
int8. For a minor-allele count the mean is at most 1, so the imputed value is 0 or 1.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from fedgen.core.errors import DataError
from fedgen.core.records import Cohort

MISSING = np.int8(-127)
"""The int8 code of a missing call inside fedgen's readers (``bed-reader``'s own int8 code)."""


def count_calls(block: NDArray[np.int8]) -> NDArray[np.int64]:
    """Per-SNP call counts of a genotype block.

    Parameters
    ----------
    block : ndarray of int8, shape (n_individuals, n_snps)
        Calls 0/1/2, or :data:`MISSING`.

    Returns
    -------
    ndarray of int64, shape (4, n_snps)
        Rows: the number of 0, 1 and 2 calls, and of missing calls.
    """
    counts = np.empty((4, block.shape[1]), dtype=np.int64)
    for row, value in enumerate((0, 1, 2, MISSING)):
        counts[row] = np.count_nonzero(block == value, axis=0)
    return counts


def allele_frequency(counts: NDArray[np.int64]) -> NDArray[np.float64]:
    """Frequency of the counted allele over the observed calls (NaN for a SNP with none).

    ``counts`` is :func:`count_calls`' (4, n_snps) array; the result has shape (n_snps,).
    """
    observed = counts[0] + counts[1] + counts[2]
    alleles = counts[1] + 2 * counts[2]
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.asarray(alleles / (2.0 * observed), dtype=np.float64)


def call_variance(counts: NDArray[np.int64]) -> NDArray[np.float64]:
    """Variance of the observed calls of each SNP (population variance; NaN with no calls).

    ``counts`` is :func:`count_calls`' (4, n_snps) array; the result has shape (n_snps,).
    """
    observed = counts[0] + counts[1] + counts[2]
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = (counts[1] + 2 * counts[2]) / observed
        square = (counts[1] + 4 * counts[2]) / observed
    return np.asarray(np.maximum(square - mean**2, 0.0), dtype=np.float64)


def rounded_means(counts: NDArray[np.int64]) -> NDArray[np.int8]:
    """The imputed value of each SNP: its mean observed call, rounded half to even.

    ``counts`` is :func:`count_calls`' (4, n_snps) array; every SNP must have an observed call.
    Returns an int8 array of shape (n_snps,) with values 0/1/2.
    """
    observed = counts[0] + counts[1] + counts[2]
    if np.any(observed == 0):
        raise ValueError("a SNP without observed calls has no mean to impute")
    means = (counts[1] + 2 * counts[2]) / observed
    return np.asarray(np.rint(means), dtype=np.int8)


def fill_missing(block: NDArray[np.int8], values: NDArray[np.int8]) -> int:
    """Replace the missing calls of ``block`` in place by their column's value.

    Parameters
    ----------
    block : ndarray of int8, shape (n_individuals, n_snps)
    values : ndarray of int8, shape (n_snps,)
        The value that fills each column (see :func:`rounded_means`).

    Returns
    -------
    int
        How many calls were filled.
    """
    rows, cols = np.nonzero(block == MISSING)
    block[rows, cols] = values[cols]
    return int(rows.size)


def qc_snps(
    counts: NDArray[np.int64], *, geno: float | None, maf: float | None
) -> NDArray[np.bool_]:
    """Which SNPs pass PLINK's ``--geno`` and ``--maf`` filters (and have any observed call).

    ``--geno g`` removes SNPs whose share of missing calls *exceeds* g; ``--maf m`` removes
    SNPs whose minor-allele frequency (over observed calls) is *below* m. A SNP with no observed
    call at all is always removed (it has no frequency and nothing to impute from).

    Parameters
    ----------
    counts : ndarray of int64, shape (4, n_snps)
        From :func:`count_calls` over the individuals kept.

    Returns
    -------
    ndarray of bool, shape (n_snps,)
    """
    total = counts.sum(axis=0)
    observed = total - counts[3]
    keep = observed > 0
    if geno is not None:
        keep &= counts[3] <= geno * total
    if maf is not None:
        freq = allele_frequency(counts)
        with np.errstate(invalid="ignore"):
            keep &= np.minimum(freq, 1.0 - freq) >= maf
    return np.asarray(keep, dtype=np.bool_)


def check_fraction(value: object) -> None:
    """Fail unless ``dataset.reference_fraction`` is a number in [0, 1)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise DataError(f"dataset.reference_fraction={value!r} is not a number")
    if not 0.0 <= value < 1.0:
        raise DataError(f"dataset.reference_fraction={value!r} must be in [0, 1)")


def with_reference(
    genotypes: NDArray[np.int8],
    labels: NDArray[np.int8],
    names: tuple[str, ...],
    metadata: dict[str, NDArray[np.generic]],
    fraction: float,
    rng: np.random.Generator,
) -> Cohort:
    """The cohort, with ``round(fraction * n)`` rows drawn by ``rng`` set aside as reference
    individuals (outside every client); both keep the file's row order. ``fraction`` 0 draws
    nothing from ``rng``. ``metadata`` (per-SNP facts) stays with the main cohort."""
    n_reference = round(fraction * labels.size)
    if not n_reference:
        return Cohort(genotypes=genotypes, labels=labels, snp_names=names, metadata=metadata)
    order = rng.permutation(labels.size)
    ref, kept = np.sort(order[:n_reference]), np.sort(order[n_reference:])
    reference = Cohort(genotypes=genotypes[ref], labels=labels[ref], snp_names=names)
    return Cohort(
        genotypes=genotypes[kept],
        labels=labels[kept],
        snp_names=names,
        metadata=metadata,
        reference=reference,
    )
