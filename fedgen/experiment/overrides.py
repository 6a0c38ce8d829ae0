"""Plain-key overrides: the ones Hydra applies last, to the config its groups composed.

A job whose overrides differ from a composed job's only in such keys needs no new composition:
the composed config, copied, with the overrides applied by Hydra's own code, is what composing
would give. The preflight (:mod:`fedgen.experiment.preflight`) checks a sweep's jobs this way
and the command launches them this way (:class:`fedgen.experiment.sweep.SweepConfigs`).
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence

from hydra._internal.config_loader_impl import ConfigLoaderImpl
from hydra.core.override_parser.types import Override
from omegaconf import DictConfig


def sets_plain_key(o: Override, is_group: Callable[[str], bool]) -> bool:
    """Whether ``o`` changes a key's value: not a config group (``is_group`` of its path,
    e.g. ``federation/backend``), nor a package, nor an addition or deletion of a key."""
    return (
        o.type.name == "CHANGE"
        and o.package is None
        and not is_group(o.key_or_group.replace(".", "/"))
    )


def with_overrides(cfg: DictConfig, overrides: Sequence[Override]) -> DictConfig:
    """A copy of the composed ``cfg`` with the plain-key ``overrides`` applied as Hydra applies
    them. Raises Hydra's ``HydraException`` where Hydra would."""
    out = copy.deepcopy(cfg)
    ConfigLoaderImpl._apply_overrides_to_config(list(overrides), out)
    return out
