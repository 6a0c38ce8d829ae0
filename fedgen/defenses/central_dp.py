"""Central (server-side) differential privacy: Flower's DP strategy wrappers, seeded.

What it protects, and from whom
-------------------------------
Client-level DP (McMahan et al. 2018, "Learning differentially private recurrent language
models", arXiv:1710.06963; Geyer et al. 2017, arXiv:1712.07557): each round the server clips
every client's update ``u_k = theta_k - theta`` to L2 norm at most ``C``
(``u_k <- u_k min(1, C / ||u_k||)``), averages them as FedAvg does, and adds Gaussian noise
``N(0, (z C / m)^2 I)`` to the average (``z`` the noise multiplier, ``m`` the number of clients).
The released global models therefore hide whether any one hospital took part.

**The server adds the noise itself.** The honest-but-curious server's own view -- the client
updates it received, which fedgen records and the ``observer=server`` attacks read -- is *not*
protected: they arrive clean, before clipping and noise. What is protected is everything
released after aggregation: what the other hospitals (peers) and the public see, i.e. the global
models the server sends out (the ``observer=public`` attacks). To protect against the server, the
noise has to be added before an update leaves the client (local DP, DP-SGD) or the server has to
be unable to see individual updates (secure aggregation).

From round 2 on, clients start from the noised global model, so what they send is a clean
function of their data *given* a noisy start. The server still holds each round's clean update
``theta_k - theta_sent``, with no guarantee on it; but attacks that read a client's absolute
model (as fedgen's ``observer=server`` attacks do) also weaken when the noise is large, because
the whole federation then trains from noise. In round 1 the client models are exactly the
undefended ones.

Flower's clipping divides by the update's norm in Python floats: a client that returns exactly
the model it was sent (a zero update) makes the round fail with ``ZeroDivisionError``.

Randomness
----------
Flower's wrappers draw their noise from the global ``np.random``. The subclasses here keep
Flower's clipping, aggregation and adaptive-norm update unchanged and replace only the two noise
draws: the noise on the aggregate of round ``r`` comes from the stream
``defense/<name>/server/round/<r>`` of the experiment's ``seed`` (one ``normal`` draw per array,
in the record's order) and, with adaptive clipping, the noise on the clipped count from
``defense/<name>/server/round/<r>/clipped_count``. Reruns and backends give the same bits and
the global random state is never read.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from flwr.app import Array, ArrayRecord, MetricRecord
from flwr.serverapp.strategy import (
    DifferentialPrivacyServerSideAdaptiveClipping,
    DifferentialPrivacyServerSideFixedClipping,
)
from flwr.serverapp.strategy.dp_fixed_clipping import validate_replies
from flwr.supercore.differential_privacy import compute_adaptive_noise_params, compute_stdv

from fedgen.core.errors import ConfigError
from fedgen.core.seeding import child_rng
from fedgen.defenses.accounting import ACCOUNTANT, gaussian_epsilon
from fedgen.defenses.base import BaseDefense, PrivacyAccount, TrainingShape, check_delta, number

CLIPPING = ("fixed", "adaptive")


def _stdv(noise_multiplier: float, clipping_norm: float, num_clients: int) -> float:
    """Flower's ``z C / m``, but 0 when ``z = 0`` (Flower's gives NaN for ``C = inf``)."""
    return (
        0.0 if noise_multiplier == 0 else compute_stdv(noise_multiplier, clipping_norm, num_clients)
    )


def _add_seeded_noise(arrays: ArrayRecord, stdv: float, rng: np.random.Generator) -> ArrayRecord:
    """``arrays`` plus N(0, stdv^2) noise, one draw per array in the record's order."""
    noisy = {}
    for key, array in arrays.items():
        values = np.asarray(array.numpy())
        noise = rng.normal(0.0, stdv, values.shape).astype(values.dtype)
        noisy[key] = Array(np.asarray(values + noise))
    return ArrayRecord(noisy)


