"""Defenses: client-side Flower mods, server-side strategy wrappers, model wrappers, accounting."""

from fedgen.defenses.base import (
    BaseDefense,
    Defense,
    PrivacyAccount,
    TrainingShape,
    defense_rng,
)
from fedgen.defenses.central_dp import CentralDP
from fedgen.defenses.client_dp import ClientDP
from fedgen.defenses.clip import Clip
from fedgen.defenses.dp_sgd import DPSGD
from fedgen.defenses.secagg import SecAgg
from fedgen.defenses.snp_suppression import SNPSuppression
from fedgen.defenses.sparsify import Sparsify

__all__ = [
    "DPSGD",
    "BaseDefense",
    "CentralDP",
    "ClientDP",
    "Clip",
    "Defense",
    "PrivacyAccount",
    "SNPSuppression",
    "SecAgg",
    "Sparsify",
    "TrainingShape",
    "defense_rng",
]
