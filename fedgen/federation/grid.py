"""A Flower Grid that delivers messages to ClientApps in the calling process (no Ray, no server)."""

from __future__ import annotations

import copy
import itertools
import traceback
from collections.abc import Iterable
from typing import Any

from flwr.app import Context, Error, Message, RecordDict
from flwr.app.message import make_message
from flwr.clientapp import ClientApp
from flwr.common.constant import ErrorCode
from flwr.serverapp import Grid
from flwr.supercore.run import Run

PARTITION_ID_KEY = "partition-id"
NUM_PARTITIONS_KEY = "num-partitions"
# Node ids as the simulation engine would hand out, but fixed so logs are reproducible.
_FIRST_NODE_ID = 1001


class InProcessGrid(Grid):
    """Runs the real ClientApp for each message as it is pushed, one node at a time.

    Each node has its own persistent ``Context`` with ``partition-id``/``num-partitions`` in its
    node config, as in Flower's simulation engine. As there, an exception in the ClientApp
    becomes an error reply (``CLIENT_APP_RAISED_EXCEPTION``) for the strategy to handle.
    Each node gets a private copy of the message's content, as if it had crossed the wire:
    strategies send one content object to every node, and a client (e.g. SecAgg+'s mod, which
    pops the stage from its config) may change what it received.
    """

    def __init__(self, client_app: ClientApp, num_nodes: int, run_id: int) -> None:
        self._client_app = client_app
        self._run = Run.create_empty(run_id)
        self._contexts = {
            _FIRST_NODE_ID + i: Context(
                run_id=run_id,
                node_id=_FIRST_NODE_ID + i,
                node_config={PARTITION_ID_KEY: i, NUM_PARTITIONS_KEY: num_nodes},
                state=RecordDict(),
                run_config={},
            )
            for i in range(num_nodes)
        }
        self._replies: dict[str, Message] = {}
        self._ids = itertools.count(1)

    def set_run(self, run: Run) -> None:
        self._run = run

    @property
    def run(self) -> Run:
        return self._run

    def create_message(
        self,
        content: RecordDict,
        message_type: str,
        dst_node_id: int,
        group_id: str,
        ttl: float | None = None,
    ) -> Message:
        return Message(content, dst_node_id, message_type, ttl=ttl, group_id=group_id)

    def get_node_ids(self) -> Iterable[int]:
        return list(self._contexts)

    def push_messages(self, messages: Iterable[Message]) -> Iterable[str]:
        ids = []
        for msg in messages:
            msg_id = f"m{next(self._ids)}"
            # Flower's own grids assign the id the same way: Metadata has no public setter.
            msg.metadata.__dict__["_message_id"] = msg_id
            self._replies[msg_id] = self._deliver(msg)
            ids.append(msg_id)
        return ids

    def pull_messages(self, message_ids: Iterable[str]) -> Iterable[Message]:
        return [self._replies.pop(i) for i in message_ids if i in self._replies]

    def send_and_receive(
        self, messages: Iterable[Message], *, timeout: float | None = None
    ) -> Iterable[Message]:
        return self.pull_messages(self.push_messages(messages))

    def _deliver(self, msg: Message) -> Message:
        context = self._contexts.get(msg.metadata.dst_node_id)
        if context is None:
            return Message(
                Error(code=ErrorCode.UNKNOWN, reason=f"no node {msg.metadata.dst_node_id}"),
                reply_to=msg,
            )
        delivered = make_message(copy.copy(msg.metadata), _private_copy(msg.content))
        try:
            reply = self._client_app(delivered, context)
        except Exception as exc:
            reason = f"{type(exc).__name__}: {exc}\n{traceback.format_exc()}"
            return Message(
                Error(code=ErrorCode.CLIENT_APP_RAISED_EXCEPTION, reason=reason), reply_to=msg
            )
        reply.metadata.__dict__["_message_id"] = f"r{next(self._ids)}"
        return reply


def _private_copy(content: RecordDict) -> RecordDict:
    """``content`` with every record's mapping (and list value) copied, arrays shared.

    Enough for a client to add, change or remove entries without the sender or the other nodes
    seeing it; an ``Array``'s bytes are immutable, so sharing them is safe. A deep copy of the
    whole message costs ~60,000 Python calls per default run.
    """
    out = RecordDict()
    for key, record in content.items():
        values: dict[str, Any] = {k: copy.copy(v) for k, v in record.items()}
        out[key] = type(record)(values)
    return out
