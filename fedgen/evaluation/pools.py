"""Evaluation pools: which individuals an attack is tested on, and which of them are members."""

from __future__ import annotations

from typing import Protocol

import numpy as np
from numpy.typing import NDArray

from fedgen.core.errors import ConfigError
from fedgen.core.records import Pool, Split


class _PoolSettings:
    """What every evaluation keeps: the bootstrap resamples for its 95% intervals.

    Parameters
    ----------
    n_bootstrap : int
        Bootstrap resamples for the confidence intervals of AUC and F1 (0 turns them off).
    """

    def __init__(self, n_bootstrap: int = 200) -> None:
        if isinstance(n_bootstrap, bool) or not isinstance(n_bootstrap, int) or n_bootstrap < 0:
            raise ConfigError(
                f"evaluation.n_bootstrap={n_bootstrap!r} must be a non-negative integer"
            )
        self.n_bootstrap = n_bootstrap


class PaperPool(_PoolSettings):
    """The study's protocol: each client's train rows are members, its test rows non-members.

    Pooled over clients, the pool is as imbalanced as the local split (80:20 by default), so an
    attack with no signal at all has precision equal to the member share (0.80).
    """

    name = "paper"

    def pool(self, split: Split, rng: np.random.Generator) -> Pool:
        """Every client's train rows (members) and test rows (non-members); ``rng`` is unused."""
        del rng
        return _pool([(c.train, c.test) for c in split.clients])


class BalancedPool(_PoolSettings):
    """Equal members and non-members: each client's members are subsampled to its test size.

    On a balanced pool an attack with no signal has precision 0.5, so precision, accuracy and
    F1 read the way readers expect.
    """

    name = "balanced"

    def pool(self, split: Split, rng: np.random.Generator) -> Pool:
        """Per client: uniform samples of its train and test rows, as many as the smaller."""
        pairs = []
        for c in split.clients:
            keep = min(c.train.size, c.test.size)
            pairs.append(
                (
                    np.sort(rng.choice(c.train, size=keep, replace=False)),
                    np.sort(rng.choice(c.test, size=keep, replace=False)),
                )
            )
        return _pool(pairs)


def _pool(pairs: list[tuple[NDArray[np.int64], NDArray[np.int64]]]) -> Pool:
    rows: list[NDArray[np.int64]] = []
    member: list[NDArray[np.bool_]] = []
    client: list[NDArray[np.int64]] = []
    for cid, (members, non_members) in enumerate(pairs):
        rows += [members, non_members]
        member += [np.ones(members.size, bool), np.zeros(non_members.size, bool)]
        client.append(np.full(members.size + non_members.size, cid, np.int64))
    return Pool(
        rows=np.concatenate(rows).astype(np.int64),
        is_member=np.concatenate(member),
        client=np.concatenate(client),
    )


class Evaluation(Protocol):
    """How the evaluation pool is drawn from the split (the ``evaluation`` config group)."""

    name: str
    n_bootstrap: int

    def pool(self, split: Split, rng: np.random.Generator) -> Pool:
        """Candidates with their membership and client."""
        ...
