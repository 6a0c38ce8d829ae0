"""Cohorts: synthetic, or read from CSV and PLINK files; and their partition across clients."""

from fedgen.data.csv import CsvCohort
from fedgen.data.msprime_source import MsprimeCohort
from fedgen.data.partition import IIDPartition, Partition, partition
from fedgen.data.pgen import PgenCohort
from fedgen.data.plink import PlinkCohort
from fedgen.data.skew import AncestryPartition, DirichletLabelPartition, QuantityPartition
from fedgen.data.source import CohortSource
from fedgen.data.synthetic import SyntheticCohort

__all__ = [
    "AncestryPartition",
    "CohortSource",
    "CsvCohort",
    "DirichletLabelPartition",
    "IIDPartition",
    "MsprimeCohort",
    "Partition",
    "PgenCohort",
    "PlinkCohort",
    "QuantityPartition",
    "SyntheticCohort",
    "partition",
]
