"""Models behind one interface: initial parameters, local training, probabilities, gradients."""

from fedgen.models.base import (
    Model,
    ModelWrapper,
    Params,
    flatten,
    loss_and_accuracy,
    num_parameters,
)
from fedgen.models.gd import GDLogistic
from fedgen.models.linear import SGDLogistic
from fedgen.models.mlp import MLP

__all__ = [
    "MLP",
    "GDLogistic",
    "Model",
    "ModelWrapper",
    "Params",
    "SGDLogistic",
    "flatten",
    "loss_and_accuracy",
    "num_parameters",
]
