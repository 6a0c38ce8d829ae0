"""Inference attacks on what an honest-but-curious FedAvg server sees."""

from fedgen.attacks.base import Arena, Attack, Observation
from fedgen.attacks.gmia import GradientNormMIA
from fedgen.attacks.lia import GradientLIA
from fedgen.attacks.mia import ConfidenceMIA

__all__ = ["Arena", "Attack", "ConfidenceMIA", "GradientLIA", "GradientNormMIA", "Observation"]
