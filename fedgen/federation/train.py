"""Train one federation: cohort and split in, round-by-round FederationResult out."""

from __future__ import annotations

from typing import Any

from fedgen.core.records import Cohort, FederationResult, Split
from fedgen.core.seeding import child_seed
from fedgen.federation.apps import make_client_app, make_server_app
from fedgen.federation.data import ClientData, client_data
from fedgen.federation.settings import FederationSettings
from fedgen.models.linear import check_template, zeros

__all__ = ["ClientData", "client_seeds", "train_federation"]


def client_seeds(seed: int, num_clients: int) -> list[int]:
    """Each client's model ``random_state``: the stream ``client/<partition id>`` of ``seed``."""
    return [child_seed(seed, f"client/{i}") for i in range(num_clients)]


def train_federation(
    cohort: Cohort, split: Split, settings: FederationSettings, template: Any, seed: int
) -> FederationResult:
    """Run FedAvg with Flower on ``settings.backend`` and return what the server recorded."""
    check_template(template)
    n = split.num_clients
    strategy = settings.strategy(num_clients=n, num_rounds=settings.num_rounds)
    initial = zeros(cohort.n_snps)
    client_app = make_client_app(client_data(cohort, split), template, client_seeds(seed, n))
    server_app = make_server_app(strategy, initial, settings.num_rounds, settings.local_epochs)
    settings.backend.run(server_app, client_app, n)
    result: FederationResult = strategy.result(initial)
    return result
