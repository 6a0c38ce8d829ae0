"""Train one federation: cohort and split in, round-by-round FederationResult out."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from flwr.clientapp import ClientApp
from flwr.serverapp import Grid

from fedgen.core.records import Cohort, FederationResult, Split
from fedgen.core.seeding import child_seed
from fedgen.defenses import Defense
from fedgen.federation.apps import make_client_app, make_server_app
from fedgen.federation.data import ClientData, client_data
from fedgen.federation.recorder import RecordingGrid
from fedgen.federation.settings import FederationSettings
from fedgen.federation.strategy import sized_strategy
from fedgen.models import Model

__all__ = ["ClientData", "client_seeds", "train_federation"]


def client_seeds(seed: int, num_clients: int) -> list[int]:
    """Each client's model ``random_state``: the stream ``client/<partition id>`` of ``seed``."""
    return [child_seed(seed, f"client/{i}") for i in range(num_clients)]


def client_mods(defenses: Sequence[Defense], seed: int) -> list[Any]:
    """The defenses' client-side mods, outermost first, so the first defense acts first."""
    mods: list[Any] = []
    for defense in defenses:
        mods = [*defense.client_mods(seed), *mods]
    return mods


def build_client_app(
    cohort: Cohort, split: Split, model: Model, seed: int, defenses: Sequence[Defense] = ()
) -> ClientApp:
    """The ClientApp every backend (and ``flwr run``) runs: data, model, seeds, defenses."""
    seeds = client_seeds(seed, split.num_clients)
    for defense in defenses:
        model = defense.wrap_model(model, seed)
    return make_client_app(client_data(cohort, split), model, seeds, client_mods(defenses, seed))


def train_federation(
    cohort: Cohort,
    split: Split,
    settings: FederationSettings,
    model: Model,
    seed: int,
    defenses: Sequence[Defense] = (),
) -> FederationResult:
    """Run FedAvg with Flower on ``settings.backend`` and return what the server recorded.

    Defenses act in their configured order: on each client the first defense's mod acts first
    on the returned update (so it is the innermost mod); on the server the first defense's
    wrapper is innermost around the strategy.
    """
    n = split.num_clients
    strategy = sized_strategy(settings.strategy, n)
    for defense in defenses:
        strategy = defense.wrap_strategy(strategy, seed, n)
    initial = model.init_params(cohort.n_snps, child_seed(seed, "model/init"))
    client_app = build_client_app(cohort, split, model, seed, defenses)
    recorders: list[RecordingGrid] = []

    def record(grid: Grid) -> Grid:
        recorders.append(RecordingGrid(grid, n, settings.num_rounds))
        return recorders[-1]

    server_app = make_server_app(
        strategy, initial, settings.num_rounds, settings.local_epochs, record
    )
    settings.backend.run(server_app, client_app, n)
    return recorders[-1].result(initial)
