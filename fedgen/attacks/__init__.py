"""Inference attacks on what each observer of a federation sees (server, peer, public)."""

from fedgen.attacks.alignment import AlignmentMIA
from fedgen.attacks.base import Arena, Attack, Observation
from fedgen.attacks.gmia import GradientNormMIA
from fedgen.attacks.label_counts import LabelCountAttack
from fedgen.attacks.lia import GradientLIA
from fedgen.attacks.lira import LiRAMIA
from fedgen.attacks.lrt import LikelihoodRatioMIA
from fedgen.attacks.mia import ConfidenceMIA
from fedgen.attacks.phenotype import PhenotypeAttack

__all__ = [
    "AlignmentMIA",
    "Arena",
    "Attack",
    "ConfidenceMIA",
    "GradientLIA",
    "GradientNormMIA",
    "LabelCountAttack",
    "LiRAMIA",
    "LikelihoodRatioMIA",
    "Observation",
    "PhenotypeAttack",
]
