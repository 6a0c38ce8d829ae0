"""Factories for the Flower ClientApp and ServerApp that both backends run."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from flwr.app import ConfigRecord, Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp
from flwr.serverapp import Grid, ServerApp
from flwr.serverapp.strategy import FedAvg

from fedgen.core.records import LinearParams
from fedgen.federation.arrays import from_record, to_record
from fedgen.federation.data import ClientData
from fedgen.models.linear import fit_local, loss_and_accuracy

PARTITION_ID = "partition-id"
NUM_EXAMPLES = "num-examples"
LOCAL_EPOCHS = "local-epochs"
_STATE_KEY = "fedgen-optimizer"


def scalar(value: object) -> float:
    """A number from a Flower record (whose values may also be lists or strings)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"expected a number in the Flower record, got {value!r}")
    return float(value)


def make_client_app(data: Sequence[ClientData], template: Any, seeds: Sequence[int]) -> ClientApp:
    """Build the ClientApp: node ``partition-id`` trains and evaluates on ``data[partition-id]``.

    Parameters
    ----------
    data : sequence of ClientData
        Each client's rows, by partition id.
    template : scikit-learn linear classifier
        Cloned for every local fit.
    seeds : sequence of int
        Each client's ``random_state``, by partition id.
    """
    app = ClientApp()

    @app.train()
    def train(msg: Message, context: Context) -> Message:
        pid = int(scalar(context.node_config[PARTITION_ID]))
        rows = data[pid]
        params = from_record(msg.content.array_records["arrays"])
        epochs = int(scalar(msg.content.config_records["config"][LOCAL_EPOCHS]))
        kept = context.state.metric_records.get(_STATE_KEY)
        step_count = scalar(kept["t"]) if kept is not None else None
        new, step_count = fit_local(
            template,
            params,
            rows.X_train,
            rows.y_train,
            epochs=epochs,
            seed=seeds[pid],
            step_count=step_count,
        )
        # The optimiser's step counter stays on the client (Flower's node state), as a real
        # client's estimator would keep it between rounds; it is never sent to the server.
        context.state[_STATE_KEY] = MetricRecord({"t": step_count})
        reply = RecordDict(
            {
                "arrays": to_record(new),
                "metrics": MetricRecord({NUM_EXAMPLES: rows.n_train, PARTITION_ID: pid}),
            }
        )
        return Message(reply, reply_to=msg)

    @app.evaluate()
    def evaluate(msg: Message, context: Context) -> Message:
        pid = int(scalar(context.node_config[PARTITION_ID]))
        rows = data[pid]
        params = from_record(msg.content.array_records["arrays"])
        train_loss, train_acc = loss_and_accuracy(params, rows.X_train, rows.y_train)
        test_loss, test_acc = loss_and_accuracy(params, rows.X_test, rows.y_test)
        metrics = MetricRecord(
            {
                NUM_EXAMPLES: rows.n_test,
                PARTITION_ID: pid,
                "n_train": rows.n_train,
                "train_loss": train_loss,
                "train_accuracy": train_acc,
                "test_loss": test_loss,
                "test_accuracy": test_acc,
            }
        )
        return Message(RecordDict({"metrics": metrics}), reply_to=msg)

    return app


def make_server_app(
    strategy: FedAvg, initial: LinearParams, num_rounds: int, local_epochs: int
) -> ServerApp:
    """Build the ServerApp that runs ``strategy`` for ``num_rounds`` from ``initial``."""
    app = ServerApp()

    @app.main()
    def main(grid: Grid, context: Context) -> None:
        strategy.start(
            grid=grid,
            initial_arrays=to_record(initial),
            num_rounds=num_rounds,
            train_config=ConfigRecord({LOCAL_EPOCHS: local_epochs}),
        )

    return app
