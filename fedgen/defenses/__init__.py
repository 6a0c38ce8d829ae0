"""Defenses: client-side Flower mods, server-side strategy wrappers, model wrappers, accounting."""

from fedgen.defenses.base import (
    BaseDefense,
    Defense,
    PrivacyAccount,
    TrainingShape,
    defense_rng,
)
from fedgen.defenses.client_dp import ClientDP
from fedgen.defenses.clip import Clip
from fedgen.defenses.sparsify import Sparsify

__all__ = [
    "BaseDefense",
    "ClientDP",
    "Clip",
    "Defense",
    "PrivacyAccount",
    "Sparsify",
    "TrainingShape",
    "defense_rng",
]
