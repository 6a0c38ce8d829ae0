"""The defense interface: client-side Flower mods and a server-side strategy wrapper."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import numpy as np

from fedgen.core.errors import ConfigError
from fedgen.core.seeding import child_rng
from fedgen.models import Model

if TYPE_CHECKING:  # types only: a job whose training is cached never imports Flower
    from flwr.app import Context, Message

SERVER_ROUND = "server-round"  # what Flower's strategies put in every train message's config
PARTITION_ID = "partition-id"  # the node config key of a client's partition (its hospital)
# Under a fit workflow (legacy FitIns layout, whose arrays are unnamed), the train config carries
# the model's parameter names, in order, as a JSON list.
PARAM_NAMES = "param-names"


@dataclass(frozen=True)
class TrainingShape:
    """What a privacy accountant needs to know about the training a defense protects.

    Attributes
    ----------
    num_clients : int
    num_rounds : int
        Every client takes part in every round (no client sampling, so no amplification).
    local_epochs : int
    client_train_sizes : tuple of int
        Training rows per client, by partition id.
    """

    num_clients: int
    num_rounds: int
    local_epochs: int
    client_train_sizes: tuple[int, ...]


@dataclass(frozen=True)
class PrivacyAccount:
    """A defense's accounted (epsilon, delta)-DP guarantee and what it protects.

    Attributes
    ----------
    epsilon, delta : float
    unit : {"client", "record"}
        ``client``: a whole hospital's data; ``record``: one individual.
    accountant : str
        How epsilon was computed (e.g. ``dp-accounting RDP``).
    assumptions : str
        In plain words: rounds, sampling, adjacency.
    observers : tuple of str
        Whom the guarantee holds against: ``server`` (the client updates the server receives)
        and/or ``public`` (the released global models, seen by peers and the public). Central
        DP adds its noise on the server, so it covers ``public`` only.
    """

    epsilon: float
    delta: float
    unit: str
    accountant: str
    assumptions: str
    observers: tuple[str, ...] = ("server", "public")


@runtime_checkable
class Defense(Protocol):
    """A defense: what it does on the clients (mods) and on the server (a strategy wrapper).

    Defenses compose in the order they are configured: on a client, the first defense's mod
    acts first on the update the client returns; on the server, the first defense's wrapper
    is innermost (closest to the aggregation). All randomness comes from named child streams
    of the experiment's ``seed`` (:func:`defense_rng`), never from the global ``np.random``,
    so reruns and backends give the same bits.

    Attributes
    ----------
    name : str
        The defense's key in the ``defense`` config group (used in stream names and tags).
    """

    name: str

    def client_mods(self, seed: int) -> Sequence[Any]:
        """Flower mods ``mod(msg, context, call_next) -> Message`` for the ClientApp's train."""
        ...

    def wrap_strategy(self, strategy: Any, seed: int, num_clients: int) -> Any:
        """The server strategy with this defense around it (``strategy`` itself if none)."""
        ...

    def wrap_model(self, model: Model, seed: int) -> Model:
        """The model each client trains (``model`` itself unless the defense changes training)."""
        ...

    def account(self, shape: TrainingShape) -> PrivacyAccount | None:
        """This defense's accounted privacy on ``shape``, or None if it makes no DP claim."""
        ...

    def fit_workflow(self, seed: int, shape: TrainingShape) -> Any | None:
        """A Flower fit workflow that replaces the strategy's train exchange, or None.

        ``workflow(grid, legacy_context)`` runs one round's fit, as Flower's
        ``SecAggPlusWorkflow`` does; the server then runs Flower's ``DefaultWorkflow`` with it
        instead of the Message-API ``strategy.start``. Clients then receive the legacy
        ``fitins.*`` layout, so this defense's mods must translate it for the train handler.
        """
        ...


class BaseDefense:
    """No-op defaults for every hook; a defense overrides the ones it needs.

    Parameters
    ----------
    name : str
        The defense's key in the ``defense`` config group.
    """

    def __init__(self, name: str) -> None:
        self.name = name

    def client_mods(self, seed: int) -> Sequence[Any]:
        return []

    def wrap_strategy(self, strategy: Any, seed: int, num_clients: int) -> Any:
        return strategy

    def wrap_model(self, model: Model, seed: int) -> Model:
        return model

    def account(self, shape: TrainingShape) -> PrivacyAccount | None:
        return None

    def fit_workflow(self, seed: int, shape: TrainingShape) -> Any | None:
        return None


def number(name: str, key: str, value: Any, fix: str) -> float:
    """``defense.<name>.<key>`` as a float, or one ConfigError naming it and ``fix``."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigError(f"defense.{name}.{key}={value!r} must be a number; {fix}")
    return float(value)


def check_delta(name: str, delta: Any) -> float:
    """The delta a defense reports epsilon at: a number in (0, 1)."""
    d = number(name, "delta", delta, "e.g. 1e-5")
    if not 0 < d < 1:
        raise ConfigError(
            f"defense.{name}.delta={delta!r} must be in (0, 1), e.g. 1e-5 (below 1/records)"
        )
    return d


def defense_rng(seed: int, defense: str, msg: Message, context: Context) -> np.random.Generator:
    """The stream of one defense on one client in one round: ``defense/<name>/<pid>/<round>``."""
    pid = int(str(context.node_config[PARTITION_ID]))
    config = msg.content.config_records.get("config")
    server_round = int(str(config[SERVER_ROUND])) if config and SERVER_ROUND in config else 0
    return child_rng(seed, f"defense/{defense}/client/{pid}/round/{server_round}")
