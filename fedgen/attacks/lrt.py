"""Membership from client updates by the allele-frequency likelihood-ratio test (Homer 2008)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
from numpy.typing import NDArray
from scipy.special import ndtr

from fedgen.attacks.base import Arena, Observation, check_threshold
from fedgen.attacks.genotypes import Features, GenotypeRows, n_rows, row_chunks, take
from fedgen.attacks.observers import TrainingView, check_observer, observe_training
from fedgen.core.errors import ConfigError
from fedgen.core.records import AttackResult
from fedgen.models import Model

# Reference allele frequencies are kept this far from 0 and 1, so that a SNP monomorphic in the
# reference panel gets a finite weight 1 / (2 f (1 - f)) instead of an infinite one.
FREQ_CLIP = 0.01


@dataclass(frozen=True)
class LRTView:
    """What the likelihood-ratio attacker holds: the training it saw, candidates, a reference panel.

    Attributes
    ----------
    training : TrainingView
        The observer's view of the training (every round's client updates for the server, the
        global updates for a peer).
    records : GenotypeRows, shape (n, p)
        The candidates' genotypes (int8 rows of the cohort).
    labels : ndarray of int8, shape (n,)
        The candidates' phenotypes.
    clients : ndarray of int64, shape (n,)
        The client each candidate is asked about.
    reference_records : GenotypeRows, shape (m, p)
        Genotypes of reference individuals known to be outside the federation (int8 rows).
    reference_labels : ndarray of int8, shape (m,)
        Their phenotypes.
    """

    training: TrainingView
    records: GenotypeRows
    labels: NDArray[np.int8]
    clients: NDArray[np.int64]
    reference_records: GenotypeRows
    reference_labels: NDArray[np.int8]


class LikelihoodRatioMIA:
    """Likelihood-ratio membership test on client updates (Homer et al. 2008; Sankararaman 2009).

    Threat model: an honest-but-curious FedAvg server that sees every client's update in every
    round (``observer="server"``; under secure aggregation the aggregate stands in for each
    client), or a ``peer`` that sees every round's global update. It holds the candidates'
    genotypes and phenotypes and a reference panel of individuals of the same population known
    to be outside the federation (``cohort.reference``: a public panel such as 1000 Genomes).
    It needs a linear model (logistic regression): it reads the update as allele frequencies.

    Why an update is a frequency contrast: for logistic regression a local epoch moves the
    coefficients by ``Δw ≈ η Σ_i r_i x_i`` and the intercept by ``Δb ≈ η Σ_i r_i``, with
    residuals ``r_i = y_i - sigmoid(z_i)`` (``± 1/2`` from a model near zero). So
    ``Δw_j - 2 f_j Δb = η Σ_i r_i (x_ij - 2 f_j)``: cases' minus controls' allele counts,
    each taken from the reference frequency ``f_j``, i.e. the case pool's and the control
    pool's deviations from the reference in Sankararaman's test. The linearised log-likelihood
    ratio of "candidate ``(x, y)`` is in the pool" is then, per round ``r`` and client ``c``,

        T = (2y - 1) Σ_j (x_j - 2 f_j) (Δw_cj - 2 f_j Δb_c) / (2 f_j (1 - f_j)),

    signed by the label (a case pulls the coefficients toward its genotype, a control away).
    For a member the own term has mean ``η p / 2`` against a spread ``η sqrt(n p / 4)`` from
    the client's ``n`` other rows, so in the small-step regime the AUC is
    ``Φ(sqrt(p / (2 n)))`` (the test follows this curve); under secure aggregation over ``K``
    clients it falls to ``Φ(sqrt(p / (2 K n)))``. ``f_j`` is estimated on the reference panel
    (clipped to ``[0.01, 0.99]``).

    Calibration (Braun et al. 2009: thresholds set without a null distribution overstate
    power): per round and client, the reference individuals are scored the same way with
    their own labels, and each candidate's statistic is standardised by their mean and
    standard deviation: ``z``. The headline statistic is that of the updates summed over the
    rounds (``rounds``), calibrated the same way; it ranks candidates (``ranks``) and each
    round's ``z`` is reported in ``per_round``. The score is ``Φ(z)`` in [0, 1], roughly the
    share of reference individuals the candidate beats; a candidate is called a member when
    its score is at least the threshold (0.99 in ``conf/attack/lrt.yaml``: about 1% of
    non-members called members).

    With the study's model (``optimal`` steps that overshoot, then L2 shrinkage) late rounds'
    updates mostly shrink coefficients fitted to the members, so a late round's own AUC can
    fall below 0.5; the statistic of the summed updates still leaks most.

    Parameters
    ----------
    name : str
        The attack's key in the ``attack`` config group.
    observer : {"server", "peer"}
        ``server``: each candidate is tested against its client's updates; ``peer``: against
        the global updates. ``public`` (one model, no update) is not supported.
    threshold : float in [0, 1]
        Member when ``Φ(z) >=`` this.
    rounds : sequence of int, optional
        The rounds (1-based) whose updates the headline statistic sums; all by default.
    """

    kind: ClassVar[str] = "membership"
    observers: ClassVar[tuple[str, ...]] = ("server", "peer")

    def __init__(
        self,
        name: str = "lrt",
        observer: str = "server",
        threshold: float = 0.99,
        rounds: Sequence[int] | None = None,
    ) -> None:
        self.name = name
        self.observer = check_observer(name, observer, self.observers)
        self.threshold = check_threshold(name, threshold)
        if rounds is not None:
            rounds = list(rounds)
            if not rounds or not all(
                isinstance(r, int) and not isinstance(r, bool) and r >= 1 for r in rounds
            ):
                raise ConfigError(
                    f"attack.{name}.rounds={rounds!r} must be a non-empty list of round numbers "
                    "(1, 2, ...), or null for every round"
                )
        self.rounds = None if rounds is None else tuple(sorted(set(rounds)))

    def check_model(self, model: Model) -> None:
        """Fail before training unless the model is linear (checked again in ``observe``)."""
        if not model.linear:
            raise ConfigError(
                f"attack {self.name} (lrt) needs a linear model: it reads the updates of the "
                f"SNP coefficients as allele frequencies, and model {model.name!r} is not "
                "linear; use model=sgd_logistic or model=sgd_logistic_fit"
            )

    def observe(self, arena: Arena) -> Observation[LRTView]:
        """The observer's training view, the candidates (the pool) and the reference panel."""
        self.check_model(arena.model)
        reference = arena.cohort.reference
        if reference is None or reference.n_individuals < 2:
            raise ConfigError(
                f"attack {self.name} (lrt) calibrates on reference individuals and the cohort "
                "has none; set dataset.n_reference (synthetic cohorts) or "
                "dataset.reference_fraction > 0 (CSV cohorts)"
            )
        pool = arena.pool
        view = LRTView(
            training=observe_training(arena.server, self.observer),
            records=GenotypeRows(arena.cohort.genotypes, pool.rows),
            labels=arena.cohort.labels[pool.rows],
            clients=pool.client,
            reference_records=GenotypeRows(reference.genotypes, np.arange(reference.n_individuals)),
            reference_labels=reference.labels,
        )
        return Observation(view=view, truth=pool.is_member, clients=pool.client)

    def run(self, view: LRTView) -> AttackResult:
        """Calibrated likelihood-ratio statistic of each candidate, per round and summed."""
        training = view.training
        n_rounds = training.num_rounds
        rounds = self.rounds or tuple(range(1, n_rounds + 1))
        if rounds[-1] > n_rounds:
            raise ConfigError(
                f"attack.{self.name}.rounds={list(rounds)} names a round after the last "
                f"({n_rounds}); use rounds 1 to {n_rounds}, or null for all"
            )
        freqs = allele_frequencies(view.reference_records)
        server = self.observer == "server"
        per_round: list[NDArray[np.float64]] = []
        updates: dict[int, NDArray[np.float64]] = {}
        for r in range(1, n_rounds + 1):
            u = training.client_updates(r) if server else training.global_update(r)[None, :]
            updates[r] = u
            per_round.append(self._calibrated(view, np.asarray(u, np.float64), freqs))
        total = np.sum([updates[r] for r in rounds], axis=0)
        z = self._calibrated(view, total, freqs)
        return AttackResult(
            self.name,
            np.asarray(ndtr(z), np.float64),
            True,
            ranks=z,
            per_round=tuple(per_round),
        )

    def _calibrated(
        self, view: LRTView, updates: NDArray[np.float64], freqs: NDArray[np.float64]
    ) -> NDArray[np.float64]:
        """Each candidate's statistic against its client's update, standardised on the panel."""
        candidates = lr_statistics(view.records, view.labels, updates, freqs)
        reference = lr_statistics(view.reference_records, view.reference_labels, updates, freqs)
        column = view.clients if self.observer == "server" else np.zeros_like(view.clients)
        return calibrate(candidates, reference)[np.arange(column.size), column]


