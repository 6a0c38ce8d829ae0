"""Defenses: client-side Flower mods, server-side strategy wrappers, model wrappers, accounting.

The defense classes load on first use (``fedgen.defenses.ClientDP`` works as usual, also as a
Hydra ``_target_``), so a run without defenses does not import the accountant or Flower's
secure-aggregation and DP machinery.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from fedgen.defenses.base import (
    BaseDefense,
    Defense,
    PrivacyAccount,
    TrainingShape,
    defense_rng,
)

if TYPE_CHECKING:
    from fedgen.defenses.central_dp import CentralDP
    from fedgen.defenses.client_dp import ClientDP
    from fedgen.defenses.clip import Clip
    from fedgen.defenses.dp_sgd import DPSGD
    from fedgen.defenses.secagg import SecAgg
    from fedgen.defenses.snp_suppression import SNPSuppression
    from fedgen.defenses.sparsify import Sparsify

_MODULE_OF = {
    "CentralDP": "central_dp",
    "ClientDP": "client_dp",
    "Clip": "clip",
    "DPSGD": "dp_sgd",
    "SecAgg": "secagg",
    "SNPSuppression": "snp_suppression",
    "Sparsify": "sparsify",
}


def __getattr__(name: str) -> Any:
    if name in _MODULE_OF:
        return getattr(importlib.import_module(f"fedgen.defenses.{_MODULE_OF[name]}"), name)
    raise AttributeError(f"module 'fedgen.defenses' has no attribute {name!r}")


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
