"""Non-IID partitions: label skew, quantity skew and ancestry silos across hospitals.

Each partition first deals every individual to a client (its own rule), then gives every client
at least :func:`~fedgen.data.partition.min_rows_per_label` individuals of each label (moving the
missing few from the client holding most of that label), then splits each client train/test
stratified by label exactly as the IID split does. So every client has both labels in its
train and in its test rows, whatever the skew: local training, per-client test metrics and
per-client attack metrics are all defined.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from fedgen.core.errors import ConfigError
from fedgen.core.records import Cohort, Split
from fedgen.data.partition import check_split_settings, min_rows_per_label, split_client

ANCESTRY = "ancestry_group"


@dataclass(frozen=True)
class DirichletLabelPartition:
    """Label skew: each label's individuals are dealt to clients in Dirichlet(alpha) shares.

    For each label, shares ``p ~ Dir(alpha, ..., alpha)`` over the clients and the label's
    individuals cut in those shares (Hsu et al. 2019; Li et al. 2022, NIID-Bench). Small alpha:
    most of a label goes to one or two clients (alpha = 0.1 is strongly skewed); large alpha:
    near IID. Client sizes differ too.

    Parameters
    ----------
    alpha : float
        Dirichlet concentration, > 0.
    """

    alpha: float = 0.5

    def __post_init__(self) -> None:
        _check_positive("partition.alpha", self.alpha)

    def split(
        self, cohort: Cohort, num_clients: int, test_fraction: float, rng: np.random.Generator
    ) -> Split:
        labels = cohort.labels
        check_split_settings(num_clients, test_fraction)
        client_of = np.empty(labels.shape[0], np.int64)
        for cls in (0, 1):
            rows = rng.permutation(np.flatnonzero(labels == cls))
            shares = rng.dirichlet(np.full(num_clients, float(self.alpha)))
            cuts = (np.cumsum(shares) * rows.size).astype(np.int64)[:-1]
            for i, part in enumerate(np.split(rows, cuts)):
                client_of[part] = i
        return _finish(client_of, labels, num_clients, test_fraction, rng)


@dataclass(frozen=True)
class QuantityPartition:
    """Quantity skew: clients of unequal size, each with the cohort's label mix.

    Relative sizes are ``sizes`` if given (normalised: ``[4, 1, 1]`` and ``[0.66, 0.17, 0.17]``
    are alike), else drawn from Dirichlet(alpha). Each label is dealt in those shares (largest
    remainder), so every client's case share is the cohort's up to a row per label.

    Parameters
    ----------
    alpha : float
        Dirichlet concentration of the sizes when ``sizes`` is None, > 0.
    sizes : sequence of float or None
        One positive relative size per client (``federation.num_clients`` of them).
    """

    alpha: float = 1.0
    sizes: Sequence[float] | None = None

    def __post_init__(self) -> None:
        _check_positive("partition.alpha", self.alpha)
        if self.sizes is not None:
            sizes = tuple(self.sizes)
            if not sizes or not all(_positive(s) for s in sizes):
                raise ConfigError(
                    f"partition.sizes={list(sizes)!r} must be a list of positive numbers, one "
                    "relative size per client, e.g. partition.sizes=[4,1,1,1,1]"
                )
            object.__setattr__(self, "sizes", tuple(float(s) for s in sizes))

    def split(
        self, cohort: Cohort, num_clients: int, test_fraction: float, rng: np.random.Generator
    ) -> Split:
        labels = cohort.labels
        check_split_settings(num_clients, test_fraction)
        if self.sizes is None:
            weights = rng.dirichlet(np.full(num_clients, float(self.alpha)))
        elif len(self.sizes) != num_clients:
            raise ConfigError(
                f"partition.sizes has {len(self.sizes)} entries but federation.num_clients="
                f"{num_clients}; give one relative size per client"
            )
        else:
            weights = np.asarray(self.sizes, np.float64) / math.fsum(self.sizes)
        client_of = np.empty(labels.shape[0], np.int64)
        for cls in (0, 1):
            rows = rng.permutation(np.flatnonzero(labels == cls))
            counts = largest_remainder(weights, rows.size)
            for i, part in enumerate(np.split(rows, np.cumsum(counts)[:-1])):
                client_of[part] = i
        return _finish(client_of, labels, num_clients, test_fraction, rng)


@dataclass(frozen=True)
class AncestryPartition:
    """Ancestry silos: each hospital draws its patients mainly from one ancestry group.

    Client ``i``'s home group is ``i mod G`` (G groups); with fewer clients than groups, group
    ``g`` is at home at client ``g mod K``. Each individual goes to a home client of its group
    (uniformly among them) with probability ``1 - mixing``, else to a uniformly random client.
    ``mixing=0`` gives pure silos, ``mixing=1`` an IID deal. Needs the cohort's
    ``ancestry_group`` metadata with at least two groups (a synthetic cohort with
    ``dataset.n_ancestry_groups`` > 1; ``dataset.fst`` sets how much the groups differ).

    Parameters
    ----------
    mixing : float
        Share of individuals dealt to a random client instead of a home one, in [0, 1].
    """

    mixing: float = 0.1

    def __post_init__(self) -> None:
        m = self.mixing
        if isinstance(m, bool) or not isinstance(m, int | float) or not 0.0 <= m <= 1.0:
            raise ConfigError(f"partition.mixing={m!r} must be a number in [0, 1]")

    def check_source(self, dataset: object) -> None:
        """Fail before any work when a synthetic source will have a single ancestry group."""
        groups = getattr(dataset, "n_ancestry_groups", None)
        if isinstance(groups, int) and groups < 2:
            raise _no_groups(f"dataset.n_ancestry_groups={groups}")

    def split(
        self, cohort: Cohort, num_clients: int, test_fraction: float, rng: np.random.Generator
    ) -> Split:
        labels = cohort.labels
        check_split_settings(num_clients, test_fraction)
        raw = cohort.metadata.get(ANCESTRY)
        if raw is None:
            raise _no_groups("the cohort has no ancestry_group metadata")
        names, groups = np.unique(np.asarray(raw), return_inverse=True)
        if names.size < 2:
            raise _no_groups(f"the cohort has {names.size} ancestry group")
        chance = home_weights(names.size, num_clients, float(self.mixing))
        client_of = np.empty(labels.shape[0], np.int64)
        for g in range(names.size):
            rows = np.flatnonzero(groups == g)
            client_of[rows] = rng.choice(num_clients, size=rows.size, p=chance[g])
        return _finish(client_of, labels, num_clients, test_fraction, rng)


def home_weights(n_groups: int, num_clients: int, mixing: float) -> NDArray[np.float64]:
    """Probability that an individual of each group goes to each client, shape (G, K)."""
    home = np.zeros((n_groups, num_clients))
    for g in range(n_groups):
        if num_clients >= n_groups:
            home[g, g::n_groups] = 1.0
        else:
            home[g, g % num_clients] = 1.0
    home /= home.sum(axis=1, keepdims=True)
    weights: NDArray[np.float64] = (1.0 - mixing) * home + mixing / num_clients
    return weights


def largest_remainder(weights: NDArray[np.float64], total: int) -> NDArray[np.int64]:
    """Integer counts summing to ``total``, each the floor of its share or one more, shape (K,)."""
    exact = weights * total
    counts = np.floor(exact).astype(np.int64)
    short = total - int(counts.sum())
    counts[np.argsort(-(exact - counts), kind="stable")[:short]] += 1
    return counts


def _finish(
    client_of: NDArray[np.int64],
    labels: NDArray[np.integer],
    num_clients: int,
    test_fraction: float,
    rng: np.random.Generator,
) -> Split:
    """Top up every client to the per-label floor, then split each one train/test."""
    floor = min_rows_per_label(test_fraction)
    for cls in (0, 1):
        of_cls = np.flatnonzero(labels == cls)
        if of_cls.size < floor * num_clients:
            raise ConfigError(
                f"federation.num_clients={num_clients} is too large for a cohort with "
                f"{of_cls.size} individuals of label {cls}: every client needs at least {floor} "
                f"of each label to split {1 - test_fraction:.0%}/{test_fraction:.0%} into "
                "train and test rows of both labels; lower federation.num_clients or use a "
                "larger cohort"
            )
        _top_up(client_of, of_cls, num_clients, floor, rng)
    clients = []
    for i in range(num_clients):
        rows = rng.permutation(np.flatnonzero(client_of == i))
        client = split_client(rows, labels, test_fraction, rng)
        assert client is not None  # every client holds >= floor rows of each label
        clients.append(client)
    return Split(clients=tuple(clients))


def _top_up(
    client_of: NDArray[np.int64],
    rows: NDArray[np.intp],
    num_clients: int,
    floor: int,
    rng: np.random.Generator,
) -> None:
    """Move rows (of one label) so that every client holds at least ``floor`` of them.

    Each short client takes what it lacks from the client that holds the most, at random.
    Needs ``rows.size >= floor * num_clients``; then that holder has more than ``floor``.
    """
    for i in range(num_clients):
        while (have := int(np.count_nonzero(client_of[rows] == i))) < floor:
            counts = np.bincount(client_of[rows], minlength=num_clients)
            donor = int(np.argmax(counts))
            give = min(floor - have, int(counts[donor]) - floor)
            held = rows[client_of[rows] == donor]
            client_of[rng.choice(held, size=give, replace=False)] = i


def _positive(value: object) -> bool:
    return (
        not isinstance(value, bool)
        and isinstance(value, int | float)
        and math.isfinite(value)
        and value > 0
    )


def _check_positive(key: str, value: object) -> None:
    if not _positive(value):
        raise ConfigError(f"{key}={value!r} must be a positive number (e.g. {key}=0.5)")


def _no_groups(why: str) -> ConfigError:
    return ConfigError(
        f"partition=ancestry needs at least two ancestry groups, but {why}; use a synthetic "
        "cohort with dataset.n_ancestry_groups=3 (or more), and dataset.fst>0 for groups that "
        "differ, or choose another partition (partition=dirichlet)"
    )
