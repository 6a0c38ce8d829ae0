"""Conversion between LinearParams and Flower's ArrayRecord (keys ``coef`` and ``intercept``)."""

import numpy as np
from flwr.app import Array, ArrayRecord

from fedgen.core.records import LinearParams


def to_record(params: LinearParams) -> ArrayRecord:
    """Pack parameters for a Flower message."""
    return ArrayRecord(
        {
            "coef": Array(np.ascontiguousarray(params.coef, dtype=np.float64)),
            "intercept": Array(np.array([params.intercept], dtype=np.float64)),
        }
    )


def from_record(record: ArrayRecord) -> LinearParams:
    """Unpack parameters from a Flower message."""
    coef = np.asarray(record["coef"].numpy(), dtype=np.float64).copy()
    intercept = float(record["intercept"].numpy()[0])
    return LinearParams(coef=coef, intercept=intercept)
