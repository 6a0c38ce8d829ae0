"""What one client holds: its train and test rows, and where their float64 copies come from."""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from numpy.typing import NDArray

from fedgen.core.records import Cohort, Split

FLOAT_CACHE_BYTES = 1 << 28
"""Every client's float64 rows are kept between rounds when together they take at most this
(256 MiB: 20 clients x 1,000 rows x 1,600 SNPs); above it they are cast anew on each use."""
_CAST_ROWS = 64  # rows gathered from the int8 matrix at a time while casting (a few MB)


@dataclass(frozen=True)
class ClientData:
    """One client's rows of the cohort, by index: nothing is copied until the client trains.

    Every client shares the cohort's int8 matrix (one object, so one copy when the client app
    is shipped to a Ray worker) and keeps only its row indices. The float64 feature matrices
    ``X_train`` (n_train, p) and ``X_test`` (n_test, p), unstandardised as in the study, are
    made on use (:class:`ClientFloats` decides whether they are kept or cast into a reused
    buffer: a 2,000 x 100,000 client is 1.6 GB in float64; twenty such clients held at once
    would not fit a 24 GB machine).

    Attributes
    ----------
    genotypes : ndarray of int8, shape (N, p)
        The whole cohort's genotypes (shared by every client, never written).
    train, test : ndarray of int64, shape (n_train,) and (n_test,)
        This client's rows of ``genotypes``.
    y_train, y_test : ndarray of int8
        Their phenotypes.
    """

    genotypes: NDArray[np.int8]
    train: NDArray[np.int64]
    test: NDArray[np.int64]
    y_train: NDArray[np.int8]
    y_test: NDArray[np.int8]

    @property
    def genotypes_train(self) -> NDArray[np.int8]:
        """The train rows' genotypes, int8 (n_train, p) (a copy)."""
        return self.genotypes[self.train]

    @property
    def genotypes_test(self) -> NDArray[np.int8]:
        """The test rows' genotypes, int8 (n_test, p) (a copy)."""
        return self.genotypes[self.test]

    @property
    def X_train(self) -> NDArray[np.float64]:
        """The train rows as float64 (n_train, p), a new array on each use."""
        return cast_rows(self.genotypes, self.train)

    @property
    def X_test(self) -> NDArray[np.float64]:
        """The test rows as float64 (n_test, p), a new array on each use."""
        return cast_rows(self.genotypes, self.test)

    @property
    def n_train(self) -> int:
        return int(self.y_train.shape[0])

    @property
    def n_test(self) -> int:
        return int(self.y_test.shape[0])

    @property
    def n_features(self) -> int:
        return int(self.genotypes.shape[1])


def cast_rows(
    genotypes: NDArray[np.int8],
    index: NDArray[np.int64],
    out: NDArray[np.float64] | None = None,
) -> NDArray[np.float64]:
    """Rows ``index`` of ``genotypes`` (N, p) as float64 (n, p), written into ``out`` if given.

    Gathered a few rows at a time, so no int8 copy of all the rows is made; the values are those
    of ``genotypes[index].astype(np.float64)`` (small integers are exact in float64).
    """
    n, p = int(index.shape[0]), int(genotypes.shape[1])
    if out is None:
        out = np.empty((n, p))
    for start in range(0, n, _CAST_ROWS):
        out[start : start + _CAST_ROWS] = genotypes[index[start : start + _CAST_ROWS]]
    return out


class ClientFloats:
    """Each client's float64 rows on demand, kept or cast into one reused buffer.

    Converting a 1,600 x 50,000 client to float64 into fresh memory costs about as much as
    training on it (the kernel zeroes every new page), and a run does it twice a round per
    client (train, then evaluate). So when every client's rows together fit ``budget`` bytes
    they are made once and kept (read-only) for the whole run; otherwise each use casts them
    into one buffer of the largest client's size, allocated once and reused. Either way the
    values and the array's layout are those of a fresh ``genotypes[rows].astype(float64)``, so
    training and evaluation give the same bits.

    Pickled (for Ray or the Deployment Engine) without its buffers.

    Parameters
    ----------
    data : sequence of ClientData
        Each client's rows, by partition id.
    budget : int, optional
        Bytes of float64 rows kept across uses at most; :data:`FLOAT_CACHE_BYTES` by default.
    """

    def __init__(self, data: Sequence[ClientData], budget: int | None = None) -> None:
        self.data = list(data)
        total = sum((d.n_train + d.n_test) * d.n_features * 8 for d in self.data)
        self.keep = total <= (FLOAT_CACHE_BYTES if budget is None else budget)
        self._init_buffers()

    def _init_buffers(self) -> None:
        self._kept: dict[tuple[int, str], NDArray[np.float64]] = {}
        self._buffer: NDArray[np.float64] | None = None
        self._lock = threading.Lock()

    def __getstate__(self) -> dict[str, Any]:
        return {"data": self.data, "keep": self.keep}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.data, self.keep = state["data"], state["keep"]
        self._init_buffers()

    @contextmanager
    def rows(self, pid: int, part: Literal["train", "test"]) -> Iterator[NDArray[np.float64]]:
        """Client ``pid``'s ``part`` rows as float64 (n, p), valid inside the ``with`` only.

        Inside the block the array must not be written (a kept copy is read-only) nor kept
        afterwards (the buffer is overwritten by the next use).
        """
        d = self.data[pid]
        index = d.train if part == "train" else d.test
        if self.keep:
            with self._lock:
                x = self._kept.get((pid, part))
                if x is None:
                    x = cast_rows(d.genotypes, index)
                    x.flags.writeable = False
                    self._kept[(pid, part)] = x
            yield x
        elif self._lock.acquire(blocking=False):
            try:
                yield cast_rows(d.genotypes, index, self._scratch(index.shape[0], d.n_features))
            finally:
                self._lock.release()
        else:  # another thread is using the buffer: a fresh array
            yield cast_rows(d.genotypes, index)

    def _scratch(self, n: int, p: int) -> NDArray[np.float64]:
        """The first ``n`` rows of the reused buffer (a C-contiguous (n, p) view)."""
        if self._buffer is None or self._buffer.shape[1] != p or self._buffer.shape[0] < n:
            largest = max(max(d.n_train, d.n_test) for d in self.data)
            self._buffer = None  # freed before the new one is made
            self._buffer = np.empty((max(n, largest), p))
        return self._buffer[:n]


def client_data(cohort: Cohort, split: Split) -> list[ClientData]:
    """Each client's rows of ``cohort``, by partition id (indices into the shared genotypes)."""
    return [
        ClientData(
            genotypes=cohort.genotypes,
            train=c.train,
            test=c.test,
            y_train=cohort.labels[c.train],
            y_test=cohort.labels[c.test],
        )
        for c in split.clients
    ]
