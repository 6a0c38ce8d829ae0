"""What membership attacks share: their threat model, attacked model and threshold."""

from __future__ import annotations

from typing import ClassVar

from fedgen.attacks.base import Arena, Observation, check_threshold
from fedgen.attacks.signals import check_model_choice
from fedgen.attacks.views import MembershipView, membership_view


class MembershipAttack:
    """Base of attacks on an honest-but-curious server holding candidate records.

    The server sees the candidates (records and labels) and every model of the federation;
    membership stays with the metrics.

    Parameters
    ----------
    name : str
        The attack's key in the ``attack`` config group, used in metric names; empty means the
        class's default (``mia``, ``gmia``).
    model : {"global", "client"}
        Which model is attacked: the final global model, or the last local model the
        candidate's own client returned to the server.
    threshold : float in [0, 1]
        The decision threshold on this attack's scores.
    """

    default_name: ClassVar[str]

    def __init__(self, name: str = "", model: str = "global", threshold: float = 0.5) -> None:
        self.name = name or self.default_name
        self.model = check_model_choice(self.name, model)
        self.threshold = check_threshold(self.name, threshold)

    def observe(self, arena: Arena) -> Observation[MembershipView]:
        """Candidates and their labels; membership stays with the metrics."""
        return membership_view(arena)
