"""A quiet install: building fedgen (as `make install` does) prints no setuptools warning."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
# What setuptools says about a package it finds but was not told of, an old-style license,
# or anything else it deprecates; pip shows the backend's output with -v.
SETUPTOOLS_WARNING = re.compile(
    r"SetuptoolsDeprecationWarning|SetuptoolsWarning|BuildBackendWarning"
    r"|is absent from the `packages`"
    r"|License classifiers are deprecated|`project.license` as a TOML table",
    re.IGNORECASE,
)


@pytest.mark.slow
def test_building_the_wheel_prints_no_setuptools_warning(tmp_path: Path) -> None:
    built = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-v", "--no-deps", "-w", str(tmp_path), str(ROOT)],
        capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    log = built.stdout + built.stderr
    assert built.returncode == 0, log[-3000:]
    assert "setuptools" in log  # the backend's own output is in the log: the check can fail
    warned = sorted({line.strip() for line in log.splitlines() if SETUPTOOLS_WARNING.search(line)})
    assert warned == []
