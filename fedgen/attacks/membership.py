"""What membership attacks on one model share: their observer, attacked model and threshold."""

from __future__ import annotations

from typing import ClassVar

from fedgen.attacks.base import Arena, Observation, check_threshold
from fedgen.attacks.observers import OBSERVERS, check_observer
from fedgen.attacks.signals import ModelChoice, check_model_choice
from fedgen.attacks.views import MembershipView, membership_view
from fedgen.core.errors import ConfigError

# The model each observer attacks: the server the last local model the candidate's own client
# returned; a peer and the public the final global model (a peer also saw the earlier global
# models, but an attack on one model is strongest on the last).
MODEL_OF_OBSERVER: dict[str, ModelChoice] = {
    "server": "client",
    "peer": "global",
    "public": "global",
}


class MembershipAttack:
    """Base of membership attacks that score candidates on one model of the federation.

    The observer holds the candidates (records and labels); membership stays with the metrics.

    Parameters
    ----------
    name : str
        The attack's key in the ``attack`` config group, used in metric names; empty means the
        class's default (``mia``, ``gmia``).
    observer : {"server", "peer", "public"}
        Who attacks (:mod:`fedgen.attacks.observers`): the ``server`` scores each candidate on
        the last local model its client returned (under secure aggregation, on the aggregate:
        the server then sees what the public sees); a ``peer`` or the ``public`` on the final
        global model.
    threshold : float in [0, 1]
        The decision threshold on this attack's scores.
    model : {"global", "client"}, optional
        The older spelling of the observer: ``client`` is ``observer=server``, ``global`` is
        ``observer=public``.
    """

    default_name: ClassVar[str]
    kind: ClassVar[str] = "membership"
    observers: ClassVar[tuple[str, ...]] = OBSERVERS

    def __init__(
        self,
        name: str = "",
        observer: str | None = None,
        threshold: float = 0.5,
        model: str | None = None,
    ) -> None:
        self.name = name or self.default_name
        if model is not None:
            implied = "server" if check_model_choice(self.name, model) == "client" else "public"
            if observer is not None and MODEL_OF_OBSERVER[observer] != model:
                raise ConfigError(
                    f"attack.{self.name}.model={model!r} contradicts "
                    f"attack.{self.name}.observer={observer!r}; set only the observer"
                )
            observer = observer or implied
        self.observer = check_observer(self.name, observer or "public", self.observers)
        self.model: ModelChoice = MODEL_OF_OBSERVER[self.observer]
        self.threshold = check_threshold(self.name, threshold)

    def observe(self, arena: Arena) -> Observation[MembershipView]:
        """Candidates and their labels; membership stays with the metrics."""
        return membership_view(arena)
