"""What one client holds: its train and test rows of the cohort."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np
from numpy.typing import NDArray

from fedgen.core.records import Cohort, Split


@dataclass(frozen=True)
class ClientData:
    """One client's rows.

    Genotypes stay int8 (cheap to ship to a Ray worker); the float64 feature matrices
    ``X_train`` (n_train, p) and ``X_test`` (n_test, p) are made on first use, unstandardised
    as in the study.
    """

    genotypes_train: NDArray[np.int8]
    y_train: NDArray[np.int8]
    genotypes_test: NDArray[np.int8]
    y_test: NDArray[np.int8]

    @cached_property
    def X_train(self) -> NDArray[np.float64]:
        return self.genotypes_train.astype(np.float64)

    @cached_property
    def X_test(self) -> NDArray[np.float64]:
        return self.genotypes_test.astype(np.float64)

    @property
    def n_train(self) -> int:
        return int(self.y_train.shape[0])

    @property
    def n_test(self) -> int:
        return int(self.y_test.shape[0])


def client_data(cohort: Cohort, split: Split) -> list[ClientData]:
    """Each client's rows of ``cohort``, by partition id."""
    return [
        ClientData(
            genotypes_train=cohort.genotypes[c.train],
            y_train=cohort.labels[c.train],
            genotypes_test=cohort.genotypes[c.test],
            y_test=cohort.labels[c.test],
        )
        for c in split.clients
    ]