def allele_frequencies(reference: Features) -> NDArray[np.float64]:
    """Minor-allele frequency of each SNP in the reference panel (m, p), clipped, float64 (p,)."""
    if isinstance(reference, GenotypeRows):  # int8, summed in float64 as a float copy would be
        mean = reference.int8().mean(axis=0, dtype=np.float64)
    else:
        mean = reference.mean(axis=0)
    return np.asarray(np.clip(mean / 2.0, FREQ_CLIP, 1.0 - FREQ_CLIP), np.float64)


def lr_statistics(
    records: Features,
    labels: NDArray[np.integer],
    updates: NDArray[np.float64],
    freqs: NDArray[np.float64],
) -> NDArray[np.float64]:
    """The linearised likelihood-ratio statistic of each record against each update.

    Parameters
    ----------
    records : GenotypeRows or ndarray of float, shape (n, p)
        Genotypes 0/1/2 (cast to float64 a chunk of rows at a time).
    labels : ndarray of int, shape (n,)
        Phenotypes 0/1: the sign of each record's statistic.
    updates : ndarray of float64, shape (K, p + 1)
        Linear-model updates: SNP coefficients, then the intercept.
    freqs : ndarray of float64, shape (p,)
        Reference allele frequencies, in (0, 1).

    Returns
    -------
    ndarray of float64, shape (n, K)
        ``(2y - 1) Σ_j (x_j - 2 f_j) (Δw_j - 2 f_j Δb) / (2 f_j (1 - f_j))``.
    """
    p = freqs.size
    contrast = updates[:, :p] - 2.0 * freqs * updates[:, p:]
    direction = contrast / (2.0 * freqs * (1.0 - freqs))
    sign = 2.0 * np.asarray(labels, np.float64) - 1.0
    out = np.empty((n_rows(records), direction.shape[0]))
    for part in row_chunks(np.arange(n_rows(records)), p):
        out[part] = (take(records, part) - 2.0 * freqs) @ direction.T
    return np.asarray(sign[:, None] * out, np.float64)


def calibrate(
    candidates: NDArray[np.float64], reference: NDArray[np.float64]
) -> NDArray[np.float64]:
    """Standardise statistics (n, K) by the reference's (m, K) mean and SD, column by column.

    A column whose reference statistics do not vary (an update of zero says nothing) gives 0.
    """
    mean = reference.mean(axis=0)
    sd = reference.std(axis=0, ddof=1)
    informative = sd > 0
    z = np.zeros_like(candidates)
    z[:, informative] = (candidates[:, informative] - mean[informative]) / sd[informative]
    return z
