"""Where fedgen's caches live (trained federations, simulated cohorts)."""

import os
from pathlib import Path


def default_cache_dir() -> Path:
    """Return ``$FEDGEN_CACHE_DIR``, else ``$XDG_CACHE_HOME/fedgen``, else ``~/.cache/fedgen``."""
    if explicit := os.environ.get("FEDGEN_CACHE_DIR"):
        return Path(explicit).expanduser()
    if xdg := os.environ.get("XDG_CACHE_HOME"):
        return Path(xdg).expanduser() / "fedgen"
    return Path.home() / ".cache" / "fedgen"
