"""What one client holds: its train and test rows of the cohort."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from fedgen.core.records import Cohort, Split


@dataclass(frozen=True)
class ClientData:
    """One client's rows of the cohort, by index: nothing is copied until the client trains.

    Every client shares the cohort's int8 matrix (one object, so one copy when the client app
    is shipped to a Ray worker) and keeps only its row indices. The float64 feature matrices
    ``X_train`` (n_train, p) and ``X_test`` (n_test, p), unstandardised as in the study, are made
    anew on each use and dropped after it: the in-process backend runs clients one at a time, so
    at most one client's rows are float64 at once (a 2,000 x 100,000 client is 1.6 GB in
    float64; twenty such clients held at once would not fit a 24 GB machine).

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
        """The train rows as float64 (n_train, p), made on each use."""
        return self.genotypes_train.astype(np.float64)

    @property
    def X_test(self) -> NDArray[np.float64]:
        """The test rows as float64 (n_test, p), made on each use."""
        return self.genotypes_test.astype(np.float64)

    @property
    def n_train(self) -> int:
        return int(self.y_train.shape[0])

    @property
    def n_test(self) -> int:
        return int(self.y_test.shape[0])


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
