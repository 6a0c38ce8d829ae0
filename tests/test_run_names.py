"""Run names that show what differs, an MLflow UI that opens on the runs, and console lines that
say where a run's results are."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from mlflow.tracking import MlflowClient

from fedgen.experiment.build import run_name, swept_keys
from fedgen.experiment.sweep import sweep_name
from fedgen.tracking import trackers as tracking
from fedgen.tracking.mlflow_worker import EXPERIMENT_KIND_TAG, MODEL_TRAINING_KIND
from fedgen.tracking.trackers import MlflowTracker, tracked_run, ui_url


def test_run_name_puts_the_overridden_values_first() -> None:
    overrides = ["attack=gmia", "threshold=0.45", "federation.num_clients=10", "hydra.verbose=1"]
    assert run_name(overrides, ["gmia"], 0.45) == "num_clients=10 · gmia t=0.45"
    assert run_name(["+defense.noise_multiplier=0.1", "seed=1"], [], 0.5) == (
        "noise_multiplier=0.1 · seed=1 · no attack t=0.5"
    )
    # Keys whose last parts clash keep their full path.
    assert run_name(["a.seed=1", "b.seed=2"], ["mia"], 0.5) == "a.seed=1 · b.seed=2 · mia t=0.5"
    nine = [f"attack{i}" for i in range(9)]
    assert run_name(["seed=3"], nine, 0.5) == "seed=3 · 9 attacks t=0.5"


def test_a_sweep_job_is_named_by_the_values_its_sweep_chose_first(tmp_path: Path) -> None:
    # What Hydra's basic sweeper writes: the sweep's own overrides, lists unexpanded.
    task = ["dataset=tiny", "attack=gmia", "federation.num_clients=2,5,10", "threshold=0.3,0.5"]
    task += ["figures=false", "seed=range(2)"]
    (tmp_path / "multirun.yaml").write_text(
        "hydra:\n  overrides:\n    task:\n" + "".join(f"    - {o}\n" for o in task)
    )
    job = ["dataset=tiny", "attack=gmia", "federation.num_clients=5", "threshold=0.3"]
    # Hydra hands the job `figures=False` for the sweep's `figures=false`: not a swept value
    assert swept_keys([*job, "figures=False", "seed=1"], tmp_path) == {
        "federation.num_clients",
        "threshold",
        "seed",
    }
    swept = swept_keys(job, tmp_path)
    assert swept == {"federation.num_clients", "threshold"}
    assert run_name(job, ["gmia"], 0.3, swept) == "num_clients=5 · gmia t=0.3 · dataset=tiny"
    # only the threshold swept: the attack and its threshold lead
    assert run_name(job, ["gmia"], 0.3, {"threshold"}) == (
        "gmia t=0.3 · dataset=tiny · num_clients=5"
    )
    # a sweeper's own parameter (absent from the task overrides) counts as chosen
    assert swept_keys([*job, "+model.alpha=0.01"], tmp_path) == swept | {"model.alpha"}
    # outside a sweep, or with no multirun.yaml: the command line's order
    assert swept_keys(job, None) == swept_keys(job, tmp_path / "none") == set()
    assert run_name(job, ["gmia"], 0.3) == "dataset=tiny · num_clients=5 · gmia t=0.3"


keys = st.from_regex(r"[a-z_]{1,12}(\.[a-z_]{1,12}){0,3}", fullmatch=True)
values = st.text(st.characters(min_codepoint=33, max_codepoint=126), min_size=1, max_size=40)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.tuples(keys, values), max_size=8, unique_by=lambda kv: kv[0]),
    st.lists(st.from_regex(r"[a-z]{2,6}", fullmatch=True), max_size=12),
    st.floats(0.01, 0.99),
)
def test_run_name_is_short_and_starts_with_the_first_value(
    pairs: list[tuple[str, str]], attacks: list[str], threshold: float
) -> None:
    pairs = [(k, v) for k, v in pairs if not k.startswith(("hydra", "tracking"))]
    name = run_name([f"{k}={v}" for k, v in pairs], attacks, threshold)
    assert len(name) <= 90
    if pairs:
        key, value = pairs[0]
        expected = f"{key.rsplit('.', 1)[-1]}={value}"
        assert name.startswith(expected[:20]) or name.startswith(f"{key}={value}"[:20])
    else:
        assert name.endswith(f"t={threshold:g}")


def test_sweep_parent_is_named_after_what_it_sweeps() -> None:
    task = ["federation.num_clients=3,10", "seed=range(3)", "attack=[mia,gmia]", "dataset=tiny"]
    assert sweep_name(task, "2026-12-02 14:05") == "sweep num_clients, seed 2026-12-02 14:05"
    assert sweep_name(["dataset=tiny"], "2026-12-02 14:05") == "sweep 2026-12-02 14:05"


def test_ui_url_opens_the_run_list_in_model_training_mode() -> None:
    assert ui_url("4") == "http://127.0.0.1:5000/#/experiments/4/runs?workflowType=machine_learning"
    assert ui_url("4", "abc", "http://mlflow.lab:8080/") == (
        "http://mlflow.lab:8080/#/experiments/4/runs/abc?workflowType=machine_learning"
    )


@pytest.mark.slow
def test_experiment_is_tagged_for_model_training_unless_the_user_chose(tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(uri)
    chosen = client.create_experiment("mine", (tmp_path / "mlruns").as_uri())
    client.set_experiment_tag(chosen, EXPERIMENT_KIND_TAG, "genai_development")
    fresh = MlflowTracker(uri=None, experiment="new", launch_dir=tmp_path)
    MlflowTracker(uri=None, experiment="mine", launch_dir=tmp_path)
    with tracked_run(fresh, "r", {}, {}):
        pass
    tracking.flush()
    made = client.get_experiment_by_name("new")
    assert made is not None and made.experiment_id == fresh.experiment_id
    assert made.tags[EXPERIMENT_KIND_TAG] == MODEL_TRAINING_KIND
    assert client.get_experiment(chosen).tags[EXPERIMENT_KIND_TAG] == "genai_development"
    (run,) = client.search_runs([made.experiment_id])
    lines = fresh.where()
    assert lines[0] == f"MLflow run {run.info.run_id} in experiment new ({uri})"
    assert lines[1].endswith(ui_url(made.experiment_id, run.info.run_id))
    assert f"ui --backend-store-uri {uri} then open" in lines[1]


@pytest.mark.slow
def test_console_last_lines_name_the_results_run_and_page(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    env["FEDGEN_CACHE_DIR"] = str(tmp_path / "cache")
    args = ["dataset=tiny", "federation.num_rounds=1", "federation.num_clients=3", "attack=gmia"]
    out = subprocess.run(
        [sys.executable, "-m", "fedgen", *args, "hydra.run.dir=out"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    uri = f"sqlite:///{(tmp_path / 'mlflow.db').resolve()}"
    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name("fedgen")
    assert experiment is not None
    (run,) = client.search_runs([experiment.experiment_id])
    assert run.info.run_name == "dataset=tiny · num_rounds=1 · num_clients=3 · gmia t=0.5"
    last = out.stdout.rstrip("\n").splitlines()[-3:]
    found = re.search(r"results: (.*)$", last[0])
    assert found is not None and found.group(1) == str((tmp_path / "out").resolve())
    assert last[1] == f"MLflow run {run.info.run_id} in experiment fedgen ({uri})"
    assert last[2].startswith("see it: ")
    assert last[2].endswith(f"then open {ui_url(experiment.experiment_id, run.info.run_id)}")
