"""Hostile input on the command line: one `fedgen: error:` line, exit 2, nothing written.

Every case runs the real entry point (``fedgen.cli.main``) in-process; the command-line check
(:mod:`fedgen.experiment.preflight`) must stop each one before Hydra makes a job directory or a
tracking store exists, so the test asserts that the working directory stays empty (no output
directory, no ``mlflow.db``: no run can be RUNNING or FINISHED). The MLflow helper process and
the figure processes, which the CLI starts early for speed, are not started here.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from fedgen import cli

GOOD_CSV = "snp_a,snp_b,label\n" + "0,1,0\n2,1,1\n" * 20

CASES: list[tuple[list[str], str]] = [
    # Unknown keys and options, with what was probably meant.
    (["threshhold=0.3"], "threshhold is not a config key (did you mean threshold?)"),
    (["seeed=3"], "seeed is not a config key (did you mean seed?)"),
    (["federation.num_clents=3"], "federation.num_clents is not a config key (did you mean"),
    (["dataset.n_snp=10"], "dataset.n_snp is not a config key (did you mean dataset.n_snps"),
    (["model.alph=0.1"], "model.alph is not a config key"),
    (["attack=foo"], "attack=foo is not an option of `attack`; the options are: "),
    (["attack=gmai"], "attack=gmai is not an option of `attack` (did you mean gmia?)"),
    (["attack=[mia,gmai]"], "attack=gmai is not an option of `attack` (did you mean gmia?)"),
    (["dataset=nope"], "dataset=nope is not an option of `dataset`; the options are: "),
    (["model=svm"], "model=svm is not an option of `model`; the options are: "),
    (["defense=dp"], "defense=dp is not an option of `defense`"),
    (["evaluation=fair"], "evaluation=fair is not an option of `evaluation`"),
    (["experiment=leaky2"], "experiment=leaky2 is not an option of `experiment` (did you mean"),
    (["federation/backend=rey"], "federation/backend=rey is not an option of"),
    (["federation.backend=ray"], "federation.backend=ray sets a key, but federation.backend is"),
    # A sweep without --multirun.
    (["attack=mia,gmia"], "attack=mia,gmia lists several values, which makes a sweep"),
    (["threshold=0.3,0.5"], "threshold=0.3,0.5 lists several values, which makes a sweep"),
    # Wrong types and ranges.
    (["threshold=1.5"], "threshold=1.5 must be in [0, 1]"),
    (["threshold=abc"], "threshold='abc' must be a number in [0, 1]"),
    (["seed=-3"], "seed=-3 must be a non-negative integer"),
    (["seed=1.5"], "seed=1.5 must be a non-negative integer"),
    (["dataset.n_snps=10.5"], "dataset.n_snps=10.5 must be an integer"),
    (["dataset.n_individuals=1e3"], "dataset.n_individuals=1000.0 must be an integer"),
    (["dataset.n_causal=500"], "dataset.n_causal=500 must be between 0 and dataset.n_snps"),
    (["dataset.prevalence=0"], "dataset.prevalence must be in (0, 1)"),
    (["dataset.heritability=abc"], "dataset.heritability='abc' must be a number"),
    (["dataset.n_snps=10000000000"], "dataset of 20,000 individuals x 10,000,000,000 SNPs"),
    (["federation.num_clients=0"], "federation.num_clients=0 must be a positive integer"),
    (["federation.num_clients=abc"], "federation.num_clients='abc' must be a positive integer"),
    (["federation.num_rounds=-1"], "federation.num_rounds=-1 must be a positive integer"),
    (["federation.test_fraction=1.5"], "federation.test_fraction=1.5 must be"),
    (["evaluation.n_bootstrap=-1"], "evaluation.n_bootstrap=-1 must be a non-negative integer"),
    (["cache=maybe"], "cache='maybe' must be true or false"),
    (["figures=2"], "figures=2 must be true or false"),
    (["+model.alpha=-1"], "invalid model setting: The 'alpha' parameter of SGDClassifier"),
    (["model.loss=hinge"], "model.loss='hinge' is not supported"),
    (["objective=auc"], "objective='auc' names no metric of this run"),
    (["attack=lrt", "attack.lrt.observer=public"], "attack lrt cannot be run by observer"),
    (["attack.gmia.observer=hospital"], "attack.gmia.observer='hospital' is not an observer"),
    (["attack=lrt", "model=mlp"], "attack lrt (lrt) needs a linear model"),
    (["attack.lia.aux_fraction=1"], "attack.lia.aux_fraction=1 must be in (0, 1)"),
    (["attack=phenotype", "attack.phenotype.observer=peer"], "attack phenotype cannot be run"),
    # Every value of a sweep is checked before the first job.
    (["--multirun", "threshold=0.3,7"], "threshold=7 must be in [0, 1] (in the job with"),
    (["--multirun", "seed=1,2,x"], "seed='x' must be a non-negative integer (in the job with"),
    (["--multirun", "attack=mia,nope"], "attack=nope is not an option of `attack`"),
    # Data files: missing, a directory, no label, no SNPs, empty.
    (["dataset=csv"], "dataset.path is not set; pass dataset.path=<value>"),
    (["dataset=csv", "dataset.path=missing.csv"], "cohort file missing.csv does not exist"),
    (["dataset=csv", "dataset.path=."], "cohort file . is a directory"),
    (["dataset=csv", "dataset.path=nolabel.csv"], "cohort file nolabel.csv has no 'label'"),
    (["dataset=csv", "dataset.path=onlylabel.csv"], "cohort file onlylabel.csv has no SNP"),
    (["dataset=csv", "dataset.path=empty.csv"], "cohort file empty.csv is empty"),
    (
        ["dataset=csv", "dataset.path=good.csv", "dataset.reference_fraction=1"],
        "dataset.reference_fraction=1 must be in [0, 1)",
    ),
]


@pytest.fixture()
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty launch directory (data files aside), with the early helper processes off."""
    data = tmp_path / "data"
    data.mkdir()
    (data / "good.csv").write_text(GOOD_CSV)
    (data / "nolabel.csv").write_text("snp_a,snp_b\n0,1\n")
    (data / "onlylabel.csv").write_text("label,sex\n0,1\n")
    (data / "empty.csv").write_text("")
    monkeypatch.chdir(data)
    monkeypatch.setattr(cli, "prestart_worker", lambda: None)
    from fedgen.figures import pool

    monkeypatch.setattr(pool, "start", lambda: None)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    return data


