"""Typed settings of the `federation` config group."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from fedgen.core.errors import ConfigError

if TYPE_CHECKING:  # types only: building settings must not import Flower (a cache hit trains not)
    from flwr.clientapp import ClientApp
    from flwr.serverapp import ServerApp


class Deferred:
    """A setting made when it is first read: ``build()`` then replaces it in the settings.

    The builder (:mod:`fedgen.experiment.build`) passes the backend and the strategy this way,
    so that settings (and a job whose federation comes from the training cache) are made
    without importing Flower or Ray.
    """

    def __init__(self, build: Callable[[], Any]) -> None:
        self.build = build

    def __repr__(self) -> str:
        return "Deferred(...)"


class Runner(Protocol):
    """A backend that executes a ServerApp against ``num_clients`` ClientApp nodes."""

    def run(self, server_app: ServerApp, client_app: ClientApp, num_clients: int) -> None:
        """Run to completion; an exception raised by the ServerApp propagates."""
        ...


@dataclass(frozen=True)
class FederationSettings:
    """FedAvg over IID clients, as in the reference study.

    Attributes
    ----------
    num_clients : int
        Clients (Flower SuperNodes), each with a disjoint share of the cohort.
    num_rounds : int
        FedAvg rounds.
    local_epochs : int
        Passes over the whole local train set per round.
    test_fraction : float
        Share of each client's rows held out (stratified by label) as its test rows.
    backend : Runner
        Where the apps run (``federation/backend``: ``inprocess`` or ``ray``).
    strategy : callable
        Builds the recording strategy; called with the node counts at run time.

    Either may be given as a :class:`Deferred`, built when the field is first read.
    """

    backend: Runner
    strategy: Callable[..., Any]
    num_clients: int = 5
    num_rounds: int = 10
    local_epochs: int = 1
    test_fraction: float = 0.2

    def __getattribute__(self, name: str) -> Any:
        value = object.__getattribute__(self, name)
        if isinstance(value, Deferred):  # first read: build it now, once
            value = value.build()
            object.__setattr__(self, name, value)
        return value

    def __post_init__(self) -> None:
        for key in ("num_clients", "num_rounds", "local_epochs"):
            value = getattr(self, key)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ConfigError(f"federation.{key}={value!r} must be a positive integer")
        if not 0.0 < self.test_fraction < 1.0:
            raise ConfigError(f"federation.test_fraction={self.test_fraction} must be in (0, 1)")
