"""FedAvg that records what an honest-but-curious server sees, and fails loudly on client errors."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

from flwr.app import ArrayRecord, Message, MetricRecord
from flwr.serverapp.strategy import FedAvg

from fedgen.core.errors import FederationError
from fedgen.core.records import FederationResult, LinearParams, RoundRecord
from fedgen.federation.apps import NUM_EXAMPLES, PARTITION_ID, scalar
from fedgen.federation.arrays import from_record

log = logging.getLogger("fedgen")

_CLIENT_METRICS = ("train_loss", "train_accuracy", "test_loss", "test_accuracy")


class RecordingFedAvg(FedAvg):
    """Flower's FedAvg, plus a record of every round.

    For each round it keeps the global parameters it sends out, each client's returned
    parameters and sample count (FedAvg's weights), and the global model's loss and accuracy on
    each client's train and test rows and pooled. Replies are put in partition-id order before
    aggregation, so that the floating-point sum, and so the parameters, are the same bit for bit
    whatever order the backend delivers them in. Any error reply, or a missing reply, raises
    ``FederationError`` (Flower itself would log it and carry on with fewer clients).
    """

    def __init__(self, *, num_clients: int, num_rounds: int, **kwargs: Any) -> None:
        kwargs.setdefault("min_train_nodes", num_clients)
        kwargs.setdefault("min_evaluate_nodes", num_clients)
        kwargs.setdefault("min_available_nodes", num_clients)
        super().__init__(**kwargs)
        self.num_clients = num_clients
        self.num_rounds = num_rounds
        self.rounds: list[RoundRecord] = []
        self._trained: dict[
            int, tuple[LinearParams, tuple[LinearParams, ...], tuple[int, ...]]
        ] = {}

    def aggregate_train(
        self, server_round: int, replies: Iterable[Message]
    ) -> tuple[ArrayRecord | None, MetricRecord | None]:
        ordered = self._checked(server_round, "train", replies)
        arrays, metrics = super().aggregate_train(server_round, ordered)
        if arrays is None:
            raise FederationError(f"round {server_round}: no client returned parameters")
        clients = tuple(from_record(m.content.array_records["arrays"]) for m in ordered)
        counts = tuple(int(scalar(_metrics(m)[NUM_EXAMPLES])) for m in ordered)
        self._trained[server_round] = (from_record(arrays), clients, counts)
        return arrays, metrics

    def aggregate_evaluate(
        self, server_round: int, replies: Iterable[Message]
    ) -> MetricRecord | None:
        ordered = self._checked(server_round, "evaluate", replies)
        metrics = _round_metrics([_metrics(m) for m in ordered])
        global_params, clients, counts = self._trained.pop(server_round)
        self.rounds.append(RoundRecord(server_round, global_params, clients, counts, metrics))
        log.info(
            "round %d/%d  train loss %.4f acc %.4f | test loss %.4f acc %.4f",
            server_round,
            self.num_rounds,
            metrics["fed/train_loss"],
            metrics["fed/train_accuracy"],
            metrics["fed/test_loss"],
            metrics["fed/test_accuracy"],
        )
        return MetricRecord(dict(metrics.items()))

    def result(self, initial: LinearParams) -> FederationResult:
        """Everything recorded so far, from the ``initial`` parameters on."""
        return FederationResult(initial_params=initial, rounds=tuple(self.rounds))

    def _checked(self, server_round: int, phase: str, replies: Iterable[Message]) -> list[Message]:
        replies = list(replies)
        for msg in replies:
            if msg.has_error():
                raise FederationError(
                    f"a client (node {msg.metadata.src_node_id}) failed in round {server_round} "
                    f"({phase}): {msg.error.reason}"
                )
        if len(replies) != self.num_clients:
            raise FederationError(
                f"round {server_round} ({phase}): {len(replies)} of {self.num_clients} clients "
                "replied; the others timed out or were lost"
            )
        return sorted(replies, key=lambda m: int(scalar(_metrics(m)[PARTITION_ID])))


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
