"""Membership inference from the norm of the per-sample gradient."""

from __future__ import annotations

import numpy as np

from fedgen.attacks.membership import MembershipAttack
from fedgen.attacks.signals import norms_and_log_norms
from fedgen.attacks.views import MembershipView
from fedgen.core.records import AttackResult

GENOTYPE_MAX = 2.0  # minor-allele counts are 0, 1 or 2


class GradientNormMIA(MembershipAttack):
    """Gradient-norm membership inference (the study's G-MIA; Nasr et al. 2019).

    Threat model: an honest-but-curious FedAvg server that holds candidate records with their
    labels and the models of the federation. It does not see per-sample gradients; it computes
    them itself, at each candidate, on the model it attacks (the final global model, or with
    ``model="client"`` the last local model the candidate's client returned).

    Score: ``||g|| / B``, with ``g`` the candidate's log-loss gradient with respect to every
    parameter (asked of the model, :mod:`fedgen.models`) and ``B`` the largest norm any record
    with genotypes 0/1/2 can have where the model states one (``sqrt(4 p + 1)`` for logistic
    regression; it depends on the number of SNPs only, never on the evaluated pool), so fixed
    thresholds such as 0.3, 0.45, 0.5 mean the same on every pool. For a model with no such
    bound (the MLP) the score is ``||g|| / (1 + ||g||)``, also in [0, 1) and pool-free. Members
    have smaller norms: a candidate is called a member when its score is at most the threshold.
    For logistic regression ``||g|| = |sigmoid(z) - y| sqrt(||x||^2 + 1)``: a loss-threshold
    attack in disguise.

    Parameters: ``name`` (default ``gmia``), ``model`` and ``threshold``, see
    :class:`MembershipAttack`.
    """

    default_name = "gmia"

    def run(self, view: MembershipView) -> AttackResult:
        """Score each candidate by its scaled gradient norm (lower means member)."""
        norms, log_norms = norms_and_log_norms(
            view.model, view.server, self.model, view.records, view.labels, view.clients
        )
        bound = view.model.gradient_norm_bound(view.records.shape[1], GENOTYPE_MAX)
        scores = norms / bound if bound is not None else norms / (1.0 + norms)
        # Ranked by -log ||g|| computed in log space: the residual sigmoid(z) - y rounds to
        # exactly 0 for confidently fitted candidates, tying them; its logarithm does not.
        return AttackResult(self.name, np.asarray(scores, np.float64), False, ranks=-log_norms)
