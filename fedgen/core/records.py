"""Frozen records that cross module boundaries: cohort, split, federation result, attacks."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray


@dataclass(frozen=True)
class Cohort:
    """A genotype cohort.

    Attributes
    ----------
    genotypes : ndarray of int8, shape (n_individuals, n_snps)
        Minor-allele counts 0/1/2.
    labels : ndarray of int8, shape (n_individuals,)
        Binary phenotype 0/1.
    snp_names : tuple of str, length n_snps
    metadata : dict of str to ndarray
        Facts about individuals or SNPs that are never used as features (ancestry group per
        individual, LD block per SNP, minor-allele frequency per SNP, causal SNP mask, ...).
    reference : Cohort or None
        Reference individuals: the same population and SNPs, but outside every client (never
        partitioned, never trained on). What an attacker calibrates on (a public reference
        panel such as 1000 Genomes, in the threat models of Homer 2008 and Sankararaman 2009).
        None when the source provides none.
    """

    genotypes: NDArray[np.int8]
    labels: NDArray[np.int8]
    snp_names: tuple[str, ...]
    metadata: dict[str, NDArray[np.generic]] = field(default_factory=dict)
    reference: Cohort | None = None

    @property
    def n_individuals(self) -> int:
        return int(self.genotypes.shape[0])

    @property
    def n_snps(self) -> int:
        return int(self.genotypes.shape[1])


@dataclass(frozen=True)
class ClientSplit:
    """One client's rows: int64 index arrays ``train`` (n_train,) and ``test`` (n_test,)."""

    train: NDArray[np.int64]
    test: NDArray[np.int64]


@dataclass(frozen=True)
class Split:
    """The cohort's partition across clients, indexed by Flower partition id."""

    clients: tuple[ClientSplit, ...]

    @property
    def num_clients(self) -> int:
        return len(self.clients)


Params = dict[str, NDArray[np.float64]]
"""A model's named parameter arrays, float64, in the model's fixed order (see fedgen.models)."""


@dataclass(frozen=True)
class RoundRecord:
    """What the server received and sent in one FedAvg round, as it crossed the wire.

    Recorded at the outermost layer (the Grid, :mod:`fedgen.federation.recorder`): client
    parameters are as the server received them, after any client-side mod (a defense), and the
    global parameters as the server sent them out, after any server-side strategy wrapper.

    Attributes
    ----------
    round : int
        1-based round number.
    global_params : Params
        The aggregate that the server sends out after this round.
    client_params : tuple of Params
        Each client's returned local model, by partition id; empty if ``aggregate_only``.
    client_num_examples : tuple of int
        The sample count each client reported (FedAvg's weights), by partition id.
    metrics : dict of str to float
        Global-model loss and accuracy on each client's train and test rows and pooled, with
        stable names such as ``fed/test_accuracy`` and ``fed/client_2/train_loss``.
    aggregate_only : bool
        The server saw no client's model, only their aggregate (secure aggregation: each
        client's upload is masked, and only the masked sum can be unmasked). Then
        ``global_params`` is that aggregate, the sample-weighted mean of the client models
        (so the mean update is ``global_params`` minus the previous round's), and
        ``client_params`` is empty; the sample counts are still sent in the clear.
    """

    round: int
    global_params: Params
    client_params: tuple[Params, ...]
    client_num_examples: tuple[int, ...]
    metrics: dict[str, float]
    aggregate_only: bool = False

    def __post_init__(self) -> None:
        if self.aggregate_only and self.client_params:
            raise ValueError(f"round {self.round} is aggregate-only but has client parameters")


@dataclass(frozen=True)
class FederationResult:
    """Round-by-round record of one federated training run."""

    initial_params: Params
    rounds: tuple[RoundRecord, ...]

    @property
    def final_params(self) -> Params:
        return self.rounds[-1].global_params if self.rounds else self.initial_params

    @property
    def aggregate_only(self) -> bool:
        """Whether the server saw only aggregates, no client's model, in some round."""
        return any(r.aggregate_only for r in self.rounds)


