"""The `fedgen` command: Hydra composes the config, the builder makes objects, the pipeline runs."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig

from fedgen.build import build_experiment
from fedgen.errors import FedgenError
from fedgen.logs import quiet_third_party
from fedgen.pipeline import run_experiment

log = logging.getLogger("fedgen")


@hydra.main(config_path="pkg://fedgen.conf", config_name="config", version_base="1.3")
def _job(cfg: DictConfig) -> float:
    quiet_third_party()
    hc = HydraConfig.get()
    multirun = hc.mode == RunMode.MULTIRUN
    try:
        experiment = build_experiment(
            cfg,
            launch_dir=Path(hc.runtime.cwd),
            output_dir=Path(hc.runtime.output_dir),
            sweep_dir=Path(hc.sweep.dir).resolve() if multirun else None,
            overrides=list(hc.overrides.task),
        )
        result = run_experiment(experiment)
    except FedgenError as exc:
        if multirun:
            raise  # Hydra reports the failed job of the sweep with its overrides
        print(f"fedgen: error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    return result.rounds[-1].metrics["fed/test_accuracy"]


def main() -> None:
    """Console entry point (`fedgen` and `python -m fedgen`)."""
    _job()