class SeededServerSideFixedClipping(DifferentialPrivacyServerSideFixedClipping):
    """Flower's server-side fixed-clipping wrapper with its noise from a named seed stream.

    Parameters
    ----------
    strategy, noise_multiplier, clipping_norm, num_sampled_clients
        As :class:`flwr.serverapp.strategy.DifferentialPrivacyServerSideFixedClipping`.
    seed : int
        The experiment's seed.
    stream : str
        Stream prefix; round ``r`` draws from ``<stream>/round/<r>``.
    """

    def __init__(
        self,
        strategy: Any,
        noise_multiplier: float,
        clipping_norm: float,
        num_sampled_clients: int,
        *,
        seed: int,
        stream: str,
    ) -> None:
        super().__init__(strategy, noise_multiplier, clipping_norm, num_sampled_clients)
        self.seed, self.stream = seed, stream
        self._round = 0

    def aggregate_train(
        self, server_round: int, replies: Any
    ) -> tuple[ArrayRecord | None, MetricRecord | None]:
        """Flower's clip, aggregate and noise; the round picks the noise stream.

        With ``clipping_norm = inf`` there is nothing to clip, and the replies are aggregated
        as received: Flower would rebuild each as ``theta + (theta_k - theta)``, which is not
        ``theta_k`` in floating point, so sigma = 0 would not be FedAvg bit for bit.
        """
        self._round = server_round
        if not math.isinf(self.clipping_norm):
            return super().aggregate_train(server_round, replies)
        replies_list = list(replies)
        event = self._pop_pending_event(server_round)
        strict = self.accountant is not None
        if not validate_replies(replies_list, self.num_sampled_clients, strict=strict):
            return None, None
        self._validate_uniform_weights(replies_list)
        arrays, metrics = self.strategy.aggregate_train(server_round, replies_list)
        if arrays:
            arrays = self._add_noise_to_aggregated_arrays(arrays)
            self._compose_release(event)
        return arrays, metrics

    def _add_noise_to_aggregated_arrays(self, aggregated_arrays: ArrayRecord) -> ArrayRecord:
        stdv = _stdv(self.noise_multiplier, self.clipping_norm, self.num_sampled_clients)
        rng = child_rng(self.seed, f"{self.stream}/round/{self._round}")
        return _add_seeded_noise(aggregated_arrays, stdv, rng)


class SeededServerSideAdaptiveClipping(DifferentialPrivacyServerSideAdaptiveClipping):
    """Flower's server-side adaptive-clipping wrapper with both noise draws seeded.

    The aggregate's noise comes from ``<stream>/round/<r>``, the clipped count's from
    ``<stream>/round/<r>/clipped_count``; clipping, aggregation and the geometric norm update
    are Flower's. Two corrections to Flower 1.41, both inside the noise steps, restore Andrew
    et al.'s Algorithm: the norm update is fed the *unclipped* share (:meth:`_noisy_fraction`),
    and the aggregate's noise is scaled by the norm the round's updates were clipped to, not
    by the norm already updated for the next round (Flower updates ``C`` before it adds the
    noise, so a shrinking ``C`` would under-noise the round by the factor ``C_{t+1} / C_t``).
    """

    def __init__(
        self,
        strategy: Any,
        noise_multiplier: float,
        num_sampled_clients: int,
        initial_clipping_norm: float,
        target_clipped_quantile: float,
        clip_norm_lr: float,
        clipped_count_stddev: float | None,
        *,
        seed: int,
        stream: str,
    ) -> None:
        super().__init__(
            strategy,
            noise_multiplier,
            num_sampled_clients,
            initial_clipping_norm,
            target_clipped_quantile,
            clip_norm_lr,
            clipped_count_stddev,
        )
        self.seed, self.stream = seed, stream
        self._round = 0
        self._clipped_at = initial_clipping_norm

    def aggregate_train(
        self, server_round: int, replies: Any
    ) -> tuple[ArrayRecord | None, MetricRecord | None]:
        """Flower's clip, count, adapt, aggregate and noise; the round picks the streams."""
        self._round = server_round
        self._clipped_at = self.clipping_norm  # the norm this round's updates are clipped to
        return super().aggregate_train(server_round, list(replies))

    def _add_noise_to_aggregated_arrays(self, aggregated: ArrayRecord) -> ArrayRecord:
        """Noise ``z C_t / m`` with ``C_t`` the norm this round clipped to (Andrew et al.)."""
        stdv = _stdv(self.noise_multiplier, self._clipped_at, self.num_sampled_clients)
        rng = child_rng(self.seed, f"{self.stream}/round/{self._round}")
        return _add_seeded_noise(aggregated, stdv, rng)

    def _noisy_fraction(self, count: int, total: int) -> float:
        """The noised share of *unclipped* updates, ``(total - count + N(0, s^2)) / total``.

        Flower 1.41 passes the number of *clipped* updates here (its norm bit is
        ``scaling_factor < 1``) and then updates ``C <- C exp(-lr (fraction - gamma))``, which
        is Andrew et al.'s rule only if the fraction is the *unclipped* share: with the clipped
        share ``C`` moves the wrong way (shrinking further when most updates are clipped, and
        growing without bound when none are). Returning the unclipped share restores the
        paper's rule; the noise and so the privacy cost are the same (the count has
        sensitivity 1 either way).
        """
        rng = child_rng(self.seed, f"{self.stream}/round/{self._round}/clipped_count")
        return float(rng.normal(total - count, self.clipped_count_stddev)) / float(total)


