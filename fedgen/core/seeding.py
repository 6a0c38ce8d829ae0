"""One seed, many independent named streams: cohort, partition and each client get their own."""

import zlib

import numpy as np


def _sequence(seed: int, name: str) -> np.random.SeedSequence:
    # A name's CRC is a stable spawn key: the same (seed, name) gives the same stream on every
    # platform and Python version, and adding a new stream never shifts an existing one.
    return np.random.SeedSequence(seed, spawn_key=(zlib.crc32(name.encode()),))


def child_rng(seed: int, name: str) -> np.random.Generator:
    """Return the generator for the stream ``name`` under ``seed``."""
    return np.random.default_rng(_sequence(seed, name))


def child_seed(seed: int, name: str) -> int:
    """Return a 31-bit integer seed (for scikit-learn's ``random_state``) for stream ``name``."""
    return int(_sequence(seed, name).generate_state(1)[0] >> 1)
