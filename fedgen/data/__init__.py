"""Cohorts: synthetic generation, loading from CSV, and partitioning across clients."""

from fedgen.data.csv import CsvCohort
from fedgen.data.partition import partition
from fedgen.data.source import CohortSource
from fedgen.data.synthetic import SyntheticCohort

__all__ = ["CohortSource", "CsvCohort", "SyntheticCohort", "partition"]
