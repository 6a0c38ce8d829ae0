"""Update sparsification: each client sends only a share k of its update's coordinates."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
from flwr.app import Context, Message
from numpy.typing import NDArray

from fedgen.core.errors import ConfigError
from fedgen.defenses.base import BaseDefense, defense_rng
from fedgen.defenses.update import config_number, update_mod

MODES = ("top", "random")


def kept_count(k: float, d: int) -> int:
    """How many of ``d`` coordinates a fraction ``k`` in (0, 1] keeps: ``ceil(k d)``, >= 1."""
    # Rounded first so that e.g. 0.07 * 100 = 7.000000000000001 keeps 7, not 8.
    return max(1, min(d, math.ceil(round(k * d, 9))))


class Sparsify(BaseDefense):
    """Each client keeps a fraction ``k`` of its update's coordinates and zeroes the rest.

    Protects against: attacks that read the individual updates the **server** receives (and
    the aggregate peers and the public see) by sending less of each: gradient-inversion and
    membership signals spread over all coordinates lose the ones not sent. It is a heuristic
    (Shokri & Shmatikov 2015 share only a fraction of each update; Zhu et al. 2019, "Deep
    leakage from gradients", found pruning 20% or more of the smallest gradient entries defeats
    their inversion) with no
    formal guarantee: :meth:`account` returns None, and top-k reveals which coordinates moved
    most, itself a function of the data.

    Mechanism: with ``Delta = theta_k - theta`` flattened over every named array (d
    coordinates), the client keeps ``n = ceil(k d)`` of them (at least 1) and sends ``theta``
    (``Delta = 0``) everywhere else. ``mode="top"``: the ``n`` largest ``|Delta_i|`` (top-k
    sparsification, Aji & Heafield 2017, arXiv:1704.05021; ties go to the earlier coordinate);
    ``mode="random"``: ``n`` coordinates uniformly without replacement from the stream
    ``defense/<name>/client/<pid>/round/<r>`` of the seed (random-k, Stich et al. 2018). Kept
    values are not rescaled (random-k is then biased by ``n / d``, as top-k is anyway), so
    the server receives exactly the client's value at every kept coordinate. ``k=1`` keeps
    every coordinate: the identity bit for bit.

    Parameters
    ----------
    name : str
        The defense's key in the ``defense`` group.
    k : float in (0, 1]
        The fraction of coordinates each client sends, e.g. 0.1 (a fraction rather than a count,
        so one value means the same for 20 SNPs and for 5,000).
    mode : {"top", "random"}

    Raises
    ------
    ConfigError
        On any invalid value, naming ``defense.<name>.<key>`` and the fix.
    """

    def __init__(self, name: str = "sparsify", k: float = 0.1, mode: str = "top") -> None:
        super().__init__(name)
        self.k = config_number(
            name,
            "k",
            k,
            lambda f: 0 < f <= 1,
            "a fraction in (0, 1], the share of update coordinates each client sends "
            "(e.g. 0.1; 1: all), not a count",
        )
        if mode not in MODES:
            raise ConfigError(
                f"defense.{name}.mode={mode!r} is not valid; choose one of: {', '.join(MODES)}"
            )
        self.mode = mode

    def client_mods(self, seed: int) -> Sequence[Any]:
        k, top, name = self.k, self.mode == "top", self.name

        def sparsify(
            sent: NDArray[np.float64], got: NDArray[np.float64], msg: Message, context: Context
        ) -> NDArray[np.float64] | None:
            d = got.size
            n = kept_count(k, d)
            if n == d:
                return None
            if top:
                kept = np.argsort(-np.abs(got - sent), kind="stable")[:n]
            else:
                kept = defense_rng(seed, name, msg, context).choice(d, size=n, replace=False)
            out = sent.copy()
            out[kept] = got[kept]
            return out

        return [update_mod(sparsify)]
