"""Candidate genotypes that stay int8: rows of a cohort, cast to float64 one chunk at a time.

A biobank-sized pool (40,000 people x 100,000 SNPs) is 4 GB as int8 and 32 GB as float64, so
views hold the cohort's int8 matrix and the rows they ask about, never a float copy; the
signals (:mod:`fedgen.attacks.signals`) gather and cast a bounded chunk of rows at a time.
Chunks hold a multiple of :data:`ROW_QUANTUM` rows: BLAS computes a matrix-vector product in
blocks of a few rows and the last few rows of a matrix with another kernel, so chunks of such a
multiple give every row the bits the whole matrix would (verified by the attacks' metrics).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any, TypeAlias

import numpy as np
from numpy.typing import NDArray

CHUNK_ROWS = 4096
CHUNK_VALUES = 1 << 23  # float64 values per chunk (64 MiB)
ROW_QUANTUM = 64


@dataclass(frozen=True)
class GenotypeRows:
    """Rows ``rows`` of the int8 genotype matrix ``source``, without copying them.

    Attributes
    ----------
    source : ndarray of int8, shape (N, p)
        A cohort's genotypes (shared, never written).
    rows : ndarray of int, shape (n,)
        The rows this set holds, in order (repeats allowed).
    offset : ndarray of float64, shape (p,), or None
        Subtracted from every row once cast (centred genotypes), or None.
    """

    source: NDArray[np.int8]
    rows: NDArray[np.integer[Any]]
    offset: NDArray[np.float64] | None = None

    @property
    def shape(self) -> tuple[int, int]:
        """``(n, p)``, as the float matrix would have."""
        return int(self.rows.shape[0]), int(self.source.shape[1])

    def take(
        self, index: NDArray[np.intp] | slice, out: NDArray[np.float64] | None = None
    ) -> NDArray[np.float64]:
        """The rows at ``index`` (into this set) as float64, shape (k, p), less any offset.

        With ``out`` (k, p) float64 they are written there (the same values) and it is returned.
        """
        if out is None:
            x: NDArray[np.float64] = self.source[self.rows[index]].astype(np.float64)
            return x if self.offset is None else np.subtract(x, self.offset)
        out[...] = self.source[self.rows[index]]
        if self.offset is not None:
            np.subtract(out, self.offset, out=out)
        return out

    def dense(self) -> NDArray[np.float64]:
        """Every row as float64 (n, p), at once: for small sets (and tests) only."""
        return self.take(slice(None))

    def int8(self) -> NDArray[np.int8]:
        """The rows as an int8 matrix (n, p), offset ignored: ``source`` itself when they are
        all of it in order."""
        n = self.source.shape[0]
        if self.rows.shape[0] == n and np.array_equal(self.rows, np.arange(n)):
            return self.source
        out: NDArray[np.int8] = self.source[self.rows]
        return out

    def subset(self, index: NDArray[np.intp]) -> GenotypeRows:
        """The rows at ``index`` (into this set), still int8 and uncopied."""
        return GenotypeRows(self.source, self.rows[index], self.offset)

    def centred(self, offset: NDArray[np.float64]) -> GenotypeRows:
        """The same rows read less ``offset`` (p,), as ``X - offset`` would be."""
        return GenotypeRows(self.source, self.rows, np.asarray(offset, np.float64))


Features: TypeAlias = GenotypeRows | NDArray[np.floating[Any]]
"""What a signal reads: int8 genotype rows (cast per chunk) or a float matrix (n, p)."""


def n_rows(X: Features) -> int:
    """Number of rows of ``X``."""
    return int(X.shape[0])


def take(X: Features, index: NDArray[np.intp] | slice) -> NDArray[np.float64]:
    """Rows ``index`` of ``X`` as float64 (k, p): gathered and cast for genotype rows."""
    if isinstance(X, GenotypeRows):
        return X.take(index)
    return np.asarray(X[index], np.float64)


def float_chunks(X: Features, pieces: Iterable[NDArray[np.intp]]) -> Iterator[NDArray[np.float64]]:
    """Each piece of rows of ``X`` as float64 (k, p), valid until the next one is asked for.

    Genotype rows are cast into one buffer reused from piece to piece (fresh memory for every
    chunk costs more than the arithmetic on it: the kernel zeroes each new page); a float matrix
    is read as :func:`take` reads it. The values are :func:`take`'s.
    """
    buffer: NDArray[np.float64] | None = None
    for part in pieces:
        if not isinstance(X, GenotypeRows):
            yield take(X, part)
            continue
        if buffer is None or buffer.shape[0] < part.shape[0]:
            buffer = None
            buffer = np.empty((part.shape[0], X.shape[1]))
        yield X.take(part, out=buffer[: part.shape[0]])


def chunk_rows(n_features: int, limit: int = CHUNK_ROWS) -> int:
    """Rows per chunk: at most ``limit`` and :data:`CHUNK_VALUES` values, a multiple of 64.

    Below :data:`CHUNK_VALUES` / ``limit`` features (8 M / 4096 = 2,048 SNPs) this is
    ``limit``, as before chunks were bounded by size.
    """
    rows = min(limit, CHUNK_VALUES // max(1, n_features))
    return max(ROW_QUANTUM, rows - rows % ROW_QUANTUM)


def row_chunks(index: NDArray[np.intp], n_features: int) -> Iterator[NDArray[np.intp]]:
    """``index`` in consecutive pieces of at most :func:`chunk_rows` rows."""
    step = chunk_rows(n_features)
    for start in range(0, index.shape[0], step):
        yield index[start : start + step]
