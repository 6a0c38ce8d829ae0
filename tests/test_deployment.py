"""federation/backend=deployment: Flower's SuperLink and SuperNodes as processes on loopback."""

from __future__ import annotations

import os
import sys
import threading
import tomllib
from collections.abc import Callable
from pathlib import Path

import cloudpickle
import numpy as np
import pytest
from flwr.app import Context, Message, RecordDict
from flwr.common.config import validate_fields_in_config
from flwr.supercore.task_identity import TaskIdentity
from hydra.utils import instantiate
from omegaconf import DictConfig

from fedgen.core.records import Cohort, FederationResult, Params
from fedgen.federation import deployment, train_federation
from fedgen.federation.arrays import to_record
from fedgen.federation.runners import DeploymentRunner
from fedgen.federation.train import build_client_app
from fedgen.models import SGDLogistic
from tests.conftest import make_split, settings


def _assert_params_equal(got: Params, want: Params) -> None:
    assert list(got) == list(want)
    for name in want:
        np.testing.assert_array_equal(got[name], want[name], err_msg=name)


def _assert_same_record(got: FederationResult, want: FederationResult) -> None:
    _assert_params_equal(got.final_params, want.final_params)
    assert len(got.rounds) == len(want.rounds)
    for a, b in zip(got.rounds, want.rounds, strict=True):
        _assert_params_equal(a.global_params, b.global_params)
        for ca, cb in zip(a.client_params, b.client_params, strict=True):
            _assert_params_equal(ca, cb)
        assert a.client_num_examples == b.client_num_examples
        assert a.metrics == b.metrics


def _commands(pids: list[int]) -> list[str]:
    """Each live process's program name (the script of a console entry point)."""
    names = []
    for pid in pids:
        try:
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        names.append(Path(argv[1].decode()).name if len(argv) > 1 else "")
    return names


class _Watcher(threading.Thread):
    """Samples the deployment's tagged processes while a run goes on."""

    def __init__(self, prefix: str) -> None:
        super().__init__(daemon=True)
        self.prefix = prefix
        self.seen: set[str] = set()
        self.most = 0
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.wait(0.2):
            pids = deployment.tagged_processes(self.prefix)
            names = _commands(pids)
            self.seen.update(names)
            self.most = max(self.most, names.count("flower-supernode"))


@pytest.mark.slow
def test_deployment_engine_gives_bit_identical_results_and_leaves_no_process(
    tiny_cohort: Cohort,
) -> None:
    split = make_split(tiny_cohort, 2, seed=4)
    model = SGDLogistic()
    local = train_federation(tiny_cohort, split, settings(2, 2), model, seed=4)
    prefix = f"{os.getpid()}-"
    watcher = _Watcher(prefix)
    watcher.start()
    try:
        deployed = train_federation(
            tiny_cohort, split, settings(2, 2, backend=DeploymentRunner()), model, seed=4
        )
    finally:
        watcher.done.set()
        watcher.join()
    _assert_same_record(deployed, local)
    # Real processes ran: the SuperLink, both SuperNodes, and ClientApp processes they started.
    assert {"flower-superlink", "flower-supernode", "flwr-clientapp"} <= watcher.seen
    assert watcher.most == 2
    assert deployment.tagged_processes(prefix) == []


def test_the_bundle_is_a_valid_flower_app_naming_the_relay() -> None:
    config = tomllib.loads(deployment._FAB_PYPROJECT.decode())
    valid, errors, _ = validate_fields_in_config(config)
    assert valid, errors
    components = config["tool"]["flwr"]["app"]["components"]
    assert components["clientapp"] == "fedgen.federation.deployment:client_app"
    assert deployment.CLIENT_APP_KEY in config["tool"]["flwr"]["app"]["config"]
    fab, digest = deployment._fab()
    assert len(fab) > 0 and len(digest) == 64


def test_the_relay_answers_as_the_pickled_client_app(tiny_cohort: Cohort, tmp_path: Path) -> None:
    split = make_split(tiny_cohort, 2)
    app = build_client_app(tiny_cohort, split, SGDLogistic(), seed=0)
    path = tmp_path / "client_app.pkl"
    path.write_bytes(cloudpickle.dumps(app))
    TaskIdentity.task_id, TaskIdentity.run_id, TaskIdentity.node_id = 1, 1, 1
    params = SGDLogistic().init_params(tiny_cohort.n_snps, 0)
    replies = []
    for target, run_config in (
        (app, {}),
        (deployment.client_app, {"fedgen-client-app": str(path)}),
    ):
        msg = Message(RecordDict({"arrays": to_record(params)}), 1001, "evaluate", group_id="1")
        context = Context(
            run_id=1,
            node_id=1001,
            node_config={"partition-id": 1, "num-partitions": 2},
            state=RecordDict(),
            run_config=dict(run_config),
        )
        replies.append(target(msg, context))
    assert dict(replies[0].content["metrics"]) == dict(replies[1].content["metrics"])
    with pytest.raises(TypeError, match="fedgen-client-app"):
        msg = Message(RecordDict({"arrays": to_record(params)}), 1001, "evaluate", group_id="1")
        context = Context(
            run_id=1,
            node_id=1001,
            node_config={"partition-id": 0},
            state=RecordDict(),
            run_config={"fedgen-client-app": ""},
        )
        deployment.client_app(msg, context)


_STUBBORN = """
import os, signal, subprocess, sys, time
signal.signal(signal.SIGTERM, signal.SIG_IGN)
if sys.argv[1] == "parent":
    # Detached into a session of its own, as Flower's SuperExec is.
    subprocess.Popen([sys.executable, __file__, "child"], start_new_session=True)
time.sleep(600)
"""


def test_stop_kills_detached_descendants_that_ignore_sigterm(tmp_path: Path) -> None:
    script = tmp_path / "stubborn.py"
    script.write_text(_STUBBORN)
    tag = f"{os.getpid()}-stubborn"
    processes = deployment._Processes(
        tmp_path, {**os.environ, deployment.TAG_VAR: tag}, tag, timeout_s=10.0, grace_s=1.0
    )
    processes.start("parent", [sys.executable, str(script), "parent"])
    processes.wait("both processes", lambda: len(deployment.tagged_processes(tag)) == 2)
    processes.stop()
    assert deployment.tagged_processes(tag) == []


def test_a_process_that_dies_early_stops_the_wait_with_its_log(tmp_path: Path) -> None:
    tag = f"{os.getpid()}-early"
    processes = deployment._Processes(tmp_path, {**os.environ}, tag, timeout_s=30.0)
    code = "import sys; print('no SuperLink here'); sys.exit(3)"
    processes.start("supernode-0", [sys.executable, "-c", code])
    with pytest.raises(RuntimeError, match=r"(?s)supernode-0 exited with code 3.*no SuperLink"):
        processes.wait("SuperLink", lambda: False)
    processes.stop()


def test_runner_config_builds_the_deployment_runner(
    compose_cfg: Callable[..., DictConfig],
) -> None:
    runner = instantiate(compose_cfg("federation/backend=deployment").federation.backend)
    assert runner == DeploymentRunner(timeout_s=120.0)
