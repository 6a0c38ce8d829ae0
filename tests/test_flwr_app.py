"""The `flwr run` app (fedgen.flwr_app) trains exactly what the pipeline trains."""

from __future__ import annotations

import gc
import hashlib
import re
import tempfile
import tomllib
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from flwr.app import Context, Message, RecordDict
from flwr.clientapp import ClientApp
from flwr.supercore.task_identity import TaskIdentity
from hydra import compose, initialize_config_module
from hydra.utils import instantiate
from omegaconf import DictConfig

from fedgen import flwr_app
from fedgen.core.errors import ConfigError
from fedgen.core.records import FederationResult, Params
from fedgen.core.seeding import child_rng
from fedgen.data import partition
from fedgen.experiment.build import build_experiment
from fedgen.experiment.pipeline import run_experiment, training_log_csv
from fedgen.federation.arrays import from_record, to_record
from fedgen.federation.grid import InProcessGrid
from fedgen.federation.runners import RayRunner
from fedgen.models import SGDLogistic

ROOT = Path(__file__).resolve().parent.parent
TINY = "dataset=tiny federation.num_rounds=3 seed=3"
# The final global parameters of the default experiment (`python -m fedgen`), as
# params_digest reports them: any change to the numbers of the default run changes it.
DEFAULT_DIGEST = "e52281def2cd2b6f"


def _compose(overrides: str) -> DictConfig:
    with initialize_config_module(config_module="fedgen.conf", version_base="1.3"):
        return compose(config_name="config", overrides=overrides.split())


def _pipeline_result(overrides: str) -> FederationResult:
    """What `python -m fedgen <overrides>` trains: run_experiment's own federation."""
    cfg = _compose(f"{overrides} tracking=none figures=false cache=false attack=mia")
    with tempfile.TemporaryDirectory() as tmp:
        experiment = build_experiment(cfg, launch_dir=Path(tmp), output_dir=Path(tmp) / "out")
        return run_experiment(experiment).federation


def _assert_params_equal(got: Params, want: Params) -> None:
    """Same names in the same order, bit-identical float64 arrays."""
    assert list(got) == list(want)
    for name in want:
        assert got[name].dtype == np.float64, name
        np.testing.assert_array_equal(got[name], want[name], err_msg=name)


def _run_config(overrides: str, **extra: Any) -> dict[str, Any]:
    return {"overrides": overrides, "training-log": "", **extra}


def _relay(run_config: dict[str, Any]) -> ClientApp:
    """The module-level ClientApp, its nodes given the run config as Flower's runtime does."""
    relay = ClientApp()

    @relay.train()
    def _train(msg: Message, context: Context) -> Message:
        context.run_config = dict(run_config)
        return flwr_app.client_app(msg, context)

    @relay.evaluate()
    def _evaluate(msg: Message, context: Context) -> Message:
        context.run_config = dict(run_config)
        return flwr_app.client_app(msg, context)

    return relay


def _run_in_process(run_config: dict[str, Any], num_nodes: int) -> Context:
    """Run the module-level ServerApp on fedgen's in-process grid; return its Context."""
    TaskIdentity.task_id = 1
    TaskIdentity.run_id = 1
    TaskIdentity.node_id = 1
    grid = InProcessGrid(_relay(run_config), num_nodes, run_id=1)
    context = Context(
        run_id=1, node_id=0, node_config={}, state=RecordDict(), run_config=dict(run_config)
    )
    flwr_app.server_app(grid=grid, context=context)
    return context


def test_flwr_apps_train_the_same_parameters_as_the_pipeline(tmp_path: Path) -> None:
    log_path = tmp_path / "logs" / "training_log.csv"
    context = _run_in_process(_run_config(TINY, **{"training-log": str(log_path)}), 5)
    expected = _pipeline_result(TINY)

    got = from_record(context.state.array_records[flwr_app.FINAL_ARRAYS_KEY])
    _assert_params_equal(got, expected.final_params)
    assert dict(context.state.metric_records[flwr_app.FINAL_METRICS_KEY]) == dict(
        expected.rounds[-1].metrics
    )
    assert log_path.read_text() == training_log_csv(expected)
    assert flwr_app.params_digest(got) == flwr_app.params_digest(expected.final_params)


def test_other_overrides_reach_server_and_clients() -> None:
    overrides = "dataset=tiny federation.num_clients=3 federation.num_rounds=2 seed=11"
    context = _run_in_process(_run_config(overrides), 3)
    got = from_record(context.state.array_records[flwr_app.FINAL_ARRAYS_KEY])
    expected = _pipeline_result(overrides)
    _assert_params_equal(got, expected.final_params)
    assert len(expected.rounds) == 2 and len(expected.rounds[-1].client_params) == 3


