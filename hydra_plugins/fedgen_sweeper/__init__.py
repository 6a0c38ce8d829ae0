"""Hydra's basic sweeper, validating each distinct composition of a sweep once instead of per job.

Hydra composes every job's config once up front (to fail before any job runs) and again when the
job runs. Jobs that differ only in plain values, such as ``threshold=0.3`` and
``threshold=0.45``, compose through the same defaults tree, so validating one of them checks the
others; on the reference study a threshold sweep spends a third of each job in that second
composition. Jobs that differ in a config-group choice (``attack=mia`` vs ``attack=gmia``) or in
a ``hydra.*`` setting are still validated one by one.
"""

from __future__ import annotations

from collections.abc import Sequence

from hydra._internal.core_plugins.basic_sweeper import BasicSweeper


class FedgenSweeper(BasicSweeper):
    """``hydra/sweeper=fedgen``: :class:`BasicSweeper` with de-duplicated up-front validation."""

    def validate_batch_is_legal(self, batch: Sequence[Sequence[str]]) -> None:
        seen: set[tuple[str, ...]] = set()
        unique = []
        for overrides in batch:
            shape = tuple(o for o in overrides if self._shapes_composition(o))
            if shape not in seen:
                seen.add(shape)
                unique.append(overrides)
        super().validate_batch_is_legal(unique)

    def _shapes_composition(self, override: str) -> bool:
        """True for a config-group choice, a deletion or addition, or a ``hydra.*`` setting."""
        key = override.split("=", 1)[0]
        if key.startswith(("+", "~")) or key.lstrip("+").startswith("hydra"):
            return True
        loader = self.hydra_context.config_loader if self.hydra_context is not None else None
        repository = getattr(loader, "repository", None)
        if repository is None:
            return True  # cannot tell: validate it
        return bool(repository.group_exists(key.split("@", 1)[0]))
