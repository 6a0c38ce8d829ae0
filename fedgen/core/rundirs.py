"""Job directories that no two runs share, even when started in the same second.

Hydra names a job directory by the time in seconds (``${now:%H-%M-%S}``): two runs started in
the same second from one directory wrote into the same folder, and each uploaded the other's
files. The resolver ``${fedgen.unique:}`` adds the microseconds and the process id; it is
cached like Hydra's ``now``, so every job of a sweep sees the same value. It must be registered
before Hydra composes the config (:func:`register`, called by the CLI first thing).
"""

from __future__ import annotations

import os
from datetime import datetime

RESOLVER = "fedgen.unique"


def unique_stamp() -> str:
    """``<microseconds>-<pid>``: no two live processes of a host share it."""
    return f"{datetime.now().microsecond:06d}-{os.getpid()}"


def register() -> None:
    """Register ``${fedgen.unique:}`` with OmegaConf (idempotent)."""
    from omegaconf import OmegaConf

    if not OmegaConf.has_resolver(RESOLVER):
        OmegaConf.register_new_resolver(RESOLVER, unique_stamp, use_cache=True)
