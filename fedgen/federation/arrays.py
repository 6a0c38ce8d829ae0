"""Conversion between a model's named parameter arrays and Flower's ArrayRecord."""

import numpy as np
from flwr.app import Array, ArrayRecord

from fedgen.core.records import Params


def to_record(params: Params) -> ArrayRecord:
    """Pack parameters (name -> float64 array) for a Flower message, in their order."""
    return ArrayRecord(
        {name: Array(np.ascontiguousarray(a, dtype=np.float64)) for name, a in params.items()}
    )


def from_record(record: ArrayRecord) -> Params:
    """Unpack parameters from a Flower message (float64 copies, in the record's order)."""
    return {name: np.asarray(a.numpy(), dtype=np.float64).copy() for name, a in record.items()}
