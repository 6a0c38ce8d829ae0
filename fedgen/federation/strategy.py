"""Server strategies: Flower's own, sized at run time; the old recording name kept for old runs."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from flwr.serverapp.strategy import FedAvg


def sized_strategy(factory: Callable[..., Any], num_clients: int) -> Any:
    """Build the configured strategy so that every round waits for all ``num_clients``.

    ``factory`` is the ``federation.strategy`` config node instantiated with ``_partial_``
    (any Flower strategy class, e.g. ``flwr.serverapp.strategy.FedAvg``).
    """
    return factory(
        min_train_nodes=num_clients,
        min_evaluate_nodes=num_clients,
        min_available_nodes=num_clients,
    )


class RecordingFedAvg(FedAvg):
    """Flower's FedAvg under the name that runs stored before version 0.2 give as ``_target_``.

    Recording moved to the Grid (:mod:`fedgen.federation.recorder`); this class only accepts
    the keyword arguments that old configs and callers pass.
    """

    def __init__(
        self, *, num_clients: int | None = None, num_rounds: int | None = None, **kwargs: Any
    ) -> None:
        if num_clients is not None:
            for key in ("min_train_nodes", "min_evaluate_nodes", "min_available_nodes"):
                kwargs.setdefault(key, num_clients)
        super().__init__(**kwargs)
