"""Cohorts: synthetic, or read from CSV and PLINK files; and their partition across clients."""

from fedgen.data.csv import CsvCohort
from fedgen.data.partition import partition
from fedgen.data.pgen import PgenCohort
from fedgen.data.plink import PlinkCohort
from fedgen.data.source import CohortSource
from fedgen.data.synthetic import SyntheticCohort

__all__ = [
    "CohortSource",
    "CsvCohort",
    "PgenCohort",
    "PlinkCohort",
    "SyntheticCohort",
    "partition",
]
