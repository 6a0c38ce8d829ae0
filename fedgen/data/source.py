"""The protocol every dataset option implements."""

from typing import Protocol

import numpy as np

from fedgen.core.records import Cohort


class CohortSource(Protocol):
    """Something that yields a cohort; randomness only through the generator it is given."""

    def load(self, rng: np.random.Generator) -> Cohort:
        """Return the cohort (a file-backed source may ignore ``rng``)."""
        ...
