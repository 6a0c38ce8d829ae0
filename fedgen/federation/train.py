"""Train one federation: cohort and split in, round-by-round FederationResult out."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from flwr.clientapp import ClientApp
from flwr.serverapp import Grid
from flwr.serverapp.strategy import FedAvg

from fedgen.core.errors import ConfigError
from fedgen.core.records import Cohort, FederationResult, Split
from fedgen.core.seeding import child_seed
from fedgen.defenses import Defense, TrainingShape
from fedgen.federation.apps import make_client_app, make_server_app
from fedgen.federation.data import ClientData, client_data
from fedgen.federation.recorder import RecordingGrid
from fedgen.federation.settings import FederationSettings
from fedgen.federation.strategy import RecordingFedAvg, sized_strategy
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


def fit_workflow(
    defenses: Sequence[Defense], seed: int, shape: TrainingShape, strategy: Any
) -> Any | None:
    """The one defense's fit workflow (e.g. SecAgg+), or None: the strategy trains as usual.

    The workflow replaces the strategy's train exchange, so it must run FedAvg over every
    client, and its defense must come last (its client mod carries what the other defenses'
    mods produced).
    """
    found = [(d, w) for d in defenses if (w := d.fit_workflow(seed, shape)) is not None]
    if not found:
        return None
    names = [d.name for d, _ in found]
    if len(found) > 1:
        raise ConfigError(f"defenses {', '.join(names)} each replace the train exchange; keep one")
    name = names[0]
    if defenses[-1] is not found[0][0]:
        raise ConfigError(
            f"defense {name} replaces the train exchange and must come last in defense=[...] "
            "so that it carries the update the other defenses produce"
        )
    fedavg = (FedAvg, RecordingFedAvg)
    if type(strategy) not in fedavg or strategy.fraction_train != 1.0:
        raise ConfigError(
            f"defense {name} aggregates as FedAvg over every client; set federation.strategy "
            "to flwr.serverapp.strategy.FedAvg with fraction_train: 1.0"
        )
    return found[0][1]


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
    shape = TrainingShape(
        n,
        settings.num_rounds,
        settings.local_epochs,
        tuple(int(c.train.shape[0]) for c in split.clients),
    )
    workflow = fit_workflow(defenses, seed, shape, strategy)
    for defense in defenses:
        wrapped = defense.wrap_strategy(strategy, seed, n)
        if workflow is not None and wrapped is not strategy:
            raise ConfigError(
                f"defense {defense.name} wraps the server strategy, which a fit workflow "
                "(e.g. defense secagg) does not run; use one or the other"
            )
        strategy = wrapped
    initial = model.init_params(cohort.n_snps, child_seed(seed, "model/init"))
    client_app = build_client_app(cohort, split, model, seed, defenses)
    recorders: list[RecordingGrid] = []

    def record(grid: Grid) -> Grid:
        recorders.append(RecordingGrid(grid, n, settings.num_rounds))
        return recorders[-1]

    server_app = make_server_app(
        strategy, initial, settings.num_rounds, settings.local_epochs, record, workflow, n
    )
    settings.backend.run(server_app, client_app, n)
    return recorders[-1].result(initial)
