"""Defenses: client-side Flower mods and server-side strategy wrappers (one class each)."""

from fedgen.defenses.base import Defense, defense_rng

__all__ = ["Defense", "defense_rng"]
