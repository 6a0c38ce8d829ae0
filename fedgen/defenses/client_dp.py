"""Local (client-side) DP: each client clips its update and adds Gaussian noise before sending."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
from flwr.app import Context, Message
from numpy.typing import NDArray

from fedgen.core.errors import ConfigError
from fedgen.defenses.accounting import ACCOUNTANT, gaussian_epsilon
from fedgen.defenses.base import BaseDefense, PrivacyAccount, TrainingShape, defense_rng
from fedgen.defenses.clip import check_clip_norm, clip_update
from fedgen.defenses.update import config_number, update_mod


class ClientDP(BaseDefense):
    """Client-level local DP: the Gaussian mechanism on each client's update, on the client.

    Protects against: the **server** (and everyone downstream: peers, the public) learning
    whether a hospital's data took part, or anything about it, from the updates. The noise is
    added before the update leaves the client, so the server never receives a clean update:
    fedgen's record, and every attack reading it (any observer), sees only
    noised updates. The price is noise on every client's update rather than on the aggregate
    (``sqrt(m)`` times more noise on the average of ``m`` clients than central DP at the same
    per-client guarantee).

    Mechanism (the Gaussian mechanism, Dwork & Roth 2014, Thm A.1; per-update clipping as in
    McMahan et al. 2018, arXiv:1710.06963): with ``Delta = theta_k - theta`` the client's update
    flattened over every named array (d coordinates), the client sends::

        theta + Delta min(1, C / ||Delta||_2) + N(0, (sigma C)^2 I_d)

    This is Flower's ``LocalDpMod`` with two differences: the noise comes from the named stream
    ``defense/<name>/client/<pid>/round/<r>`` of the experiment's seed
    (:func:`~fedgen.defenses.defense_rng`), never from the global ``np.random``, so reruns and
    backends give the same bits; and it is parametrised by a noise multiplier ``sigma`` and
    accounted over all rounds with dp-accounting, rather than calibrated per round with the
    classic ``sqrt(2 ln(1.25/delta)) / epsilon`` (valid only for epsilon < 1, and loose).
    With ``noise_multiplier=0`` it is :class:`~fedgen.defenses.Clip` (and, with
    ``clip_norm=inf`` too, the identity bit for bit).

    Parameters
    ----------
    name : str
        The defense's key in the ``defense`` group.
    clip_norm : float > 0
        ``C``, the L2 bound of each update (the mechanism's sensitivity). ``inf`` only with
        ``noise_multiplier=0``.
    noise_multiplier : float >= 0
        ``sigma``: the noise std per coordinate is ``sigma C``. 0 adds no noise (epsilon inf).
    delta : float in (0, 1)
        The delta epsilon is reported at.

    Raises
    ------
    ConfigError
        On any invalid value, naming ``defense.<name>.<key>`` and the fix.
    """

    def __init__(
        self,
        name: str = "client_dp",
        clip_norm: float = 1.0,
        noise_multiplier: float = 1.0,
        delta: float = 1e-5,
    ) -> None:
        super().__init__(name)
        self.clip_norm = check_clip_norm(name, clip_norm)
        self.noise_multiplier = config_number(
            name,
            "noise_multiplier",
            noise_multiplier,
            lambda s: math.isfinite(s) and s >= 0,
            "a finite number >= 0, the noise std in units of clip_norm (e.g. 1.0; 0: no noise)",
        )
        self.delta = config_number(
            name, "delta", delta, lambda d: 0 < d < 1, "in (0, 1) (e.g. 1e-5, below 1/clients)"
        )
        if self.noise_multiplier > 0 and math.isinf(self.clip_norm):
            raise ConfigError(
                f"defense.{name}.clip_norm=inf with noise_multiplier={noise_multiplier!r}: the "
                f"noise std sigma*C would be infinite; set defense.{name}.clip_norm to a finite "
                "bound (e.g. 1.0)"
            )

    def client_mods(self, seed: int) -> Sequence[Any]:
        clip_norm, sigma, name = self.clip_norm, self.noise_multiplier, self.name

        def gaussian(
            sent: NDArray[np.float64], got: NDArray[np.float64], msg: Message, context: Context
        ) -> NDArray[np.float64] | None:
            delta = got - sent
            clipped = clip_update(delta, clip_norm)
            if sigma == 0:
                return None if clipped is delta else sent + clipped
            noise = defense_rng(seed, name, msg, context).standard_normal(delta.shape)
            return sent + clipped + sigma * clip_norm * noise

        return [update_mod(gaussian)]

    def account(self, shape: TrainingShape) -> PrivacyAccount:
        """Client-level (epsilon, delta) against everyone who sees any client's updates.

        Each round is one Gaussian mechanism of sensitivity ``C`` (a hospital's data present
        vs absent, i.e. its update replaced by zero: add/remove adjacency) and noise multiplier
        ``sigma``; a hospital's ``num_rounds`` updates compose adaptively. Every client takes
        part in every round, so there is no amplification by sampling, and each hospital's
        guarantee holds whatever the others send.
        """
        sigma, rounds = self.noise_multiplier, shape.num_rounds
        return PrivacyAccount(
            epsilon=gaussian_epsilon(sigma, rounds, self.delta),
            delta=self.delta,
            unit="client",
            accountant=ACCOUNTANT,
            assumptions=(
                f"local Gaussian mechanism on each client's update, noise multiplier {sigma:g} "
                f"(std sigma*C per coordinate, C={self.clip_norm:g}), composed over "
                f"{rounds} rounds; every client in every round (no sampling amplification); "
                "add/remove adjacency of one client (its update vs none); replacing one "
                "client's data doubles the sensitivity to 2C, the guarantee of sigma/2"
            ),
        )
