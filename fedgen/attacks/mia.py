"""Membership inference from the model's confidence in the true label."""

from __future__ import annotations

import numpy as np
from scipy.special import expit

from fedgen.attacks.membership import MembershipAttack
from fedgen.attacks.signals import decision_values
from fedgen.attacks.views import MembershipView
from fedgen.core.records import AttackResult


class ConfidenceMIA(MembershipAttack):
    """Confidence-threshold membership inference (the study's MIA; Yeom et al. 2018).

    Threat model: an honest-but-curious FedAvg server that holds the candidate records with
    their labels and the models of the federation (by default the final global model; with
    ``model="client"`` the last local model the candidate's own client returned). It queries
    the model at each candidate; it never sees gradients or membership.

    Score: the model's probability of the candidate's true label, in [0, 1]; a candidate is
    called a member when the score is at least the threshold (training rows tend to be fitted
    more confidently). Works on any model of :mod:`fedgen.models`.

    Parameters: ``name`` (default ``mia``), ``model`` and ``threshold``, see
    :class:`MembershipAttack`.
    """

    default_name = "mia"

    def run(self, view: MembershipView) -> AttackResult:
        """Score each candidate by the confidence in its true label."""
        z = decision_values(view.model, view.server, self.model, view.records, view.clients)
        signed = np.where(view.labels == 1, z, -z)
        # The margin orders candidates as the confidence would in exact arithmetic; the
        # confidence itself rounds to exactly 1.0 once the margin passes ~37.
        return AttackResult(
            self.name, np.asarray(expit(signed), np.float64), True, ranks=np.asarray(signed)
        )
