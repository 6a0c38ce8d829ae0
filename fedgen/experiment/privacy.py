"""What the configured defenses guarantee (accounted epsilon) beside what the attacks show."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

from fedgen.core.records import Split
from fedgen.defenses import Defense, PrivacyAccount, TrainingShape
from fedgen.federation import FederationSettings

log = logging.getLogger("fedgen")


@dataclass(frozen=True)
class Privacy:
    """The run's accounted guarantees, one per defense that makes a DP claim.

    ``epsilon`` and ``delta`` combine them by basic composition (sums: an upper bound when
    several defenses each claim a guarantee); ``unit`` is ``client``, ``record`` or ``mixed``.
    """

    accounts: dict[str, PrivacyAccount]

    @property
    def epsilon(self) -> float:
        return sum(a.epsilon for a in self.accounts.values())

    @property
    def delta(self) -> float:
        return sum(a.delta for a in self.accounts.values())

    @property
    def unit(self) -> str:
        units = {a.unit for a in self.accounts.values()}
        return units.pop() if len(units) == 1 else "mixed"

    def record_epsilon(self, observer: str) -> float | None:
        """The epsilon a membership audit by ``observer`` may not exceed (record level).

        Only the guarantees that hold against ``observer`` count (None if none does). A
        record-level guarantee bounds it directly; a client-level one (add/remove of a whole
        client) bounds replacing one record of a client by group privacy: 2 epsilon.
        """
        covering = [a for a in self.accounts.values() if observer in a.observers]
        if not covering:
            return None
        return sum(a.epsilon * (2.0 if a.unit == "client" else 1.0) for a in covering)

    def metrics(self) -> dict[str, float]:
        if not self.accounts:
            return {}
        out = {"privacy/epsilon": self.epsilon, "privacy/delta": self.delta}
        for name, a in self.accounts.items():
            out[f"privacy/{name}/epsilon"] = a.epsilon
            out[f"privacy/{name}/delta"] = a.delta
        return out

    def tags(self) -> dict[str, str]:
        if not self.accounts:
            return {}
        out = {"privacy.unit": self.unit}
        for name, a in self.accounts.items():
            out[f"privacy.{name}.unit"] = a.unit
            out[f"privacy.{name}.accountant"] = a.accountant
            out[f"privacy.{name}.assumptions"] = a.assumptions
        return out


def account(defenses: Sequence[Defense], federation: FederationSettings, split: Split) -> Privacy:
    """Ask every defense for its accounted guarantee on this run's training."""
    shape = TrainingShape(
        num_clients=split.num_clients,
        num_rounds=federation.num_rounds,
        local_epochs=federation.local_epochs,
        client_train_sizes=tuple(int(c.train.shape[0]) for c in split.clients),
    )
    accounts = {d.name: a for d in defenses if (a := d.account(shape)) is not None}
    for name, a in accounts.items():
        log.info(
            "privacy: %s gives (%.3g, %.1e)-DP per %s (%s; %s)",
            name,
            a.epsilon,
            a.delta,
            a.unit,
            a.accountant,
            a.assumptions,
        )
    return Privacy(accounts)


def audit_violations(
    privacy: Privacy, lower_bounds: dict[str, tuple[str, float]]
) -> dict[str, tuple[float, float]]:
    """Attacks whose empirical epsilon lower bound exceeds the accounted record-level epsilon.

    Parameters
    ----------
    lower_bounds : dict of attack name to (observer, bound)
        Each membership attack's observer (``server`` or ``public``) and its audit bound.

    Returns
    -------
    dict of attack name to (bound, accounted limit)
        Only attacks by an observer some guarantee covers are checked. A non-empty answer
        means a bug in fedgen (a defense or its accountant), never leakage to report.
    """
    out = {}
    for name, (observer, bound) in lower_bounds.items():
        limit = privacy.record_epsilon(observer)
        if limit is not None and bound > limit + 1e-9:
            out[name] = (bound, limit)
    return out
