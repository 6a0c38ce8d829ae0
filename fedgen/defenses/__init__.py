"""Defenses: client-side Flower mods, server-side strategy wrappers, model wrappers, accounting."""

from fedgen.defenses.base import (
    BaseDefense,
    Defense,
    PrivacyAccount,
    TrainingShape,
    defense_rng,
)

__all__ = ["BaseDefense", "Defense", "PrivacyAccount", "TrainingShape", "defense_rng"]