@pytest.mark.parametrize(("args", "first_line"), CASES, ids=[" ".join(a) for a, _ in CASES])
def test_hostile_input_is_one_line_exit_2_and_nothing_written(
    workdir: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    args: list[str],
    first_line: str,
) -> None:
    before = sorted(p.name for p in workdir.iterdir())
    monkeypatch.setattr(sys, "argv", ["fedgen", *args])
    with pytest.raises(SystemExit) as stop:
        cli.main()
    assert stop.value.code == 2
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith(f"fedgen: error: {first_line}"), lines[0]
    assert "+" + args[-1] not in lines[0] or args[-1].startswith("model.")  # never "+key"
    assert sorted(p.name for p in workdir.iterdir()) == before  # no outputs/, no mlflow.db


def test_there_are_at_least_forty_cases() -> None:
    assert len(CASES) >= 40


def test_help_lists_the_groups_and_version_is_fedgens(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import fedgen

    monkeypatch.setattr(sys, "argv", ["fedgen", "--help"])
    cli.main()
    out = capsys.readouterr().out
    assert out.startswith("usage: python -m fedgen")
    assert "attack " in out and "gmia" in out and "federation/backend" in out
    assert "Hydra" in out and "powered by Hydra" not in out
    monkeypatch.setattr(sys, "argv", ["fedgen", "--version"])
    cli.main()
    assert capsys.readouterr().out.strip() == f"fedgen {fedgen.__version__}"


STORE_CASES: list[tuple[list[str], str]] = [
    (["tracking.uri=bogus://x"], "tracking.uri='bogus://x': MLflow has no store for the scheme"),
    (["tracking.uri=http://127.0.0.1:9/"], "the MLflow store http://127.0.0.1:9/ did not answer"),
    (["tracking.experiment="], "tracking.experiment='' must be a non-empty name"),
]


@pytest.mark.parametrize(
    ("args", "first_line"), STORE_CASES, ids=[" ".join(a) for a, _ in STORE_CASES]
)
def test_a_bad_store_is_one_line_before_training_and_leaves_no_run(
    tmp_path: Path, args: list[str], first_line: str
) -> None:
    # A subprocess: the store is opened by the MLflow helper process, which must be this
    # command's own (an in-process run would share one with earlier tests).
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    env["FEDGEN_CACHE_DIR"] = str(tmp_path / "cache")
    command = [sys.executable, "-m", "fedgen", "dataset=tiny", "federation.num_rounds=2"]
    out = subprocess.run(
        [*command, "figures=false", *args],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert out.returncode == 2, out.stderr
    errors = [line for line in out.stderr.splitlines() if line.startswith("fedgen: error:")]
    assert len(errors) == 1 and errors[0].startswith(f"fedgen: error: {first_line}"), out.stderr
    assert "round 1/" not in out.stderr + out.stdout  # the store is checked before training
    assert not (tmp_path / "mlflow.db").exists()
