"""Membership and client attribution from the alignment of loss gradients with model updates."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from fedgen.attacks.base import Arena, Observation, check_threshold
from fedgen.attacks.genotypes import Features, GenotypeRows
from fedgen.attacks.observers import TrainingView, check_observer, observe_training
from fedgen.attacks.signals import update_alignments
from fedgen.core.errors import ConfigError
from fedgen.core.records import AttackResult, Estimate
from fedgen.core.seeding import child_rng
from fedgen.models import Model


@dataclass(frozen=True)
class AlignmentView:
    """What the alignment attacker holds: the observer's record, candidates and participants.

    Attributes
    ----------
    training : TrainingView
        The observer's view of every round (:func:`observe_training`).
    model : Model
        The model's interface (architecture and training settings, which the server knows).
    records : GenotypeRows, shape (n, p)
        The candidates' genotypes (int8 rows of the cohort).
    labels : ndarray of int8, shape (n,)
        The candidates' phenotypes.
    clients : ndarray of int64, shape (n,)
        The client each candidate is asked about.
    participant_records : GenotypeRows, shape (m, p)
        Individuals the attacker knows took part in training, but not at which client (for
        client attribution; server only, else empty).
    participant_labels : ndarray of int8, shape (m,)
    seed : int
        The experiment's seed, for the attack's own random stream (ties between clients).
    offset : ndarray of float64, shape (p,), or None
        The genotype means ``2 f`` that gradients are centred by (linear models with
        ``center``), else None.
    """

    training: TrainingView
    model: Model
    records: GenotypeRows
    labels: NDArray[np.int8]
    clients: NDArray[np.int64]
    participant_records: GenotypeRows
    participant_labels: NDArray[np.int8]
    seed: int
    offset: NDArray[np.float64] | None = None


class AlignmentMIA:
    """Gradient-update alignment membership inference, and client attribution (Nasr et al. 2019).

    Threat model (white-box federated attacker, Nasr, Shokri & Houmansadr 2019, "Comprehensive
    privacy analysis of deep learning", S&P): the honest-but-curious FedAvg ``server`` sees
    every round's starting global model and every client's returned model, so each client's
    update ``u_{c,r}``; a ``peer`` sees only the global models, so the global update ``u_r``
    of every round. Either holds the candidate records with their labels. Under secure
    aggregation the server's view stands the aggregate in for every client
    (:func:`observe_training`), and the attack then supports no more than the aggregate does.

    Statistic: a client's SGD moves the model against the loss gradients of its rows, so a
    member's negative gradient at the round's starting model is aligned with its client's
    update. Per round ``r``, candidate ``i`` asked about client ``c``: ``cos(-g_r(i), u_{c,r})``
    with ``g_r(i)`` the log-loss gradient at ``round_start(r)`` with respect to every
    parameter; combined as the sum over rounds (``ranks``; ``per_round`` holds each round's
    cosine). Computed as ``(2 y - 1) cos(grad z, u)`` (exact: ``-g`` is a positive or negative
    multiple of the logit's gradient), so it stays exact on saturated models where ``g``
    rounds to 0. ``scores = (1 + mean cosine) / 2`` in [0, 1]; member if at least the threshold.

    Centring (``center``, linear models): with raw 0/1/2 genotypes every row's gradient shares
    the mean genotype and every update carries the mean genotype times its summed residuals, a
    common direction that swamps the per-individual signal. With ``center`` the cosine is taken
    in the coordinates of the same model with centred features: ``z = w . (x - 2 f) + b'``,
    ``b' = b + 2 f . w`` (the intercept absorbs the shift), where the logit's gradient is
    ``[x - 2 f, 1]``. An update, a sum of such gradient steps, is mapped like a gradient:
    ``(dw, db) -> (dw - 2 f db, db)`` (:func:`centred_updates`), which removes exactly the
    shared part ``2 f db``. ``f`` is the allele frequency per SNP (mean genotype / 2) of the
    reference individuals (``cohort.reference``) when the cohort has them, else of the
    candidates' own genotypes, which the attacker holds. Non-linear models have no such
    reparametrisation: there ``center`` has no effect.

    Client attribution (server only): for each known participant (the pool's members; the
    attacker knows that they took part, not where), the predicted client is the argmax over
    clients of its alignment with that client's updates, each round's cosines standardised per
    client among the participants of the same label before summing over rounds (raw cosines
    carry a per-client, per-label offset that would send every case to one client; see
    :func:`standardised_sum`). Ties are broken uniformly at random from the stream
    ``attack/<name>/ties``, so when every client's update is the same aggregate the guess is
    chance. Reported as the estimate ``client`` (accuracy vs 1/K).

    Assumptions: a binary model with the log loss (any model of :mod:`fedgen.models`); local
    training of one or a few epochs, so an update is dominated by gradients near the round's
    starting model; updates as the model's parameter vector (``flatten``); with ``center``, a
    reference panel (or the candidates) from the training population for the allele means.

    Parameters
    ----------
    name : str
        The attack's key in the ``attack`` config group, used in metric names.
    observer : {"server", "peer"}
        Who attacks: ``server`` (client updates) or ``peer`` (global updates).
    threshold : float in [0, 1]
        Member if ``(1 + mean cosine) / 2`` is at least this.
    center : bool
        Take the cosines in centred-genotype coordinates (linear models only; no effect on
        others).
    """

    kind = "membership"
    observers = ("server", "peer")

    def __init__(
        self,
        name: str = "alignment",
        observer: str = "server",
        threshold: float = 0.5,
        center: bool = True,
    ):
        self.name = name
        self.observer = check_observer(name, observer, self.observers)
        self.threshold = check_threshold(name, threshold)
        if not isinstance(center, bool):
            raise ConfigError(f"attack.{name}.center={center!r} must be true or false")
        self.center = center

    def observe(self, arena: Arena) -> Observation[AlignmentView]:
        """Candidates (the pool) and, for the server, the pool's members as participants."""
        pool, genotypes, labels = arena.pool, arena.cohort.genotypes, arena.cohort.labels
        training = observe_training(arena.server, self.observer)
        attribute = training.num_clients > 0 and bool(pool.is_member.any())
        members = pool.rows[pool.is_member] if attribute else pool.rows[:0]
        offset = None
        if self.center and arena.model.linear:
            source = arena.cohort.reference
            panel = source.genotypes if source is not None else genotypes[pool.rows]
            offset = panel.mean(axis=0, dtype=np.float64)
        view = AlignmentView(
            training=training,
            model=arena.model,
            records=GenotypeRows(genotypes, pool.rows),
            labels=labels[pool.rows],
            clients=pool.client,
            participant_records=GenotypeRows(genotypes, members),
            participant_labels=labels[members],
            seed=arena.seed,
            offset=offset,
        )
        facts, baselines = {}, {}
        if attribute:
            facts["client"] = pool.client[pool.is_member].astype(np.float64)
            baselines["client"] = np.array([1.0 / training.num_clients])
        return Observation(view, pool.is_member, pool.client, facts, baselines)

    def run(self, view: AlignmentView) -> AttackResult:
        """Each candidate's alignment with its client's updates; each participant's client."""
        rounds = alignments(view.training, view.model, view.records, view.labels, view.offset)
        column = view.clients if view.training.num_clients else np.zeros_like(view.clients)
        rows = np.arange(view.records.shape[0])
        per_round = tuple(np.ascontiguousarray(a[rows, column]) for a in rounds)
        total = np.sum(per_round, axis=0)
        scores = np.clip((1.0 + total / len(per_round)) / 2.0, 0.0, 1.0)
        estimates = {}
        if view.participant_records.shape[0]:
            per_client = alignments(
                view.training,
                view.model,
                view.participant_records,
                view.participant_labels,
                view.offset,
            )
            combined = standardised_sum(per_client, view.participant_labels)
            rng = child_rng(view.seed, f"attack/{self.name}/ties")
            estimates["client"] = Estimate(argmax_random_ties(combined, rng), "category")
        return AttackResult(
            self.name,
            np.asarray(scores, np.float64),
            True,
            ranks=np.asarray(total, np.float64),
            per_round=per_round,
            estimates=estimates,
        )


def alignments(
    training: TrainingView,
    model: Model,
    X: Features,
    y: NDArray[np.integer],
    offset: NDArray[np.float64] | None = None,
) -> list[NDArray[np.float64]]:
    """Per round, each row's ``cos(-g, u)`` with each update the observer saw.

    Parameters
    ----------
    training : TrainingView
    model : Model
    X : GenotypeRows or ndarray of float, shape (n, p)
    y : ndarray of int, shape (n,), values 0/1
    offset : ndarray of float64, shape (p,), or None
        For a linear model, the feature means to centre by: rows, starting models and updates
        are read in centred coordinates (:func:`centred_updates`). None: the model's own
        coordinates.

    Returns
    -------
    list of ndarray of float64, shape (n, K) each
        One per round; columns are the clients' updates (server, by partition id) or the one
        global update (peer, K = 1). Gradients are taken at the round's starting model.
    """
    rows: Features = X
    if offset is not None:
        rows = X.centred(offset) if isinstance(X, GenotypeRows) else X - offset
    out = []
    for r in range(1, training.num_rounds + 1):
        if training.num_clients:
            updates = training.client_updates(r)
        else:
            updates = training.global_update(r)[None, :]
        start = training.round_start(r)
        if offset is not None:
            start = {
                "coef": start["coef"],
                "intercept": start["intercept"] + start["coef"] @ offset,
            }
            updates = centred_updates(updates, offset)
        out.append(update_alignments(model, start, rows, y, updates))
    return out


def centred_updates(
    updates: NDArray[np.float64], offset: NDArray[np.float64]
) -> NDArray[np.float64]:
    """Linear-model updates as the same gradient steps in centred coordinates, (K, p + 1).

    A client's update is (to first order) ``-eta`` times a sum of its rows' loss gradients
    ``r [x, 1]``; in the coordinates of the centred model (``z = w . (x - offset) + b'``,
    ``b' = b + offset . w``) each of those gradients reads ``r [x - offset, 1]``, i.e.
    ``g_w - offset g_b`` and ``g_b``. The update is mapped the same way, ``(dw, db) ->
    (dw - offset db, db)`` (``flatten`` order: coef then intercept), so that gradient and
    update are compared in the same coordinates. Mapping it instead as a parameter
    displacement, ``(dw, db + offset . dw)``, would leave every inner product ``g . u``
    unchanged (only the norms would move) and keep the direction every update shares.
    Equal updates stay bit-equal.

    Parameters
    ----------
    updates : ndarray of float64, shape (K, p + 1)
    offset : ndarray of float64, shape (p,)
    """
    out = np.array(updates, np.float64)
    out[:, :-1] -= out[:, -1:] * offset
    return out


def standardised_sum(
    rounds: list[NDArray[np.float64]], labels: NDArray[np.integer]
) -> NDArray[np.float64]:
    """Sum over rounds of each client column's z-scores among rows of the same label, (m, K).

    A client's cosines share an offset and a spread that depend on its update and on the
    label (``cos(-g, u)`` flips sign with ``y``; unstandardised genotypes share a mean
    direction), which would make one client win every row of a label. Standardising each
    column per round and label asks instead which client's update a row is unusually aligned
    with. Equal columns stay bit-equal (a column with no spread is only centred).
    """
    total = np.zeros_like(rounds[0])
    for a in rounds:
        for label in np.unique(labels):
            rows = labels == label
            part = a[rows]
            spread = part.std(axis=0)
            total[rows] += (part - part.mean(axis=0)) / np.where(spread > 0, spread, 1.0)
    return total


def argmax_random_ties(
    values: NDArray[np.float64], rng: np.random.Generator
) -> NDArray[np.float64]:
    """Each row's argmax column, a uniform choice among exactly tied maxima, float64 (m,)."""
    best = values == values.max(axis=1, keepdims=True)
    draws = np.where(best, rng.random(values.shape), -1.0)
    return np.asarray(np.argmax(draws, axis=1), np.float64)
