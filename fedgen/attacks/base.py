"""The attack protocol, and the arena that only the experiment (never an attack) reads."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Generic, Protocol, TypeVar

import numpy as np
from numpy.typing import NDArray

from fedgen.core.errors import ConfigError
from fedgen.core.records import AttackResult, Cohort, FederationResult, Pool, Split
from fedgen.models import Model

V = TypeVar("V")


@dataclass(frozen=True)
class Arena:
    """Everything the experiment knows after training, ground truth included.

    Attacks never receive it: each attack's ``observe`` declares its threat model by building,
    from the arena, the view it is allowed (see :mod:`fedgen.attacks.views`), and the truth
    that goes only to the metrics. ``server`` is the record of what the server received and
    sent (:mod:`fedgen.federation.recorder`); ``model`` is the model's interface (the
    architecture and training settings, which the server knows); ``split`` is every client's
    train and test rows (the truth about who trained where; None where unknown).
    """

    cohort: Cohort
    pool: Pool
    server: FederationResult
    seed: int
    model: Model
    split: Split | None = None


@dataclass(frozen=True)
class Observation(Generic[V]):
    """A view for the attacker, and the truth about its targets for the metrics.

    Attributes
    ----------
    view : V
        What the attacker may see.
    truth : ndarray of bool, shape (n,)
        Per target: member (membership attacks) or label 1 (label inference).
    clients : ndarray of int64, shape (n,)
        Per target: the client it belongs to, for per-client leakage.
    facts : dict of str to ndarray of float64
        The truth behind each of the attack's ``estimates`` (same key and shape), e.g. each
        client's true number of cases.
    baselines : dict of str to ndarray of float64
        Per estimate, what an attacker without the observation would guess: the trivial
        guess (``count``: same shape as the fact) or chance (``category``: one value).
    """

    view: V
    truth: NDArray[np.bool_]
    clients: NDArray[np.int64]
    facts: dict[str, NDArray[np.float64]] = field(default_factory=dict)
    baselines: dict[str, NDArray[np.float64]] = field(default_factory=dict)


class Attack(Protocol[V]):
    """An inference attack: a threat model (``observe``) and an inference (``run``).

    ``threshold`` is the attack's own decision threshold, on the scale of its own scores
    (``attack.<name>.threshold``, by default the top-level ``threshold``). ``observer`` is who
    runs it (:mod:`fedgen.attacks.observers`: ``server``, ``peer`` or ``public``), one of the
    class's ``observers``.
    """

    name: str
    threshold: float
    observer: str

    def observe(self, arena: Arena) -> Observation[V]:
        """Build this attack's view of the experiment, and the truth about its targets."""
        ...

    def run(self, view: V) -> AttackResult:
        """Score every target of ``view``."""
        ...


def check_threshold(name: str, threshold: object) -> float:
    """Validate ``attack.<name>.threshold``: a number in [0, 1]."""
    if isinstance(threshold, bool) or not isinstance(threshold, int | float):
        raise ConfigError(f"attack.{name}.threshold={threshold!r} must be a number in [0, 1]")
    if not 0.0 <= threshold <= 1.0:
        raise ConfigError(f"attack.{name}.threshold={threshold!r} must be in [0, 1]")
    return float(threshold)
