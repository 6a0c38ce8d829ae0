"""Every experiment preset in conf/experiment/ composes and runs end to end (tiny sizes)."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from omegaconf import DictConfig

CONF = Path(__file__).resolve().parent.parent / "conf" / "experiment"
PRESETS = sorted(p.stem for p in CONF.glob("*.yaml"))
TINY = (
    "dataset.n_individuals=200",
    "dataset.n_snps=30",
    "dataset.n_causal=5",
    "federation.num_rounds=2",
    "evaluation.n_bootstrap=0",
    "tracking=none",
    "figures=false",
    "cache=false",
)


def test_the_presets_the_issue_names_exist() -> None:
    assert {"paper_table1", "paper_table1_fit", "leaky", "leaky_fit"} <= set(PRESETS)


@pytest.mark.parametrize("name", PRESETS)
def test_preset_composes(name: str, compose_cfg: Callable[..., DictConfig]) -> None:
    cfg = compose_cfg(f"experiment={name}")
    assert cfg.dataset.n_snps >= 100
    if name.startswith("leaky"):  # learnable_leaky has its own size
        assert (cfg.dataset.n_individuals, cfg.dataset.n_snps) == (1000, 5000)
    if name.endswith("_fit"):
        assert cfg.model.learning_rate == "constant"


def test_paper_table1_is_the_default(compose_cfg: Callable[..., DictConfig]) -> None:
    assert compose_cfg("experiment=paper_table1") == compose_cfg()


@pytest.mark.slow
def test_every_preset_runs_in_one_multirun(
    tmp_path: Path, compose_cfg: Callable[..., DictConfig]
) -> None:
    sweep = tmp_path / "sweep"
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "fedgen",
            "--multirun",
            "experiment=glob(*)",
            *TINY,
            f"hydra.sweep.dir={sweep}",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    runs = [json.loads(p.read_text()) for p in sorted(sweep.glob("*/run.json"))]
    assert len(runs) == len(PRESETS)
    models = sorted(r["params"].get("model.learning_rate", "optimal") for r in runs)
    expected = sorted(
        compose_cfg(f"experiment={p}").model.get("learning_rate", "optimal") for p in PRESETS
    )
    assert models == expected
    for run in runs:
        assert run["params"]["dataset.n_snps"] == "30"
        aucs = [v for k, v in run["metrics"].items() if k.endswith("/auc") and k.count("/") == 1]
        assert aucs and all(0.0 <= v <= 1.0 for v in aucs)
        assert "fed/test_accuracy" in run["metrics"]
