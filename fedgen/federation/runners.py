"""The backends: Flower apps in this process, on Ray's simulation engine, or on real processes."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass

from flwr.app import Context, RecordDict
from flwr.clientapp import ClientApp
from flwr.serverapp import ServerApp
from flwr.supercore.task_identity import TaskIdentity

from fedgen.federation.grid import InProcessGrid

_RUN_ID = 1
# The id Flower gives the SuperLink (server side) in its own simulation runtime.
_SUPERLINK_NODE_ID = 1


@dataclass(frozen=True)
class InProcessRunner:
    """Run the ServerApp in this thread; messages go straight to the ClientApps (about 1 s)."""

    def run(self, server_app: ServerApp, client_app: ClientApp, num_clients: int) -> None:
        # Messages created by strategies read the sender's identity from TaskIdentity, which
        # Flower's runtimes set for the process before a ServerApp starts.
        TaskIdentity.task_id = 1
        TaskIdentity.run_id = _RUN_ID
        TaskIdentity.node_id = _SUPERLINK_NODE_ID
        grid = InProcessGrid(client_app, num_clients, run_id=_RUN_ID)
        context = Context(
            run_id=_RUN_ID, node_id=0, node_config={}, state=RecordDict(), run_config={}
        )
        server_app(grid=grid, context=context)


@dataclass(frozen=True)
class RayRunner:
    """Run on Flower's simulation engine (``run_simulation`` over Ray).

    Ray starts a private local cluster (``address="local"``, so it never attaches to someone
    else's) sized for small machines, and is shut down afterwards.
    """

    num_cpus: int = 2
    client_num_cpus: float = 1.0

    def run(self, server_app: ServerApp, client_app: ClientApp, num_clients: int) -> None:
        import ray
        from flwr.simulation import run_simulation

        # Silences Ray's notice that it will stop overriding *_VISIBLE_DEVICES on CPU-only runs.
        os.environ.setdefault("RAY_ACCEL_ENV_VAR_OVERRIDE_ON_ZERO", "0")

        backend_config = {
            "init_args": {
                "address": "local",
                "num_cpus": self.num_cpus,
                "num_gpus": 0,
                "include_dashboard": False,
                "logging_level": logging.ERROR,
                "log_to_driver": False,
            },
            "client_resources": {"num_cpus": self.client_num_cpus, "num_gpus": 0.0},
        }
        try:
            run_simulation(
                server_app=server_app,
                client_app=client_app,
                num_supernodes=num_clients,
                backend_config=backend_config,  # type: ignore[arg-type]
            )
        finally:
            ray.shutdown()


@dataclass(frozen=True)
class DeploymentRunner:
    """Run on Flower's Deployment Engine: a SuperLink and SuperNodes as processes on loopback.

    The ServerApp runs in this process on the SuperLink's Runtime API (so the recorder sees the
    real networked Grid); each SuperNode runs every message in a ``flwr-clientapp`` process of
    its own. All are stopped afterwards, on error too (:mod:`fedgen.federation.deployment`).
    """

    timeout_s: float = 120.0

    def run(self, server_app: ServerApp, client_app: ClientApp, num_clients: int) -> None:
        from fedgen.federation.deployment import run_deployment

        run_deployment(server_app, client_app, num_clients, timeout_s=self.timeout_s)
