"""Membership inference from the model's confidence in the true label."""

from __future__ import annotations

import numpy as np
from scipy.special import expit

from fedgen.attacks.base import Arena, Observation
from fedgen.attacks.gradients import check_model_choice, logits, target_models
from fedgen.attacks.views import MembershipView, membership_view
from fedgen.records import AttackResult


class ConfidenceMIA:
    """Confidence-threshold membership inference (the study's MIA; Yeom et al. 2018).

    Threat model: an honest-but-curious FedAvg server that holds the candidate records with
    their labels and the models of the federation (by default the final global model; with
    ``model="client"`` the last local model the candidate's own client returned). It queries
    the model at each candidate; it never sees gradients or membership.

    Score: the model's probability of the candidate's true label, in [0, 1]; a candidate is
    called a member when the score is at least the threshold (training rows tend to be fitted
    more confidently).

    Parameters
    ----------
    name : str
        The attack's key in the ``attack`` config group, used in metric names.
    model : {"global", "client"}
        Which model is attacked.
    """

    def __init__(self, name: str = "mia", model: str = "global") -> None:
        self.name = name
        self.model = check_model_choice(name, model)

    def observe(self, arena: Arena) -> Observation[MembershipView]:
        """Candidates and their labels; membership stays with the metrics."""
        return membership_view(arena)

    def run(self, view: MembershipView) -> AttackResult:
        """Score each candidate by the confidence in its true label."""
        coef, intercept = target_models(view.server, self.model, view.clients)
        z = logits(view.records, coef, intercept)
        signed = np.where(view.labels == 1, z, -z)
        return AttackResult(self.name, np.asarray(expit(signed), np.float64), True)
