"""Split a cohort across clients: IID, disjoint, each client's rows split train/test by label."""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from fedgen.core.errors import ConfigError
from fedgen.core.records import ClientSplit, Split


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
    if num_clients < 1:
        raise ConfigError(f"federation.num_clients={num_clients} must be at least 1")
    if not 0.0 < test_fraction < 1.0:
        raise ConfigError(f"federation.test_fraction={test_fraction} must be in (0, 1)")
    order = rng.permutation(n)
    clients = []
    for part in np.array_split(order, num_clients):
        train_parts, test_parts = [], []
        for cls in (0, 1):
            rows = part[labels[part] == cls]
            n_test = round(test_fraction * rows.size)
            if n_test == 0 or n_test == rows.size:
                raise ConfigError(
                    f"federation.num_clients={num_clients} is too large for a cohort of {n} "
                    f"individuals: a client would get {rows.size} individuals with label {cls}, "
                    f"too few to split {1 - test_fraction:.0%}/{test_fraction:.0%} into train and "
                    "test rows of both labels; lower federation.num_clients or use a larger cohort"
                )
            test_parts.append(rows[:n_test])
            train_parts.append(rows[n_test:])
        train = rng.permutation(np.concatenate(train_parts)).astype(np.int64)
        test = rng.permutation(np.concatenate(test_parts)).astype(np.int64)
        clients.append(ClientSplit(train=train, test=test))
    return Split(clients=tuple(clients))
