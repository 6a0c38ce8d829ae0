"""Observers (threat models): who watches the federation, and exactly what each one sees.

Every attack is run by one observer (``attack.<name>.observer``) and receives only that
observer's view of the training, built here from the server's record
(:mod:`fedgen.federation.recorder`):

``server``
    The honest-but-curious FedAvg server: the initial model, every client's returned
    parameters and sample counts in every round, and every global model it sent out. Under
    secure aggregation the record holds only the aggregate of the client models; the view then
    stands the aggregate in for every client's model (the best the server can do) and says so
    (``aggregate_only``).
``peer``
    Another participant (a hospital in the federation): the initial model and the global model
    of every round, nothing per client.
``public``
    Anyone the final model is released to: the final global model only.

Each attack class declares the observers it supports (``observers``); a pairing outside them is
one clear error when the config is built.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from fedgen.core.errors import ConfigError
from fedgen.core.records import FederationResult, Params
from fedgen.models.base import flatten

OBSERVERS = ("server", "peer", "public")


def check_observer(name: str, observer: object, supported: tuple[str, ...]) -> str:
    """Validate ``attack.<name>.observer`` against the attack's supported observers."""
    if observer not in OBSERVERS:
        raise ConfigError(
            f"attack.{name}.observer={observer!r} is not an observer; choose one of: "
            f"{', '.join(supported)}"
        )
    if observer not in supported:
        raise ConfigError(
            f"attack {name} cannot be run by observer {observer!r} (it sees too little for it); "
            f"set attack.{name}.observer to one of: {', '.join(supported)}"
        )
    return str(observer)


@dataclass(frozen=True)
class TrainingView:
    """What one observer saw of the training.

    Attributes
    ----------
    observer : str
        ``server``, ``peer`` or ``public``.
    initial : Params or None
        The model the first round started from (server and peer; None for the public).
    globals : tuple of Params
        The global model after each round (server and peer), or only the final one (public).
    client_params : tuple of tuple of Params
        Server only: per round, each client's returned model by partition id (the aggregate
        for every client when ``aggregate_only``); empty for the other observers.
    client_counts : tuple of tuple of int
        Server only: per round, the sample count each client reported; empty otherwise.
    aggregate_only : bool
        The server saw only aggregates in some round (secure aggregation).
    """

    observer: str
    initial: Params | None
    globals: tuple[Params, ...]
    client_params: tuple[tuple[Params, ...], ...]
    client_counts: tuple[tuple[int, ...], ...]
    aggregate_only: bool = False

    @property
    def num_rounds(self) -> int:
        """Rounds in the view (1 for the public, who sees only the final model)."""
        return len(self.globals)

    @property
    def num_clients(self) -> int:
        """Clients the server saw (0 for the peer and the public)."""
        return len(self.client_params[0]) if self.client_params else 0

    @property
    def final(self) -> Params:
        """The final global model."""
        return self.globals[-1]

    def round_start(self, r: int) -> Params:
        """The global model round ``r`` (1-based) started from (server and peer)."""
        if self.initial is None:
            raise ValueError(f"observer {self.observer!r} does not see the models of each round")
        return self.initial if r == 1 else self.globals[r - 2]

    def client_update(self, r: int, c: int) -> NDArray[np.float64]:
        """Client ``c``'s update in round ``r``: its returned model minus the round's start (d,)."""
        return flatten(self.client_params[r - 1][c]) - flatten(self.round_start(r))

    def client_updates(self, r: int) -> NDArray[np.float64]:
        """Every client's update in round ``r``, float64 (K, d), rows by partition id."""
        start = flatten(self.round_start(r))
        return np.stack([flatten(p) - start for p in self.client_params[r - 1]])

    def global_update(self, r: int) -> NDArray[np.float64]:
        """The change of the global model in round ``r`` (server and peer), float64 (d,)."""
        return flatten(self.globals[r - 1]) - flatten(self.round_start(r))


def observe_training(result: FederationResult, observer: str) -> TrainingView:
    """``observer``'s view of the training recorded in ``result``.

    For the server, a round recorded as ``aggregate_only`` shows each client the aggregate (the
    sample-weighted mean of the client models, i.e. the round's global model before any
    server-side wrapper, which the record keeps as ``global_params``).
    """
    if observer not in OBSERVERS:
        raise ValueError(f"unknown observer {observer!r}")
    if observer == "public" or not result.rounds:
        return TrainingView(observer, None, (result.final_params,), (), ())
    globals_ = tuple(r.global_params for r in result.rounds)
    if observer == "peer":
        return TrainingView(observer, result.initial_params, globals_, (), ())
    clients: list[tuple[Params, ...]] = []
    for r in result.rounds:
        if r.aggregate_only:
            clients.append(tuple(r.global_params for _ in r.client_num_examples))
        else:
            clients.append(r.client_params)
    return TrainingView(
        observer,
        result.initial_params,
        globals_,
        tuple(clients),
        tuple(r.client_num_examples for r in result.rounds),
        result.aggregate_only,
    )
