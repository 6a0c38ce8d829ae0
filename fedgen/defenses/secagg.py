"""Secure aggregation: Flower's SecAgg+, so that the server learns only the sum of the updates.

What it protects, and from whom
-------------------------------
SecAgg+ (Bell et al. 2020, "Secure single-server aggregation with (poly)logarithmic overhead",
CCS; after Bonawitz et al. 2017, "Practical secure aggregation for privacy-preserving machine
learning", CCS) hides each hospital's model from an honest-but-curious server. Each client
scales its model by its weight, quantises it to integers and uploads it plus pairwise masks
(agreed with its neighbours by Diffie-Hellman) plus a private mask, modulo ``modulus_range``.
Any one upload looks uniformly random to the server; in the sum the pairwise masks cancel, and
the private masks are removed with the Shamir shares that at least ``reconstruction_threshold``
of each client's ``num_shares`` neighbours hand back. So up to ``num_shares - threshold``
neighbours may drop out, and the server, even with fewer than ``threshold`` colluding clients,
cannot unmask any single upload. The server thus sees the sample-weighted mean of the client
models and nothing finer; the sample counts (and the train reply's metrics: partition id and
row count) travel in the clear.

It makes no differential-privacy claim: the aggregate, and every global model released after it,
still carries what all clients' data say together, so ``observer=public`` attacks see exactly what
they saw without it (up to quantisation), while ``observer=server`` attacks have nothing to attack.

How it runs in Flower 1.41
--------------------------
Only through the compatibility layer: the server runs ``DefaultWorkflow`` with
``SecAggPlusWorkflow`` (:meth:`SecAgg.fit_workflow`; fedgen's ServerApp switches to it, see
:mod:`fedgen.federation.workflow`), and each client's train handler sits behind
``secaggplus_mod``. Each round takes four train exchanges (setup, key sharing, masked vectors,
unmasking); the train handler runs in the third, on the legacy ``fitins.*`` layout, which this
defense's mod translates to and from the Message-API layout the handler (and any other
defense's mod inside it) reads. Evaluation stays a Message-API exchange.

Numerics
--------
Client ``i`` with ``n_i`` rows uploads, per parameter, the stochastic rounding of
``(clip(w_i theta_i, -C, C) + C) T / (2 C)``, with weight ``w_i = n_i / max_weight`` (itself
rounded to a multiple of ``1 / T``), ``C = clipping_range`` and ``T = quantization_range``. The
server recovers the integer sum exactly and returns ``sum_i clip(w_i theta_i) / sum_i w_i``, off
by less than ``(2 C / T) num_clients / sum_i w_i`` (one level per client; the rounding is
unbiased). With the default ``max_weight`` (the largest client's training rows) every
``w_i <= 1``, so a parameter within ``[-C, C]`` is never clipped. The integer sum must not wrap:
``num_clients * T < modulus_range``.

Randomness
----------
Flower's stochastic rounding draws from the global ``np.random``. This defense seeds it, for
that call only, from the stream ``defense/<name>/client/<pid>/round/<r>`` of the experiment's
seed, and restores the global state afterwards; the rounded integers, and so the aggregate, are
the same bits on every rerun and backend. What stays random: the private-mask seeds
(``os.urandom``), the clients' key pairs and the Shamir share polynomials (``cryptography``,
``pycryptodome``), and the server's neighbour graph and client order (Python's ``random``).
They only make the masks, which cancel exactly in the integer sum modulo ``modulus_range``,
so they cannot change the aggregate.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any, cast

import flwr.compat.common.recorddict_compat as compat
import numpy as np
from flwr.app import Array, ArrayRecord, ConfigRecord, Context, Message, RecordDict
from flwr.app.message import make_message
from flwr.app.message_type import MessageType
from flwr.client.mod import secaggplus_mod
from flwr.clientapp.typing import ClientAppCallable
from flwr.common import Code, FitRes, Scalar, Status, ndarrays_to_parameters
from flwr.server.workflow import SecAggPlusWorkflow

from fedgen.core.errors import ConfigError
from fedgen.defenses.base import (
    PARAM_NAMES,
    BaseDefense,
    TrainingShape,
    defense_rng,
)

FITINS_PARAMETERS = "fitins.parameters"
FITINS_CONFIG = "fitins.config"
NUM_EXAMPLES = "num-examples"  # the Message-API FedAvg's weight key, in the train reply
MAX_MODULUS = 2**32  # Flower's default modulus_range, and the largest its docs allow


class SecAggClientMod:
    """``secaggplus_mod`` for a Message-API train handler, with seeded stochastic rounding.

    A callable class (not a closure) so that Ray can ship it to its workers.

    Parameters
    ----------
    seed : int
        The experiment's seed.
    name : str
        The defense's name (its stream prefix).
    """

    def __init__(self, seed: int, name: str) -> None:
        self.seed, self.name = seed, name

    def __call__(self, msg: Message, context: Context, call_next: ClientAppCallable) -> Message:
        if msg.metadata.message_type != MessageType.TRAIN:
            return call_next(msg, context)
        saved: list[Any] = []

        def train(legacy: Message, ctx: Context) -> Message:
            inner = _message_api_train(legacy)
            reply = call_next(inner, ctx)
            if reply.has_error():
                raise RuntimeError(f"the train handler failed: {reply.error.reason}")
            out = _fitres(legacy, reply)
            # Flower quantises right after this returns; its stochastic rounding is the only
            # draw from the global np.random until secaggplus_mod returns.
            saved.append(np.random.get_state())  # noqa: NPY002
            rng = defense_rng(self.seed, self.name, inner, ctx)
            np.random.seed(int(rng.integers(2**32)))  # noqa: NPY002
            return out

        try:
            return secaggplus_mod(msg, context, train)
        finally:
            if saved:
                np.random.set_state(saved[0])  # noqa: NPY002


def _message_api_train(legacy: Message) -> Message:
    """The Message-API train message (named ``arrays``, ``config``) of a legacy FitIns."""
    config = legacy.content.config_records[FITINS_CONFIG]
    names = json.loads(str(config[PARAM_NAMES]))
    values = legacy.content.array_records[FITINS_PARAMETERS].values()
    arrays = ArrayRecord({n: Array(a.numpy()) for n, a in zip(names, values, strict=True)})
    train_config = ConfigRecord({k: v for k, v in config.items() if k != PARAM_NAMES})
    content = RecordDict({"arrays": arrays, "config": train_config})
    return make_message(legacy.metadata, content)


def _fitres(legacy: Message, reply: Message) -> Message:
    """The handler's Message-API reply in the legacy FitRes layout ``secaggplus_mod`` reads."""
    arrays = reply.content.array_records["arrays"]
    metrics = reply.content.metric_records["metrics"]
    fitres = FitRes(
        status=Status(code=Code.OK, message=""),
        parameters=ndarrays_to_parameters([a.numpy() for a in arrays.values()]),
        num_examples=int(cast(int, metrics[NUM_EXAMPLES])),
        metrics=cast(dict[str, Scalar], dict(metrics.items())),
    )
    return Message(compat.fitres_to_recorddict(fitres, keep_input=False), reply_to=legacy)


