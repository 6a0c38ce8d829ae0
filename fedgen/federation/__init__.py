"""Federated training with Flower: apps, the recording strategy, and the runners (backends).

``train_federation`` and ``ClientData`` load on first use (``from fedgen.federation import
train_federation`` works as usual), so that a job whose federation comes from the training cache
never imports Flower.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from fedgen.federation.settings import FederationSettings

if TYPE_CHECKING:
    from fedgen.federation.train import ClientData, train_federation

_MODULE_OF = {"ClientData": "train", "train_federation": "train"}


def __getattr__(name: str) -> Any:
    if name in _MODULE_OF:
        return getattr(importlib.import_module(f"fedgen.federation.{_MODULE_OF[name]}"), name)
    raise AttributeError(f"module 'fedgen.federation' has no attribute {name!r}")


__all__ = ["ClientData", "FederationSettings", "train_federation"]
