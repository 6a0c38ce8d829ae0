"""Membership inference from the norm of the per-sample gradient."""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray
from scipy.special import expit, log_expit

from fedgen.attacks.genotypes import Features, n_rows
from fedgen.attacks.membership import MembershipAttack, attacked_chunks
from fedgen.attacks.signals import ModelChoice
from fedgen.attacks.views import MembershipView
from fedgen.core.records import AttackResult, FederationResult
from fedgen.models import Model

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


def norms_and_log_norms(
    model: Model,
    server: FederationResult,
    choice: ModelChoice,
    X: Features,
    y: NDArray[np.integer],
    clients: NDArray[np.int64],
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """:func:`~fedgen.attacks.signals.gradient_norms` and ``log_gradient_norms`` in one pass.

    Each chunk of candidates is cast to float64 once (into a reused buffer) and both signals
    are computed from it, with the same arithmetic as the two functions, so the values are
    theirs bit for bit.

    Returns
    -------
    (ndarray of float64, ndarray of float64), each shape (n,)
        ``||g||`` and ``log ||g||`` of each target's log-loss gradient on its attacked model.
    """
    norms, log_norms = np.empty(n_rows(X)), np.empty(n_rows(X))
    for params, part, x in attacked_chunks(server, choice, clients, X):
        g = model.per_sample_gradients(params, x, y[part])
        norms[part] = np.sqrt(np.einsum("ij,ij->i", g, g))
        del g
        z = model.decision_function(params, x)
        easy = (z < 0).astype(np.int8)  # the label whose residual is >= 1/2 in size
        g = model.per_sample_gradients(params, x, easy)
        residual = np.where(easy == 1, expit(-z), expit(z))
        log_grad_z = 0.5 * np.log(np.einsum("ij,ij->i", g, g)) - np.log(residual)
        del g
        margin = np.where(y[part] == 1, z, -z)
        log_norms[part] = log_expit(-margin) + log_grad_z
    return norms, log_norms
