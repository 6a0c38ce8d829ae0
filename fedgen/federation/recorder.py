"""Record what the server receives and sends, at the Grid: the outermost layer of the server.

The recorder wraps whatever Grid a backend hands the ServerApp, so it composes with any Flower
strategy and any strategy wrapper (a DP wrapper's noise is in the arrays it sends) and sees
client replies after every client-side mod. It also makes aggregation deterministic: replies
are handed to the strategy in partition-id order, whatever order the backend delivers them in.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable

from flwr.app import Message, MetricRecord
from flwr.serverapp import Grid
from flwr.supercore.run import Run, RunNotRunningException

from fedgen.core import progress
from fedgen.core.errors import FederationError
from fedgen.core.records import FederationResult, Params, RoundRecord
from fedgen.defenses.base import PARAM_NAMES
from fedgen.federation.arrays import from_record

log = logging.getLogger("fedgen")

PARTITION_ID = "partition-id"
NUM_EXAMPLES = "num-examples"
SERVER_ROUND = "server-round"
_CLIENT_METRICS = ("train_loss", "train_accuracy", "test_loss", "test_accuracy")
# Flower's legacy FitIns/FitRes layout, which a fit workflow (e.g. SecAgg+) exchanges.
FITINS_CONFIG = "fitins.config"
FITRES_PARAMETERS = "fitres.parameters"
FITRES_NUM_EXAMPLES = "fitres.num_examples"
FITRES_METRICS = "fitres.metrics"

_Trained = tuple[tuple[Params, ...], tuple[int, ...], bool]


def scalar(value: object) -> float:
    """A number from a Flower record (whose values may also be lists or strings)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"expected a number in the Flower record, got {value!r}")
    return float(value)


class RecordingGrid(Grid):
    """A Grid around ``grid`` that keeps a :class:`RoundRecord` of every round.

    Per round, the ``train`` exchange gives each client's returned parameters and sample
    count; the ``evaluate`` exchange gives the global model the server sent out after
    aggregation (and after any server-side wrapper) and each client's metrics of it. Any
    error reply, or a missing reply, raises :class:`FederationError` naming the client and
    its reason (Flower itself would log it and carry on with fewer clients).

    Under a fit workflow (Flower's legacy ``fitins``/``fitres`` layout) the train exchange
    that carries the parameters is recorded the same way if the replies hold them in the
    clear; if they hold none (SecAgg+: each upload is a masked vector, and only the sum of
    all of them can be unmasked) the round is recorded as ``aggregate_only``, with no client
    parameters. The protocol's other exchanges (keys, shares) carry no model and are not
    recorded.
    """

    def __init__(self, grid: Grid, num_clients: int, num_rounds: int) -> None:
        self._grid = grid
        self.num_clients = num_clients
        self.num_rounds = num_rounds
        self.rounds: list[RoundRecord] = []
        self._trained: dict[int, _Trained] = {}
        self._closed = False

    # The Grid interface, delegated.
    def set_run(self, run: Run) -> None:
        self._grid.set_run(run)

    @property
    def run(self) -> Run:
        return self._grid.run

    def create_message(self, *args: object, **kwargs: object) -> Message:
        return self._grid.create_message(*args, **kwargs)  # type: ignore[arg-type]

    def get_node_ids(self) -> Iterable[int]:
        if self._closed:
            raise RunNotRunningException
        return self._grid.get_node_ids()

    def close(self) -> None:
        """End the run for whoever still polls the nodes (Flower's legacy client manager)."""
        self._closed = True

    def push_messages(self, messages: Iterable[Message]) -> Iterable[str]:
        return self._grid.push_messages(messages)

    def pull_messages(self, message_ids: Iterable[str]) -> Iterable[Message]:
        return self._grid.pull_messages(message_ids)

    def send_and_receive(
        self, messages: Iterable[Message], *, timeout: float | None = None
    ) -> Iterable[Message]:
        sent = list(messages)
        replies = self._checked(sent, list(self._grid.send_and_receive(sent, timeout=timeout)))
        if sent:
            kind = sent[0].metadata.message_type
            server_round = _round(sent[0])
            if kind.startswith("train"):
                trained = _uploads(sent[0], replies)
                if trained is not None:
                    self._trained[server_round] = trained
            elif kind.startswith("evaluate"):
                self._close_round(server_round, sent[0], replies)
        return replies

    def result(self, initial: Params) -> FederationResult:
        """Everything recorded so far, from the ``initial`` parameters on."""
        return FederationResult(initial_params=initial, rounds=tuple(self.rounds))

    def _close_round(self, server_round: int, sent: Message, replies: list[Message]) -> None:
        if server_round not in self._trained:
            raise FederationError(f"round {server_round}: evaluated before any client trained")
        clients, counts, aggregate_only = self._trained.pop(server_round)
        global_params = from_record(sent.content.array_records["arrays"])
        metrics = _round_metrics([_metrics(m) for m in replies])
        self.rounds.append(
            RoundRecord(server_round, global_params, clients, counts, metrics, aggregate_only)
        )
        progress.advance("training rounds")
        log.info(
            "round %d/%d  train loss %.4f acc %.4f | test loss %.4f acc %.4f",
            server_round,
            self.num_rounds,
            metrics["fed/train_loss"],
            metrics["fed/train_accuracy"],
            metrics["fed/test_loss"],
            metrics["fed/test_accuracy"],
        )

    def _checked(self, sent: list[Message], replies: list[Message]) -> list[Message]:
        phase = sent[0].metadata.message_type if sent else "?"
        server_round = _round(sent[0]) if sent else 0
        for msg in replies:
            if msg.has_error():
                raise FederationError(
                    f"a client (node {msg.metadata.src_node_id}) failed in round {server_round} "
                    f"({phase}): {msg.error.reason}"
                )
        if len(replies) != len(sent):
            raise FederationError(
                f"round {server_round} ({phase}): {len(replies)} of {len(sent)} clients "
                "replied; the others timed out or were lost"
            )
        return sorted(replies, key=_partition)


