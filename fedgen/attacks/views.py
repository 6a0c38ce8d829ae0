"""What each threat model lets an honest-but-curious FedAvg server see (built from the arena)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from fedgen.attacks.base import Arena, Observation
from fedgen.attacks.genotypes import GenotypeRows
from fedgen.attacks.signals import per_sample_gradients
from fedgen.core.errors import ConfigError
from fedgen.core.records import FederationResult
from fedgen.core.seeding import child_rng
from fedgen.models import Model


@dataclass(frozen=True)
class MembershipView:
    """Membership inference: the server's record and candidate records, membership hidden.

    Attributes
    ----------
    server : FederationResult
        Every global model, each client's returned models and sample counts, per round.
    model : Model
        The model's interface (architecture and training settings, which the server knows).
    records : GenotypeRows, shape (n, p)
        The candidates' genotypes (the attacker holds the records it asks about), int8 rows of
        the cohort, cast to float64 chunk by chunk where a signal reads them.
    labels : ndarray of int8, shape (n,)
        The candidates' phenotypes.
    clients : ndarray of int64, shape (n,)
        The client each candidate is asked about ("was this person at hospital c?").
    """

    server: FederationResult
    model: Model
    records: GenotypeRows
    labels: NDArray[np.int8]
    clients: NDArray[np.int64]


@dataclass(frozen=True)
class LabelView:
    """Label inference: targets' single-sample gradients, labels hidden; auxiliary known labels.

    Attributes
    ----------
    server : FederationResult
    model : Model
    observed : ndarray of float64, shape (n, p + 1)
        Each target's log-loss gradient on the final global model (what a client returns for a
        batch of one record), intercept component last.
    aux_records : GenotypeRows, shape (m, p)
        Records whose labels the attacker knows, disjoint from the targets (int8 rows).
    aux_labels : ndarray of int8, shape (m,)
    """

    server: FederationResult
    model: Model
    observed: NDArray[np.float64]
    aux_records: GenotypeRows
    aux_labels: NDArray[np.int8]


def membership_view(arena: Arena) -> Observation[MembershipView]:
    """Candidates are the evaluation pool; the truth is their membership."""
    pool = arena.pool
    view = MembershipView(
        server=arena.server,
        model=arena.model,
        records=GenotypeRows(arena.cohort.genotypes, pool.rows),
        labels=arena.cohort.labels[pool.rows],
        clients=pool.client,
    )
    return Observation(view=view, truth=pool.is_member, clients=pool.client)


def label_view(arena: Arena, aux_fraction: float, stream: str) -> Observation[LabelView]:
    """Split the pool at random into auxiliary records and targets; the truth is target label 1.

    Parameters
    ----------
    aux_fraction : float in (0, 1)
        Share of the pool whose labels the attacker knows.
    stream : str
        Name of the seed's child stream that draws the split.
    """
    pool, cohort = arena.pool, arena.cohort
    order = child_rng(arena.seed, stream).permutation(pool.size)
    n_aux = round(aux_fraction * pool.size)
    aux, targets = np.sort(order[:n_aux]), np.sort(order[n_aux:])
    aux_labels = cohort.labels[pool.rows[aux]]
    if targets.size == 0 or np.unique(aux_labels).size < 2:
        raise ConfigError(
            f"label inference needs auxiliary records of both labels and at least one target; "
            f"aux_fraction={aux_fraction} of a pool of {pool.size} gives {n_aux} auxiliary "
            f"records ({np.unique(aux_labels).size} label(s)) and {targets.size} targets: use "
            "a larger cohort or another aux_fraction"
        )
    rows = pool.rows[targets]
    labels = cohort.labels[rows]
    view = LabelView(
        server=arena.server,
        model=arena.model,
        observed=per_sample_gradients(
            arena.model, arena.server.final_params, GenotypeRows(cohort.genotypes, rows), labels
        ),
        aux_records=GenotypeRows(cohort.genotypes, pool.rows[aux]),
        aux_labels=aux_labels,
    )
    return Observation(view=view, truth=labels == 1, clients=pool.client[targets])
