"""Membership inference from the norm of the per-sample gradient."""

from __future__ import annotations

from fedgen.attacks.gradients import (
    gradient_norm_bound,
    gradient_norms,
    logits,
    residuals,
    target_models,
)
from fedgen.attacks.membership import MembershipAttack
from fedgen.attacks.views import MembershipView
from fedgen.core.records import AttackResult


class GradientNormMIA(MembershipAttack):
    """Gradient-norm membership inference (the study's G-MIA; Nasr et al. 2019).

    Threat model: an honest-but-curious FedAvg server that holds candidate records with their
    labels and the models of the federation. It does not see per-sample gradients; it computes
    them itself, at each candidate, on the model it attacks (the final global model, or with
    ``model="client"`` the last local model the candidate's client returned).

    Score: ``||g|| / B`` where ``g = (sigmoid(z) - y) [x, 1]`` and ``B = sqrt(4 p + 1)`` is the
    largest norm any record with genotypes 0/1/2 can have (it depends on the number of SNPs
    ``p`` only, not on the evaluated pool), so scores lie in [0, 1) and fixed thresholds such as
    0.3, 0.45, 0.5 mean the same on every pool. Members have smaller norms: a candidate is
    called a member when its score is at most the threshold. Note that ``||g||`` is the loss's
    ``|sigmoid(z) - y|`` weighted by ``sqrt(||x||^2 + 1)``: a loss-threshold attack in disguise.

    Parameters: ``name`` (default ``gmia``) and ``model``, see :class:`MembershipAttack`.
    """

    default_name = "gmia"

    def run(self, view: MembershipView) -> AttackResult:
        """Score each candidate by its scaled gradient norm (lower means member)."""
        coef, intercept = target_models(view.server, self.model, view.clients)
        r = residuals(logits(view.records, coef, intercept), view.labels)
        bound = gradient_norm_bound(view.records.shape[1])
        return AttackResult(self.name, gradient_norms(view.records, r) / bound, False)
