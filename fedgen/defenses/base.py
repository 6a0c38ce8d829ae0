"""The defense interface: client-side Flower mods and a server-side strategy wrapper."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol, runtime_checkable

import numpy as np
from flwr.app import Context, Message

from fedgen.core.seeding import child_rng

SERVER_ROUND = "server-round"  # what Flower's strategies put in every train message's config
PARTITION_ID = "partition-id"  # the node config key of a client's partition (its hospital)


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


def defense_rng(seed: int, defense: str, msg: Message, context: Context) -> np.random.Generator:
    """The stream of one defense on one client in one round: ``defense/<name>/<pid>/<round>``."""
    pid = int(str(context.node_config[PARTITION_ID]))
    config = msg.content.config_records.get("config")
    server_round = int(str(config[SERVER_ROUND])) if config and SERVER_ROUND in config else 0
    return child_rng(seed, f"defense/{defense}/client/{pid}/round/{server_round}")
