"""The ServerApp's other path: Flower's DefaultWorkflow around a defense's fit workflow.

A defense that changes the train exchange itself (SecAgg+: Flower's ``SecAggPlusWorkflow``) is
a legacy Flower *workflow*, not a Message-API strategy wrapper. It needs a ``LegacyContext``
with a legacy strategy and runs inside ``DefaultWorkflow``, which sends the legacy
``fitins.*`` layout. fedgen keeps the rest as on the Message-API path:

- the legacy strategy is FedAvg over every client from fedgen's initial parameters, with the
  train config (``local-epochs``, ``server-round`` and the parameter names, which the legacy
  layout drops) in every FitIns; if the fit workflow already aggregated (every result carries
  the same parameters, as SecAgg+ hands the unmasked weighted mean to ``aggregate_fit``), that
  aggregate is the new global model as is, not re-averaged;
- evaluation after each fit round is the Message-API ``evaluate`` exchange that
  ``Strategy.start`` sends (the new global model under its names and ``server-round``), so
  the ClientApp's evaluate handler and the recorder work unchanged.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any, cast

import flwr.compat.common.recorddict_compat as compat
from flwr.app import ConfigRecord, Context, Message, RecordDict
from flwr.app.message_type import MessageType
from flwr.common import Parameters, Scalar, ndarrays_to_parameters, parameters_to_ndarrays
from flwr.server import LegacyContext, ServerConfig
from flwr.server.strategy import FedAvg as LegacyFedAvg
from flwr.server.workflow import DefaultWorkflow
from flwr.server.workflow.constant import MAIN_CONFIGS_RECORD, MAIN_PARAMS_RECORD, Key
from flwr.serverapp import Grid

from fedgen.core.errors import FederationError
from fedgen.core.records import Params
from fedgen.defenses.base import PARAM_NAMES, SERVER_ROUND
from fedgen.federation.arrays import to_record

Workflow = Callable[[Grid, Context], None]


class AggregatedFedAvg(LegacyFedAvg):
    """Flower's legacy FedAvg that takes an aggregate a fit workflow already computed.

    SecAgg+ gives every result the same unmasked weighted mean; averaging identical vectors
    again would only add rounding (and an order dependence). Any other results are averaged
    as FedAvg does.
    """

    def aggregate_fit(
        self, server_round: int, results: list[tuple[Any, Any]], failures: list[Any]
    ) -> tuple[Parameters | None, dict[str, Scalar]]:
        if failures:
            raise FederationError(f"round {server_round}: {len(failures)} clients failed")
        if results and all(res.parameters is results[0][1].parameters for _, res in results):
            return results[0][1].parameters, {}
        return super().aggregate_fit(server_round, results, failures)


def run_fit_workflow(
    grid: Grid,
    context: Context,
    fit_workflow: Workflow,
    initial: Params,
    num_rounds: int,
    train_config: Mapping[str, Scalar],
    num_clients: int,
) -> None:
    """Run ``num_rounds`` of ``fit_workflow`` then evaluation, from ``initial``, on ``grid``."""
    names = list(initial)

    def fit_config(server_round: int) -> dict[str, Scalar]:
        return {**train_config, SERVER_ROUND: server_round, PARAM_NAMES: json.dumps(names)}

    strategy = AggregatedFedAvg(
        fraction_fit=1.0,
        fraction_evaluate=0.0,
        min_fit_clients=num_clients,
        min_evaluate_clients=num_clients,
        min_available_clients=num_clients,
        on_fit_config_fn=fit_config,
        initial_parameters=ndarrays_to_parameters(list(initial.values())),
    )
    legacy = LegacyContext(context, ServerConfig(num_rounds=num_rounds), strategy)

    def fit(grid: Grid, ctx: Context) -> None:
        before = ctx.state.array_records[MAIN_PARAMS_RECORD]
        fit_workflow(grid, ctx)
        if ctx.state.array_records[MAIN_PARAMS_RECORD] is before:
            raise FederationError(
                f"round {_current_round(ctx)}: the fit workflow produced no new global model "
                "(secure aggregation halted; Flower's log says why)"
            )

    def evaluate(grid: Grid, ctx: Context) -> None:
        record = ctx.state.array_records[MAIN_PARAMS_RECORD]
        arrays = parameters_to_ndarrays(compat.arrayrecord_to_parameters(record, True))
        server_round = _current_round(ctx)
        content = RecordDict(
            {
                "arrays": to_record(dict(zip(names, arrays, strict=True))),
                "config": ConfigRecord({SERVER_ROUND: server_round}),
            }
        )
        grid.send_and_receive(
            [
                Message(content, node, MessageType.EVALUATE, group_id=str(server_round))
                for node in sorted(grid.get_node_ids())
            ]
        )

    DefaultWorkflow(fit_workflow=fit, evaluate_workflow=evaluate)(grid, legacy)


def _current_round(context: Context) -> int:
    return cast(int, context.state.config_records[MAIN_CONFIGS_RECORD][Key.CURRENT_ROUND])
