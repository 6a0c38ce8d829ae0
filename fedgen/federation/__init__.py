"""Federated training with Flower: apps, the recording strategy, and the runners (backends)."""

from fedgen.federation.settings import FederationSettings
from fedgen.federation.train import ClientData, train_federation

__all__ = ["ClientData", "FederationSettings", "train_federation"]