def test_supernode_count_must_equal_num_clients() -> None:
    with pytest.raises(ConfigError, match=r"4 SuperNodes.*federation\.num_clients=5"):
        _run_in_process(_run_config(TINY), 4)


def test_client_rejects_a_federation_of_another_size() -> None:
    TaskIdentity.task_id = 1
    TaskIdentity.run_id = 1
    TaskIdentity.node_id = 1
    content = RecordDict({"arrays": to_record(SGDLogistic().init_params(20, 0))})
    msg = Message(content, 1001, "evaluate", group_id="1")
    context = Context(
        run_id=1,
        node_id=1001,
        node_config={"partition-id": 0, "num-partitions": 7},
        state=RecordDict(),
        run_config=_run_config(TINY),
    )
    with pytest.raises(ConfigError, match=r"7 SuperNodes.*federation\.num_clients=5"):
        flwr_app.client_app(msg, context)


def test_pyproject_declares_the_flower_app() -> None:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    app = config["tool"]["flwr"]["app"]
    assert app["components"] == {
        "serverapp": "fedgen.flwr_app:server_app",
        "clientapp": "fedgen.flwr_app:client_app",
    }
    assert app["config"]["overrides"] == ""
    # Flower 1.41 migrates [tool.flwr.federations] out of pyproject.toml, rewriting the file.
    assert "federations" not in config["tool"]["flwr"]


@pytest.mark.slow
# Ray leaves the Popen handles of its helper processes to the garbage collector.
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_flwr_apps_on_the_ray_simulation_engine_match_the_pipeline(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # Flower's simulation engine (what `flwr run` uses) with the default config (no run config).
    caplog.set_level("INFO", logger="fedgen")
    RayRunner().run(flwr_app.server_app, flwr_app.client_app, 5)
    found = re.search(r"fed/test_accuracy=(\S+)\).*sha256\[:16\] (\w+)", caplog.text)
    assert found is not None, caplog.text
    expected = _pipeline_result("")
    assert float(found.group(1)) == expected.rounds[-1].metrics["fed/test_accuracy"]
    assert found.group(2) == flwr_app.params_digest(expected.final_params)
    # Collect Ray's leaked handles now, under this test's filter, not during a later test.
    gc.collect()


def test_params_digest_sees_every_bit() -> None:
    a = {"coef": np.array([0.1, 0.2]), "intercept": np.array([0.0])}
    b = {"coef": np.array([0.1, np.nextafter(0.2, 1.0)]), "intercept": np.array([0.0])}
    c = {"coef": np.array([0.1, 0.2]), "intercept": np.array([-0.0])}
    digests = {flwr_app.params_digest(p) for p in (a, b, c)}
    assert len(digests) == 3
    # The digest is of the parameters' bytes in order: the linear model's coef, then intercept.
    raw = np.concatenate([a["coef"], a["intercept"]]).tobytes()
    assert flwr_app.params_digest(a) == hashlib.sha256(raw).hexdigest()[:16]


def test_default_experiment_digest_is_unchanged() -> None:
    # The default experiment's final parameters, bit for bit, as they were before parameters
    # became named arrays (the digest of coef's bytes followed by the intercept's).
    assert flwr_app.params_digest(_pipeline_result("").final_params) == DEFAULT_DIGEST


def test_load_federation_builds_what_the_pipeline_builds() -> None:
    loaded = flwr_app.load_federation(TINY)
    assert isinstance(loaded, flwr_app.LoadedFederation)
    assert isinstance(loaded.training.model, SGDLogistic)
    assert loaded.training.seed == 3 and loaded.training.defenses == ()
    assert loaded.training.federation.num_rounds == 3
    assert (loaded.cohort.n_individuals, loaded.cohort.n_snps) == (300, 20)
    cohort = instantiate(_compose(TINY).dataset).load(child_rng(3, "cohort"))
    np.testing.assert_array_equal(loaded.cohort.genotypes, cohort.genotypes)
    np.testing.assert_array_equal(loaded.cohort.labels, cohort.labels)
    split = partition(cohort.labels, 5, 0.2, child_rng(3, "partition"))
    assert loaded.split.num_clients == 5
    for got, want in zip(loaded.split.clients, split.clients, strict=True):
        np.testing.assert_array_equal(got.train, want.train)
        np.testing.assert_array_equal(got.test, want.test)
    assert flwr_app.load_federation(TINY) is loaded  # memoised per override string