@dataclass(frozen=True)
class Pool:
    """The individuals an attack is evaluated on, with the truth that only the metrics see.

    Attributes
    ----------
    rows : ndarray of int64, shape (n,)
        Cohort row of each candidate.
    is_member : ndarray of bool, shape (n,)
        Whether the candidate was in the training rows of ``client``.
    client : ndarray of int64, shape (n,)
        The client (partition id) whose train or test rows the candidate comes from.
    """

    rows: NDArray[np.int64]
    is_member: NDArray[np.bool_]
    client: NDArray[np.int64]

    @property
    def size(self) -> int:
        return int(self.rows.shape[0])


@dataclass(frozen=True)
class Estimate:
    """Values an attack infers, compared with the truth by the metrics (never by the attack).

    Attributes
    ----------
    values : ndarray of float64, shape (m,)
        The attack's estimates (e.g. each client's number of cases).
    kind : {"count", "category"}
        ``count``: scored by absolute error (``<key>_mae``, ``<key>_max_error``) against the
        truth and against the trivial guess; ``category``: scored by accuracy
        (``<key>_accuracy``) against chance.
    """

    values: NDArray[np.float64]
    kind: str = "count"


@dataclass(frozen=True)
class AttackResult:
    """An attack's output on its targets: scores, and how the threshold turns them into calls.

    Attributes
    ----------
    name : str
        The attack's name (its key in the ``attack`` config group), e.g. ``gmia``.
    scores : ndarray of float64, shape (n,)
        The attack's statistic per target, in [0, 1] (confidence, scaled gradient norm, label
        probability).
    higher_is_positive : bool
        True if a target is called positive (member, or label 1) when its score is at least the
        threshold; False if when its score is at most the threshold (gradient norms).
    rules : dict of str to ndarray of int8, shape (n,)
        Threshold-free side rules: a call 0/1 per target, or -1 where the rule says nothing
        (e.g. ``sign_rule``: the label read from the sign of the bias gradient).
    ranks : ndarray of float64, shape (n,), optional
        The same statistic computed stably (log space, margins), higher meaning more likely
        positive: orders the targets as exact arithmetic would where ``scores`` has rounded
        to ties (a confidence of exactly 1.0, a residual of exactly 0). ROC, AUC and TPR at
        low FPR use it; the threshold still applies to ``scores``.
    per_round : tuple of ndarray of float64, shape (n,) each
        For attacks on every round's record: the statistic of round ``r`` (1-based) at index
        ``r - 1``, oriented like ``ranks`` (higher means more likely positive). The metrics
        report AUC and TPR at low FPR per round (leakage over rounds). Empty otherwise.
    estimates : dict of str to Estimate
        Numbers the attack infers that are not per-target scores (each client's case count,
        the client a participant belongs to); the metrics compare them with the truth.
    baselines : dict of str to ndarray of float64, shape (n,)
        Scores of the same targets by a weaker attacker that lacks the observation (e.g. a
        polygenic score fitted on reference individuals, for label inference), higher meaning
        more likely positive; the metrics report each one's AUC as ``<key>_auc`` beside the
        attack's own.
    """

    name: str
    scores: NDArray[np.float64]
    higher_is_positive: bool
    rules: dict[str, NDArray[np.int8]] = field(default_factory=dict)
    ranks: NDArray[np.float64] | None = None
    per_round: tuple[NDArray[np.float64], ...] = ()
    estimates: dict[str, Estimate] = field(default_factory=dict)
    baselines: dict[str, NDArray[np.float64]] = field(default_factory=dict)

    def predict(self, threshold: float) -> NDArray[np.bool_]:
        """The attack's calls at ``threshold``, bool (n,)."""
        if self.higher_is_positive:
            return np.asarray(self.scores >= threshold)
        return np.asarray(self.scores <= threshold)

    @property
    def oriented_scores(self) -> NDArray[np.float64]:
        """Scores with higher meaning more likely positive (for ROC and AUC), float64 (n,).

        The stable ``ranks`` where the attack provides them.
        """
        if self.ranks is not None:
            return self.ranks
        return self.scores if self.higher_is_positive else -self.scores