class CentralDP(BaseDefense):
    """Client-level central DP: the server clips each update and noises the average.

    Protects each hospital's participation (unit ``client``) in the *released* global models
    against peers and the public. It does **not** protect against the server, which receives
    the clean updates before it clips and noises them (see the module docstring).

    Fixed clipping is Flower's ``DifferentialPrivacyServerSideFixedClipping`` (McMahan et al.
    2018): update ``u_k`` clipped to ``C``, noise ``N(0, (z C / m)^2)`` on the mean. Adaptive
    clipping is Flower's ``DifferentialPrivacyServerSideAdaptiveClipping`` (Andrew et al. 2021,
    "Differentially private learning with adaptive clipping", arXiv:1905.03871): ``C`` follows
    the ``target_quantile`` of the update norms, ``C <- C exp(-clip_norm_lr (b - target))`` with
    ``b`` the noised fraction of *unclipped* updates (noise std ``clipped_count_stddev / m``;
    Flower 1.41 feeds the clipped share, which moves ``C`` the wrong way, and noises each round
    at the already-updated ``C``: both are corrected here, see
    :class:`SeededServerSideAdaptiveClipping`), and the update noise multiplier is raised to
    ``(z^-2 - (2 clipped_count_stddev)^-2)^-1/2`` so that both releases together cost what one
    Gaussian mechanism with multiplier ``z`` costs.

    Parameters
    ----------
    name : str
        The defense's key in the ``defense`` config group.
    noise_multiplier : float >= 0
        ``z``; 0 adds no noise (and claims no privacy: epsilon is infinite).
    clipping : {"fixed", "adaptive"}
    clip_norm : float > 0 (inf allowed), optional
        ``C`` for fixed clipping (required); with adaptive clipping, the starting norm if
        ``initial_clip_norm`` is not given.
    initial_clip_norm : float > 0, optional
        Adaptive only: the starting norm (default: ``clip_norm``, else Flower's 0.1).
    target_quantile : float in [0, 1], optional
        Adaptive only: ``gamma``, the quantile of the update norms ``C`` tracks, i.e. the target
        share of *unclipped* updates (Flower's default 0.5).
    clip_norm_lr : float > 0, optional
        Adaptive only: the geometric update's learning rate (Flower's default 0.2).
    clipped_count_stddev : float >= 0, optional
        Adaptive only: noise std of the clipped count (Flower's default ``m / 20``); must exceed
        ``z / 2``.
    delta : float in (0, 1)
        The delta the account reports epsilon at.

    Raises
    ------
    ConfigError
        On any invalid value, naming ``defense.<name>.<key>`` and the fix.
    """

    def __init__(
        self,
        name: str = "central_dp",
        noise_multiplier: float = 1.0,
        clipping: str = "fixed",
        clip_norm: float | None = None,
        initial_clip_norm: float | None = None,
        target_quantile: float | None = None,
        clip_norm_lr: float | None = None,
        clipped_count_stddev: float | None = None,
        delta: float = 1e-5,
    ) -> None:
        super().__init__(name)
        z = number(name, "noise_multiplier", noise_multiplier, "e.g. 1.0")
        if not (math.isfinite(z) and z >= 0):
            raise ConfigError(
                f"defense.{name}.noise_multiplier={noise_multiplier!r} must be finite and >= 0 "
                "(e.g. 1.0; 0 adds no noise)"
            )
        if clipping not in CLIPPING:
            raise ConfigError(
                f"defense.{name}.clipping={clipping!r} must be one of {', '.join(CLIPPING)}"
            )
        if clip_norm is not None:
            c = number(name, "clip_norm", clip_norm, "e.g. 1.0, or .inf for no clipping")
            if not c > 0:
                raise ConfigError(
                    f"defense.{name}.clip_norm={clip_norm!r} must be > 0 (.inf: no clipping)"
                )
        d = check_delta(name, delta)
        self.noise_multiplier = z
        self.clipping = clipping
        self.delta = d
        self.clip_norm = None if clip_norm is None else float(clip_norm)
        adaptive_keys = {
            "initial_clip_norm": initial_clip_norm,
            "target_quantile": target_quantile,
            "clip_norm_lr": clip_norm_lr,
            "clipped_count_stddev": clipped_count_stddev,
        }
        if clipping == "fixed":
            if self.clip_norm is None:
                raise ConfigError(
                    f"defense.{name}.clip_norm is required with clipping=fixed; set it "
                    "(e.g. 1.0, or .inf for no clipping)"
                )
            for key, value in adaptive_keys.items():
                if value is not None:
                    raise ConfigError(
                        f"defense.{name}.{key}={value!r} is used only with clipping=adaptive; "
                        "remove it or set clipping=adaptive"
                    )
            self.initial_clip_norm = self.target_quantile = self.clip_norm_lr = None
            self.clipped_count_stddev = None
            return
        start = initial_clip_norm if initial_clip_norm is not None else self.clip_norm
        start = 0.1 if start is None else start
        c0 = number(name, "initial_clip_norm", start, "e.g. 0.1")
        if not (math.isfinite(c0) and c0 > 0):
            raise ConfigError(
                f"defense.{name}.initial_clip_norm={start!r} must be finite and > 0 (e.g. 0.1)"
            )
        if (
            initial_clip_norm is not None
            and self.clip_norm is not None
            and float(initial_clip_norm) != self.clip_norm
        ):
            raise ConfigError(
                f"defense.{name}.initial_clip_norm={initial_clip_norm!r} contradicts "
                f"clip_norm={clip_norm!r} under clipping=adaptive; set only initial_clip_norm"
            )
        q = number(
            name, "target_quantile", 0.5 if target_quantile is None else target_quantile, "e.g. 0.5"
        )
        if not 0 <= q <= 1:
            raise ConfigError(
                f"defense.{name}.target_quantile={target_quantile!r} must be in [0, 1] "
                "(the share of updates left unclipped, e.g. 0.5)"
            )
        lr = number(name, "clip_norm_lr", 0.2 if clip_norm_lr is None else clip_norm_lr, "e.g. 0.2")
        if not (math.isfinite(lr) and lr > 0):
            raise ConfigError(
                f"defense.{name}.clip_norm_lr={clip_norm_lr!r} must be finite and > 0 (e.g. 0.2)"
            )
        if clipped_count_stddev is not None:
            s = number(name, "clipped_count_stddev", clipped_count_stddev, "e.g. 1.0")
            if not (math.isfinite(s) and s >= 0):
                raise ConfigError(
                    f"defense.{name}.clipped_count_stddev={clipped_count_stddev!r} must be "
                    "finite and >= 0 (null: Flower's num_clients / 20)"
                )
        self.initial_clip_norm = c0
        self.target_quantile = q
        self.clip_norm_lr = lr
        self.clipped_count_stddev = (
            None if clipped_count_stddev is None else float(clipped_count_stddev)
        )

    @property
    def stream(self) -> str:
        """The prefix of this defense's server-side noise streams."""
        return f"defense/{self.name}/server"

    def wrap_strategy(self, strategy: Any, seed: int, num_clients: int) -> Any:
        """Flower's server-side DP wrapper around ``strategy``, its noise drawn from ``seed``."""
        if self.clipping == "fixed":
            assert self.clip_norm is not None
            return SeededServerSideFixedClipping(
                strategy,
                self.noise_multiplier,
                self.clip_norm,
                num_clients,
                seed=seed,
                stream=self.stream,
            )
        assert self.initial_clip_norm is not None
        assert self.target_quantile is not None and self.clip_norm_lr is not None
        count_std, _ = self._adaptive_noise(num_clients)
        return SeededServerSideAdaptiveClipping(
            strategy,
            self.noise_multiplier,
            num_clients,
            self.initial_clip_norm,
            self.target_quantile,
            self.clip_norm_lr,
            count_std,
            seed=seed,
            stream=self.stream,
        )

    def _adaptive_noise(self, num_clients: int) -> tuple[float, float]:
        """Flower's (clipped-count std, update noise multiplier) for ``num_clients``."""
        try:
            count_std, update_z = compute_adaptive_noise_params(
                self.noise_multiplier, num_clients, self.clipped_count_stddev
            )
        except ValueError:
            count_std = (
                num_clients / 20 if self.clipped_count_stddev is None else self.clipped_count_stddev
            )
            raise ConfigError(
                f"defense.{self.name}.clipped_count_stddev={count_std:g} is too small for "
                f"noise_multiplier={self.noise_multiplier:g} with {num_clients} clients: it "
                f"must exceed noise_multiplier / 2; set defense.{self.name}.clipped_count_stddev "
                f"above {self.noise_multiplier / 2:g} (Flower's default is num_clients / 20)"
            ) from None
        return float(count_std), float(update_z)

    def account(self, shape: TrainingShape) -> PrivacyAccount | None:
        """Client-level (epsilon, delta) of the released global models over all rounds.

        One Gaussian mechanism per round, composed ``num_rounds`` times by dp-accounting's RDP
        accountant, with no sampling amplification (every client takes part in every round).
        Its noise multiplier relative to one client's influence: the noise std on the mean is
        ``z C / m``; FedAvg weights client ``k`` by its rows ``n_k``, so zeroing its clipped
        update moves the mean by at most ``C n_k / N`` and the effective multiplier is
        ``z (N / m) / max_k n_k`` (= ``z`` when clients are equally large). With adaptive
        clipping the account covers both releases of each round, the noised update and the
        noised clipped count (as in Andrew et al. 2021): the update's effective multiplier
        above and ``2 clipped_count_stddev`` for the count combine as
        ``(z_update^-2 + (2 s)^-2)^-1/2``; the clipping norm itself is post-processing.
        """
        sizes = shape.client_train_sizes
        weight_factor = (sum(sizes) / len(sizes)) / max(sizes)
        if self.clipping == "fixed":
            z = self.noise_multiplier * weight_factor
            how = f"fixed clipping at C={self.clip_norm:g}"
        else:
            count_std, update_z = self._adaptive_noise(shape.num_clients)
            z_update = update_z * weight_factor
            z = (
                0.0
                if z_update == 0 or count_std == 0
                else (z_update**-2 + (2 * count_std) ** -2) ** -0.5
            )
            how = (
                f"adaptive clipping from C={self.initial_clip_norm:g} (update noise multiplier "
                f"{update_z:g}, clipped-count std {count_std:g}; Andrew et al. 2021)"
            )
        epsilon = math.inf if z == 0 else gaussian_epsilon(z, shape.num_rounds, self.delta)
        return PrivacyAccount(
            epsilon=epsilon,
            delta=self.delta,
            unit="client",
            accountant=ACCOUNTANT,
            assumptions=(
                f"Gaussian mechanism with effective noise multiplier {z:g} "
                f"(z={self.noise_multiplier:g} on the mean of {shape.num_clients} clients, "
                "weighted by their rows), "
                f"{how}, composed over {shape.num_rounds} rounds; no sampling amplification "
                "(every client every round); adjacency: one client's update replaced by zero; "
                "protects the released global models, not the updates the server receives"
            ),
            observers=("public",),
        )