def _effective_shares(num_shares: float, num_clients: int) -> int:
    """The shares per client SecAggPlusWorkflow uses with ``num_clients`` (its own rule)."""
    if _is_int(num_shares):
        return int(num_shares)
    shares = round(num_shares * num_clients)
    if shares < num_clients and shares % 2 == 0:
        shares += 1
    return num_clients if shares <= 2 else shares


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


class SecAgg(BaseDefense):
    """Flower's SecAgg+: the server sees only the weighted mean of the client models.

    Parameters
    ----------
    name : str
        The defense's key in the ``defense`` config group.
    num_shares : int >= 3, or float in (0, 1]
        Neighbours each client shares its keys with (itself included); a float is a share of
        the clients (1.0: all). At most ``federation.num_clients``.
    reconstruction_threshold : int >= 2, or float in (0, 1]
        Shares needed to unmask a client; a float is a share of ``num_shares``. An int must be
        below ``num_shares`` (Flower's rule), so some dropout is always tolerated.
    clipping_range : float > 0
        ``C``: each weighted parameter is clipped to ``[-C, C]`` before quantisation.
    quantization_range : int > 0
        ``T``: integer levels over ``[-C, C]``; precision ``2 C / T`` per client.
    modulus_range : int, a power of 2, <= 2**32
        The masks' modulus; ``num_clients * quantization_range`` must stay below it.
    max_weight : float > 0, optional
        The weight ``n_i`` that maps to 1; default the largest client's training rows. Must be
        at least that (a larger weight could overflow the sum).
    timeout : float > 0, optional
        Seconds the server waits for each stage's replies (default: no limit).

    Raises
    ------
    ConfigError
        On any invalid value, naming ``defense.<name>.<key>`` and the fix; values that depend
        on the federation (``num_shares`` vs ``num_clients``, ``max_weight``) when it starts.
    """

    # The server receives only the sum of the updates: no attack can score a client's model.
    hides_client_updates = True

    def __init__(
        self,
        name: str = "secagg",
        num_shares: float = 5,
        reconstruction_threshold: float = 3,
        clipping_range: float = 128.0,
        quantization_range: int = 2**24,
        modulus_range: int = 2**32,
        max_weight: float | None = None,
        timeout: float | None = None,
    ) -> None:
        super().__init__(name)

        def bad(key: str, value: Any, rule: str) -> ConfigError:
            return ConfigError(f"defense.{name}.{key}={value!r} {rule}")

        if _is_int(num_shares):
            if not int(num_shares) >= 3:
                raise bad("num_shares", num_shares, "must be >= 3 (or a share of the clients: 1.0)")
        elif not (_is_number(num_shares) and 0 < num_shares <= 1):
            raise bad(
                "num_shares", num_shares, "must be an int >= 3 or a float in (0, 1], e.g. 1.0"
            )
        t = reconstruction_threshold
        if _is_int(t):
            if not int(t) >= 2:
                raise bad("reconstruction_threshold", t, "must be >= 2 (or a share: 0.6)")
            if _is_int(num_shares) and not int(t) < int(num_shares):
                raise bad(
                    "reconstruction_threshold",
                    t,
                    f"must be below num_shares={num_shares} (at most {int(num_shares) - 1})",
                )
        elif not (_is_number(t) and 0 < t <= 1):
            raise bad(
                "reconstruction_threshold", t, "must be an int >= 2 or a float in (0, 1], e.g. 0.6"
            )
        if not (_is_number(clipping_range) and 0 < clipping_range < float("inf")):
            raise bad("clipping_range", clipping_range, "must be a finite number > 0, e.g. 128.0")
        if not (_is_int(quantization_range) and quantization_range > 0):
            raise bad("quantization_range", quantization_range, "must be an int > 0, e.g. 16777216")
        m = modulus_range
        if not (_is_int(m) and m <= MAX_MODULUS and m > 0 and m & (m - 1) == 0):
            raise bad("modulus_range", m, "must be a power of 2 up to 4294967296 (2**32)")
        if not m > quantization_range:
            raise bad("quantization_range", quantization_range, f"must be below modulus_range={m}")
        if max_weight is not None and not (_is_number(max_weight) and max_weight > 0):
            raise bad(
                "max_weight", max_weight, "must be a number > 0, or null for the largest client"
            )
        if timeout is not None and not (_is_number(timeout) and timeout > 0):
            raise bad("timeout", timeout, "must be a number of seconds > 0, or null for no limit")
        self.num_shares = num_shares
        self.reconstruction_threshold = reconstruction_threshold
        self.clipping_range = float(clipping_range)
        self.quantization_range = int(quantization_range)
        self.modulus_range = int(modulus_range)
        self.max_weight = None if max_weight is None else float(max_weight)
        self.timeout = None if timeout is None else float(timeout)

    def client_mods(self, seed: int) -> Sequence[Any]:
        return [SecAggClientMod(seed, self.name)]

    def fit_workflow(self, seed: int, shape: TrainingShape) -> Any | None:
        """Flower's ``SecAggPlusWorkflow`` for ``shape``, checked against its client count."""
        n, name = shape.num_clients, self.name
        if n < 2:
            raise ConfigError(f"defense {name} needs federation.num_clients >= 2, not {n}")
        if _is_int(self.num_shares) and int(self.num_shares) > n:
            raise ConfigError(
                f"defense.{name}.num_shares={self.num_shares} exceeds federation.num_clients="
                f"{n}; set it to at most {n} (or 1.0 for all clients)"
            )
        shares = _effective_shares(self.num_shares, n)
        t = self.reconstruction_threshold
        if _is_int(t) and not int(t) < shares:
            raise ConfigError(
                f"defense.{name}.reconstruction_threshold={t} must be below the {shares} shares "
                f"that num_shares={self.num_shares} gives {n} clients; lower it to at most "
                f"{shares - 1}"
            )
        if n * self.quantization_range >= self.modulus_range:
            raise ConfigError(
                f"defense.{name}.quantization_range={self.quantization_range} times "
                f"{n} clients reaches modulus_range={self.modulus_range}: the masked sum would "
                f"wrap; lower quantization_range below {self.modulus_range // n}"
            )
        largest = max(shape.client_train_sizes, default=0)
        max_weight = self.max_weight if self.max_weight is not None else float(largest)
        if max_weight < largest:
            raise ConfigError(
                f"defense.{name}.max_weight={self.max_weight} is below the largest client's "
                f"{largest} training rows (the masked sum could overflow); set it to at least "
                f"{largest}, or null"
            )
        return SecAggPlusWorkflow(
            num_shares=self.num_shares,
            reconstruction_threshold=self.reconstruction_threshold,
            max_weight=max_weight,
            clipping_range=self.clipping_range,
            quantization_range=self.quantization_range,
            modulus_range=self.modulus_range,
            timeout=self.timeout,
        )