def _uploads(sent: Message, replies: list[Message]) -> _Trained | None:
    """What a train exchange shows the server: client models (if in the clear) and counts."""
    config = sent.content.config_records.get(FITINS_CONFIG)
    if config is None:
        if not sent.content.array_records:
            return None  # a key or share exchange of a secure-aggregation protocol: no model
        return (
            tuple(from_record(m.content.array_records["arrays"]) for m in replies),
            tuple(int(scalar(_metrics(m)[NUM_EXAMPLES])) for m in replies),
            False,
        )
    names = json.loads(str(config[PARAM_NAMES]))
    uploads = [from_record(m.content.array_records[FITRES_PARAMETERS]) for m in replies]
    counts = tuple(
        int(scalar(m.content.metric_records[FITRES_NUM_EXAMPLES]["num_examples"])) for m in replies
    )
    if not all(uploads):
        return (), counts, True
    return tuple(dict(zip(names, p.values(), strict=True)) for p in uploads), counts, False


def _partition(reply: Message) -> int:
    """The reply's partition id, if it carries one in the clear, else its node id."""
    content = reply.content
    metrics = content.metric_records.get("metrics") or content.config_records.get(FITRES_METRICS)
    if metrics is None or PARTITION_ID not in metrics:
        return int(reply.metadata.src_node_id)
    return int(scalar(metrics[PARTITION_ID]))


def _round(msg: Message) -> int:
    config = msg.content.config_records.get("config")
    if config is None:
        config = msg.content.config_records.get(FITINS_CONFIG)
    if config is None or SERVER_ROUND not in config:
        return 0
    return int(scalar(config[SERVER_ROUND]))


def _metrics(msg: Message) -> MetricRecord:
    return msg.content.metric_records["metrics"]


def _round_metrics(per_client: list[MetricRecord]) -> dict[str, float]:
    """Per-client metrics under ``fed/client_<id>/`` and pooled ones (weighted by row counts)."""
    out: dict[str, float] = {}
    n_train = [scalar(m["n_train"]) for m in per_client]
    n_test = [scalar(m[NUM_EXAMPLES]) for m in per_client]
    for name in _CLIENT_METRICS:
        weights = n_train if name.startswith("train") else n_test
        values = [scalar(m[name]) for m in per_client]
        out[f"fed/{name}"] = sum(w * v for w, v in zip(weights, values, strict=True)) / sum(weights)
        for m, v in zip(per_client, values, strict=True):
            out[f"fed/client_{int(scalar(m[PARTITION_ID]))}/{name}"] = v
    return out
