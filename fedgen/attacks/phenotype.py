"""A known participant's phenotype from its genotype and its client's updates."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np
from numpy.typing import NDArray
from scipy.special import ndtr
from sklearn.linear_model import LogisticRegression

from fedgen.attacks.base import Arena, Observation, check_threshold
from fedgen.attacks.lrt import FREQ_CLIP
from fedgen.attacks.observers import TrainingView, check_observer, observe_training
from fedgen.core.errors import ConfigError
from fedgen.core.records import AttackResult
from fedgen.models import Model


@dataclass(frozen=True)
class PhenotypeView:
    """What the server holds: the training it saw, the targets' genotypes, a reference panel.

    Attributes
    ----------
    training : TrainingView
        The server's view (every round's start model and client models).
    records : ndarray of float64, shape (n, p)
        The targets' genotypes (not their phenotypes).
    clients : ndarray of int64, shape (n,)
        The client each target is known to have trained at.
    reference_records : ndarray of float64, shape (m, p)
        Genotypes of reference individuals known to be outside the federation.
    reference_labels : ndarray of int8, shape (m,)
        Their phenotypes (a public panel with phenotypes, as a polygenic-score study has).
    """

    training: TrainingView
    records: NDArray[np.float64]
    clients: NDArray[np.int64]
    reference_records: NDArray[np.float64]
    reference_labels: NDArray[np.int8]


class PhenotypeAttack:
    """A known participant's binary phenotype from its genotype and its client's updates.

    Threat model: the honest-but-curious FedAvg server (``observer: server``) sees every
    client's returned model in every round. Its targets are known participants: it knows each
    took part at client ``c`` and has their genotype, not their phenotype. It also holds a public
    reference panel of the same population with phenotypes (``cohort.reference``), outside
    every client. This replaces ``lia`` (which reads single-sample gradients no client ever
    sends) as the realistic label attack; ``lia`` stays for the study's numbers.

    Inference: for logistic regression a round's weight update of client ``c`` is the sum of its
    rows' contributions, ``+eta (1 - sigmoid(z)) x`` for a case and ``-eta sigmoid(z) x`` for a
    control (Nasr et al. 2019; the allele-frequency contrast of Homer et al. 2008 and
    Sankararaman et al. 2009, read per individual). Per round the statistic is
    ``<(x - 2f) / s, (dw - 2f db) / s>``, with ``f`` the reference allele frequencies (clipped to
    [0.01, 0.99]), ``s^2 = 2f(1 - f)``, ``dw`` and ``db`` the client's coefficient and intercept
    updates (``dw - 2f db`` removes the part of the update every row shares); a case pushes it
    up, a control down, in every round. From round 2 on, the part of the update along the start
    model's coefficients is projected out: weight decay shrinks the start model, which holds
    the target's earlier contributions, and would count against it. The rounds' updates are
    summed (the first ``rounds`` of them), and the statistic is calibrated per client on the
    reference individuals (no member's update contains them: the null), ``(T - mean_ref) /
    sd_ref``; the score is its normal CDF in [0, 1], label 1 when it is at least the threshold.
    Per-round statistics are calibrated likewise.

    Beside it, ``baselines["population"]``: a polygenic score (logistic regression fitted on
    the reference individuals' genotypes and phenotypes) of each target, i.e. what one knows of
    the phenotype without the updates (reported as ``population_auc``). A target's own
    contribution is what the attack adds; the update's population signal (its GWAS-like
    association) also scores non-members, which is why on a model that learnt the phenotype a
    non-participant's AUC is the population baseline's, not 0.5.

    Assumptions: a linear model (``coef`` and ``intercept``; any other model is a ConfigError) and
    a reference panel (``dataset.n_reference`` or ``dataset.reference_fraction``).

    Parameters
    ----------
    name : str
        The attack's key in the ``attack`` config group, used in metric names.
    threshold : float in [0, 1]
        Label 1 when the score is at least this.
    observer : str
        Must be ``server``.
    rounds : int or None
        Sum the statistic over the first ``rounds`` rounds only (1: the round-1 update, from
        the zero model, the cleanest GWAS-like contrast); None sums all rounds.
    """

    kind: ClassVar[str] = "label"
    observers: ClassVar[tuple[str, ...]] = ("server",)

    def __init__(
        self,
        name: str = "phenotype",
        threshold: float = 0.5,
        observer: str = "server",
        rounds: int | None = None,
    ) -> None:
        if rounds is not None and (
            isinstance(rounds, bool) or not isinstance(rounds, int) or rounds < 1
        ):
            raise ConfigError(
                f"attack.{name}.rounds={rounds!r} must be a positive integer or null (all rounds)"
            )
        self.name = name
        self.rounds = rounds
        self.threshold = check_threshold(name, threshold)
        self.observer = check_observer(name, observer, self.observers)

    def check_model(self, model: Model) -> None:
        """Fail before training unless ``model`` is linear (``coef`` and ``intercept``)."""
        if not model.linear:
            raise ConfigError(
                f"attack {self.name} reads a linear model's coefficient updates; model "
                f"{model.name!r} is not linear: use model=gd_logistic or sgd_logistic"
            )

    def observe(self, arena: Arena) -> Observation[PhenotypeView]:
        """Targets are the pool's members; the truth is their label being 1."""
        self.check_model(arena.model)
        reference = arena.cohort.reference
        if reference is None or np.unique(reference.labels).size < 2:
            raise ConfigError(
                f"attack {self.name} needs reference individuals of both labels: set "
                "dataset.n_reference (synthetic) or dataset.reference_fraction (csv) above 0"
            )
        pool, cohort = arena.pool, arena.cohort
        rows, clients = pool.rows[pool.is_member], pool.client[pool.is_member]
        view = PhenotypeView(
            training=observe_training(arena.server, self.observer),
            records=cohort.genotypes[rows].astype(np.float64),
            clients=clients,
            reference_records=reference.genotypes.astype(np.float64),
            reference_labels=reference.labels,
        )
        return Observation(view=view, truth=cohort.labels[rows] == 1, clients=clients)

    def run(self, view: PhenotypeView) -> AttackResult:
        """Score every target's label 1 from its genotype and its client's updates."""
        reference = view.reference_records
        freq = np.clip(reference.mean(axis=0) / 2.0, FREQ_CLIP, 1.0 - FREQ_CLIP)
        scale = np.sqrt(2.0 * freq * (1.0 - freq))
        targets = (view.records - 2.0 * freq) / scale
        null = (reference - 2.0 * freq) / scale
        training = view.training
        R = training.num_rounds
        total = np.zeros(view.records.shape[0])
        per_round = np.zeros((R, view.records.shape[0]))
        for c in np.unique(view.clients):
            mine = view.clients == c
            directions = contributions(training, int(c), freq) / scale  # (R, p)
            summed = directions[: self.rounds].sum(axis=0)
            directions = np.vstack([directions, summed])  # each round, then the attack's
            stats = calibrate(targets[mine] @ directions.T, null @ directions.T)  # (n_c, R + 1)
            per_round[:, mine] = stats[:, :R].T
            total[mine] = stats[:, R]
        polygenic = LogisticRegression(max_iter=1000).fit(reference, view.reference_labels)
        population = polygenic.predict_proba(view.records)[:, list(polygenic.classes_).index(1)]
        return AttackResult(
            self.name,
            scores=np.asarray(ndtr(total), np.float64),
            higher_is_positive=True,
            ranks=total,
            per_round=tuple(per_round),
            baselines={"population": np.asarray(population, np.float64)},
        )


def contributions(training: TrainingView, c: int, freq: NDArray[np.float64]) -> NDArray[np.float64]:
    """Client ``c``'s coefficient updates with the shared part removed, float64 (R, p).

    Row ``r - 1`` is ``dw - 2f db`` of round ``r``: the update is ``sum_i a_i [x_i, 1]``, so
    subtracting ``2f`` times the intercept update leaves ``sum_i a_i (x_i - 2f)``.
    """
    rows = []
    for r in range(1, training.num_rounds + 1):
        start, returned = training.round_start(r), training.client_params[r - 1][c]
        dw = returned["coef"] - start["coef"]
        db = float(returned["intercept"][0] - start["intercept"][0])
        u = dw - 2.0 * freq * db
        w = start["coef"]
        norm = float(w @ w)
        if norm > 0.0:  # weight decay shrinks the start model, which holds earlier rounds' rows
            u = u - (float(u @ w) / norm) * w
        rows.append(u)
    return np.asarray(rows, np.float64)


def calibrate(stats: NDArray[np.float64], null: NDArray[np.float64]) -> NDArray[np.float64]:
    """Standardise ``stats`` (n, k) column by column on the null statistics ``null`` (m, k).

    A column whose null has no spread (an update of zeros) gives 0 for every target.
    """
    mean, sd = null.mean(axis=0), null.std(axis=0)
    safe = np.where(sd > 0, sd, 1.0)
    return np.where(sd > 0, (stats - mean) / safe, 0.0)
