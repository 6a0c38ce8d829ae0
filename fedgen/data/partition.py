"""Split a cohort across clients: IID, disjoint, each client's rows split train/test by label."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np
from numpy.typing import NDArray

from fedgen.core.errors import ConfigError
from fedgen.core.records import ClientSplit, Cohort, Split


class Partition(Protocol):
    """How a cohort is dealt to clients (the ``partition`` config group)."""

    def split(
        self, cohort: Cohort, num_clients: int, test_fraction: float, rng: np.random.Generator
    ) -> Split:
        """Disjoint clients covering every row, each split train/test stratified by label."""
        ...


@dataclass(frozen=True)
class IIDPartition:
    """Clients of equal size (+-1) and equal label mix: today's default, the study's split."""

    def split(
        self, cohort: Cohort, num_clients: int, test_fraction: float, rng: np.random.Generator
    ) -> Split:
        """:func:`partition` of the cohort's labels (same code, same draws from ``rng``)."""
        return partition(cohort.labels, num_clients, test_fraction, rng)


def check_split_settings(num_clients: int, test_fraction: float) -> None:
    """Raise ConfigError unless ``num_clients >= 1`` and ``0 < test_fraction < 1``."""
    if num_clients < 1:
        raise ConfigError(f"federation.num_clients={num_clients} must be at least 1")
    if not 0.0 < test_fraction < 1.0:
        raise ConfigError(f"federation.test_fraction={test_fraction} must be in (0, 1)")


def split_client(
    rows: NDArray[np.integer],
    labels: NDArray[np.integer],
    test_fraction: float,
    rng: np.random.Generator,
) -> ClientSplit | None:
    """One client's train/test split, stratified by label, or None if a side would lack a label.

    Parameters
    ----------
    rows : ndarray of int, shape (m,)
        The client's cohort rows, in random order (the first of each label become test rows).
    labels : ndarray of int, shape (n,)
        Binary labels of the whole cohort.
    test_fraction : float
        Share of the client's rows of each label held out as test rows (``round`` per label).
    rng : Generator
        Shuffles the train and the test rows.

    Returns
    -------
    ClientSplit or None
        Shuffled int64 ``train`` and ``test``; None (after no draw from ``rng``) if for some
        label the rounded test count is 0 or all of the client's rows of that label.
    """
    train_parts, test_parts = [], []
    for cls in (0, 1):
        of_cls = rows[labels[rows] == cls]
        n_test = round(test_fraction * of_cls.size)
        if n_test == 0 or n_test == of_cls.size:
            return None
        test_parts.append(of_cls[:n_test])
        train_parts.append(of_cls[n_test:])
    train = rng.permutation(np.concatenate(train_parts)).astype(np.int64)
    test = rng.permutation(np.concatenate(test_parts)).astype(np.int64)
    return ClientSplit(train=train, test=test)


def min_rows_per_label(test_fraction: float) -> int:
    """The fewest rows of one label that :func:`split_client` splits into non-empty train and test.

    3 at ``test_fraction`` 0.2 (``round`` is Python's: half to even, so 0.1 needs 6).
    """
    m = 2
    while not 0 < round(test_fraction * m) < m:
        m += 1
    return m


def partition(
    labels: NDArray[np.integer], num_clients: int, test_fraction: float, rng: np.random.Generator
) -> Split:
    """Deal individuals to clients at random and split each client stratified by label.

    Parameters
    ----------
    labels : ndarray of int, shape (n,)
        Binary labels of the cohort.
    num_clients : int
        Number of clients; sizes differ by at most one individual.
    test_fraction : float
        Share of each client's cases, and of its controls, held out as its test rows
        (rounded per class).
    rng : Generator

    Returns
    -------
    Split
        Disjoint train/test index arrays whose union is ``range(n)``, each array shuffled.

    Raises
    ------
    ConfigError
        If a client would get no train or no test row of some class.
    """
    n = int(labels.shape[0])
    check_split_settings(num_clients, test_fraction)
    order = rng.permutation(n)
    clients = []
    for part in np.array_split(order, num_clients):
        client = split_client(part, labels, test_fraction, rng)
        if client is None:
            counts = [int(np.count_nonzero(labels[part] == cls)) for cls in (0, 1)]
            cls = next(c for c in (0, 1) if round(test_fraction * counts[c]) in (0, counts[c]))
            raise ConfigError(
                f"federation.num_clients={num_clients} is too large for a cohort of {n} "
                f"individuals: a client would get {counts[cls]} individuals with label {cls}, "
                f"too few to split {1 - test_fraction:.0%}/{test_fraction:.0%} into train and "
                "test rows of both labels; lower federation.num_clients or use a larger cohort"
            )
        clients.append(client)
    return Split(clients=tuple(clients))
