"""Factories for the Flower ClientApp and ServerApp that both backends run."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from flwr.app import ConfigRecord, Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp
from flwr.serverapp import Grid, ServerApp

from fedgen.core.records import Params
from fedgen.federation.arrays import from_record, to_record
from fedgen.federation.data import ClientData, ClientFloats
from fedgen.federation.recorder import NUM_EXAMPLES, PARTITION_ID, RecordingGrid, scalar
from fedgen.federation.workflow import Workflow, run_fit_workflow
from fedgen.models import Model, loss_and_accuracy

LOCAL_EPOCHS = "local-epochs"
_STATE_KEY = "fedgen-optimizer"


def make_client_app(
    data: Sequence[ClientData],
    model: Model,
    seeds: Sequence[int],
    mods: Sequence[Any] = (),
) -> ClientApp:
    """Build the ClientApp: node ``partition-id`` trains and evaluates on ``data[partition-id]``.

    Parameters
    ----------
    data : sequence of ClientData
        Each client's rows, by partition id.
    model : Model
        Trains locally from the global parameters and evaluates them.
    seeds : sequence of int
        Each client's training seed, by partition id.
    mods : sequence of Flower mods
        Client-side mods around ``train`` (defenses), outermost first: they change what the
        client sends, so the server only ever receives their output.
    """
    app = ClientApp()
    floats = ClientFloats(data)  # float64 rows: kept when small, else one reused buffer

    @app.train(mods=list(mods))
    def train(msg: Message, context: Context) -> Message:
        pid = int(scalar(context.node_config[PARTITION_ID]))
        rows = data[pid]
        params = from_record(msg.content.array_records["arrays"])
        epochs = int(scalar(msg.content.config_records["config"][LOCAL_EPOCHS]))
        kept = context.state.array_records.get(_STATE_KEY)
        with floats.rows(pid, "train") as X:
            new, state = model.fit(
                params,
                X,
                rows.y_train,
                epochs=epochs,
                seed=seeds[pid],
                state=from_record(kept) if kept is not None else None,
            )
        # The optimiser's state stays on the client (Flower's node state), as a real client's
        # estimator would keep it between rounds; it is never sent to the server.
        context.state[_STATE_KEY] = to_record(state)
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
        with floats.rows(pid, "train") as X:
            train_loss, train_acc = loss_and_accuracy(model, params, X, rows.y_train)
        with floats.rows(pid, "test") as X:
            test_loss, test_acc = loss_and_accuracy(model, params, X, rows.y_test)
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
    strategy: Any,
    initial: Params,
    num_rounds: int,
    local_epochs: int,
    record: Callable[[Grid], Grid],
    fit_workflow: Workflow | None = None,
    num_clients: int = 0,
) -> ServerApp:
    """Build the ServerApp that runs ``strategy`` for ``num_rounds`` from ``initial``.

    ``record`` wraps the Grid the backend provides (the recorder), so that everything the
    strategy and its wrappers send and receive crosses it. With a ``fit_workflow`` (a
    defense's, e.g. SecAgg+) the ServerApp runs Flower's DefaultWorkflow around it over all
    ``num_clients`` instead (:mod:`fedgen.federation.workflow`); ``strategy`` is not used.
    """
    app = ServerApp()

    @app.main()
    def main(grid: Grid, context: Context) -> None:
        if fit_workflow is not None:
            recording = record(grid)
            try:
                config = {LOCAL_EPOCHS: local_epochs}
                run_fit_workflow(
                    recording, context, fit_workflow, initial, num_rounds, config, num_clients
                )
            finally:
                if isinstance(recording, RecordingGrid):
                    recording.close()  # ends the legacy client manager's polling thread
            return
        strategy.start(
            grid=record(grid),
            initial_arrays=to_record(initial),
            num_rounds=num_rounds,
            train_config=ConfigRecord({LOCAL_EPOCHS: local_epochs}),
        )

    return app
