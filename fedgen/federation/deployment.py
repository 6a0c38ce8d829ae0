"""Flower's Deployment Engine on loopback: a SuperLink and N SuperNodes as real processes.

:func:`run_deployment` starts ``flower-superlink`` (``--isolation process``: it launches no
ServerApp itself) and ``num_clients`` ``flower-supernode`` processes on 127.0.0.1, each with
``partition-id=<i> num-partitions=<N>`` in its node config, exactly the commands a consortium
runs on its machines. It submits a run through the SuperLink's Control API with a small Flower
App Bundle (FAB) whose ClientApp is :data:`client_app`, takes the run's ServerApp task itself
(what ``flower-superexec`` would otherwise do) and runs the given ServerApp in this process on
Flower's ``HttpGrid``, so the recorder wraps the real networked Grid where the server is. The
SuperNodes run every message in a ``flwr-clientapp`` process of their own, which loads
:data:`client_app` from the FAB; it relays to the ClientApp the caller built, shipped to them
as a cloudpickle file (as Ray's simulation engine ships it to its workers) in a private
temporary directory that exists only for the run.

Every process started is tagged with an environment variable (:data:`TAG_VAR`), inherited by
the processes they start in turn (which detach into sessions of their own), so that shutdown
finds all of them: SIGTERM, a grace period, then SIGKILL, and a check that none is left.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import itertools
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, TypeVar

import cloudpickle
from flwr.app import Context, Message
from flwr.clientapp import ClientApp
from flwr.serverapp import ServerApp

__all__ = ["TAG_VAR", "client_app", "run_deployment", "tagged_processes"]

# Set in the environment of every process a deployment starts; its value names the run.
TAG_VAR = "FEDGEN_DEPLOYMENT"
# Run-config key of the FAB: where the pickled ClientApp is.
CLIENT_APP_KEY = "fedgen-client-app"
_HOST = "127.0.0.1"
_GRACE_S = 15.0
_POLL_S = 0.1
_LOG_TAIL = 2000
_tags = itertools.count()
T = TypeVar("T")

# The FAB's pyproject: no files besides, fedgen is imported from the environment it runs in.
_FAB_PYPROJECT = f"""\
[build-system]
requires = ["hatchling"]
build-backend = "hatchling.build"

[project]
name = "fedgen-deployment"
version = "1.0.0"
description = "fedgen's ClientApp relay for the loopback Deployment Engine"
dependencies = []

[tool.flwr.app]
publisher = "fedgen"

[tool.flwr.app.components]
serverapp = "fedgen.federation.deployment:server_app"
clientapp = "fedgen.federation.deployment:client_app"

[tool.flwr.app.config]
{CLIENT_APP_KEY} = ""
""".encode()


# --- the FAB's apps --------------------------------------------------------------------------

client_app = ClientApp()
server_app = ServerApp()


@functools.lru_cache(maxsize=2)
def _load_client_app(path: str) -> ClientApp:
    app = cloudpickle.loads(Path(path).read_bytes())
    if not isinstance(app, ClientApp):
        raise TypeError(f"{path} holds a {type(app).__name__}, not a ClientApp")
    return app


def _relay(msg: Message, context: Context) -> Message:
    path = context.run_config[CLIENT_APP_KEY]
    if not isinstance(path, str) or not path:
        raise TypeError(f"run config `{CLIENT_APP_KEY}` must name the pickled ClientApp")
    return _load_client_app(path)(msg, context)


@client_app.train()
def _train(msg: Message, context: Context) -> Message:
    return _relay(msg, context)


@client_app.evaluate()
def _evaluate(msg: Message, context: Context) -> Message:
    return _relay(msg, context)


@server_app.main()
def _not_here(grid: Any, context: Context) -> None:
    raise RuntimeError("fedgen runs the deployment's ServerApp in the process that started it")


# --- processes -------------------------------------------------------------------------------


def tagged_processes(tag_prefix: str) -> list[int]:
    """Live (non-zombie) processes whose :data:`TAG_VAR` starts with ``tag_prefix`` (Linux)."""
    found = []
    needle = f"{TAG_VAR}={tag_prefix}".encode()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            environ = (entry / "environ").read_bytes()
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if state != "Z" and any(v.startswith(needle) for v in environ.split(b"\0")):
            found.append(int(entry.name))
    return found


def _free_ports(n: int) -> list[int]:
    """``n`` distinct ports free on 127.0.0.1 now (the OS's choice)."""
    with contextlib.ExitStack() as stack:
        socks = [stack.enter_context(socket.socket()) for _ in range(n)]
        for s in socks:
            s.bind((_HOST, 0))
        return [int(s.getsockname()[1]) for s in socks]


def _accepts(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex((_HOST, port)) == 0


@dataclass
class _Processes:
    """The started processes, their log files, and the tag their descendants inherit."""

    workdir: Path
    env: dict[str, str]
    tag: str
    timeout_s: float
    grace_s: float = _GRACE_S
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    logs: list[IO[bytes]] = field(default_factory=list)

    def start(self, name: str, argv: Sequence[str]) -> None:
        log = (self.workdir / f"{name}.log").open("wb")
        self.logs.append(log)
        self.procs[name] = subprocess.Popen(
            list(argv), stdout=log, stderr=subprocess.STDOUT, env=self.env, cwd=self.workdir
        )

    def check_alive(self) -> None:
        for name, proc in self.procs.items():
            if proc.poll() is not None:
                raise RuntimeError(
                    f"{name} exited with code {proc.returncode}:\n{self.log_tail(name)}"
                )

    def wait(self, what: str, ready: Callable[[], T]) -> T:
        """``ready()``'s first truthy value, polled while every process lives."""
        deadline = time.monotonic() + self.timeout_s
        while not (value := ready()):
            self.check_alive()
            if time.monotonic() >= deadline:
                raise TimeoutError(f"no {what} within {self.timeout_s:.0f} s")
            time.sleep(_POLL_S)
        return value

    def log_tail(self, name: str) -> str:
        path = self.workdir / f"{name}.log"
        text = path.read_text(errors="replace") if path.exists() else ""
        return text[-_LOG_TAIL:]

    def stop(self) -> None:
        """SIGTERM every tagged process, SIGKILL what is left after the grace; none remains."""
        deadline = time.monotonic() + self.grace_s
        for sig in (signal.SIGTERM, signal.SIGKILL):
            for pid in tagged_processes(self.tag):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, sig)
            while tagged_processes(self.tag) and time.monotonic() < deadline:
                for proc in self.procs.values():
                    proc.poll()  # reaps our own children
                time.sleep(_POLL_S)
            deadline = time.monotonic() + self.grace_s
        for proc in self.procs.values():
            proc.wait(timeout=self.grace_s)
        for log in self.logs:
            log.close()
        left = tagged_processes(self.tag)
        if left:
            raise RuntimeError(f"Flower processes {left} survived SIGKILL")


def _executable(name: str) -> str:
    # Flower's processes start one another by name, so the environment's bin/ must come first.
    found = shutil.which(name, path=str(Path(sys.executable).parent))
    if found is None:
        raise RuntimeError(f"{name} not found next to {sys.executable}; install flwr there")
    return found


def _child_env(workdir: Path, tag: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        {
            TAG_VAR: tag,
            "PATH": os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")]),
            # FABs are installed here, not into ~/.flwr.
            "FLWR_HOME": str(workdir / "flwr-home"),
            # Run in this environment: a `uv sync`ed one need not have the same numpy bits.
            "FLWR_DISABLE_RUNTIME_DEPENDENCY_INSTALLATION": "1",
            "FLWR_TELEMETRY_ENABLED": "0",
            "FLWR_DISABLE_UPDATE_CHECK": "1",
            # Each SuperNode's SuperExec polls for ClientApp tasks every second by default.
            "FLWR_SUPEREXEC_TASK_POLL_INTERVAL": "0.1",
        }
    )
    return env


# --- the run ---------------------------------------------------------------------------------


def _start_fleet(processes: _Processes, num_clients: int) -> str:
    """Start the SuperLink and the SuperNodes; return the SuperLink's address."""
    link_port, *node_ports = _free_ports(1 + num_clients)
    processes.start(
        "superlink",
        [
            _executable("flower-superlink"),
            "--insecure",
            "--isolation=process",
            f"--host={_HOST}",
            f"--port={link_port}",
            "--disable-runtime-dependency-installation",
        ],
    )
    address = f"{_HOST}:{link_port}"
    for i, port in enumerate(node_ports):
        processes.start(
            f"supernode-{i}",
            [
                _executable("flower-supernode"),
                "--insecure",
                f"--superlink={address}",
                f"--node-config=partition-id={i} num-partitions={num_clients}",
                f"--host={_HOST}",
                f"--port={port}",
            ],
        )
    processes.wait("SuperLink", lambda: _accepts(link_port))
    return address


def _fab() -> tuple[bytes, str]:
    from flwr.cli.build import build_fab_from_files

    with warnings.catch_warnings():
        # Flower 1.41's FAB builder still asks pathspec for its deprecated pattern name.
        warnings.filterwarnings("ignore", "GitWildMatchPattern", DeprecationWarning)
        fab, _ = build_fab_from_files({"pyproject.toml": _FAB_PYPROJECT})
    return fab, hashlib.sha256(fab).hexdigest()


def _start_run(address: str, run_config: Mapping[str, str]) -> None:
    """Submit the run through the Control API, as ``flwr run`` does."""
    from flwr.common.serde import fab_to_proto, user_config_to_proto
    from flwr.proto.control_pb2 import StartRunRequest
    from flwr.supercore.control.control_http_client import ControlHttpClient
    from flwr.supercore.fab import Fab

    fab, fab_hash = _fab()
    client = ControlHttpClient.from_server_address(
        server_address=address, insecure=True, root_certificates=None, interceptors=[]
    )
    try:
        res = client.StartRun(
            StartRunRequest(
                fab=fab_to_proto(Fab(fab_hash, fab, {})),
                override_config=user_config_to_proto(dict(run_config)),
            )
        )
    finally:
        client.close()
    if not res.HasField("run_id"):
        raise RuntimeError("the SuperLink did not start the run")


def _acquire_server_task(address: str, processes: _Processes) -> str:
    """Take the run's ServerApp task as ``flower-superexec`` would; return its token."""
    from flwr.proto.runtime_pb2 import AcquireTaskRequest
    from flwr.supercore.constant import TaskType
    from flwr.supercore.runtime import RuntimeHttpClient

    client = RuntimeHttpClient.from_server_address(
        server_address=address, insecure=True, root_certificates=None, interceptors=[]
    )
    request = AcquireTaskRequest(supported_task_types=[TaskType.SERVER_APP])

    def token() -> str:
        res = client.AcquireTask(request)
        return str(res.token) if res.HasField("task") else ""

    try:
        return processes.wait("ServerApp task", token)
    finally:
        client.close()


def _serve(
    server_app: ServerApp, num_clients: int, address: str, token: str, processes: _Processes
) -> None:
    """Run ``server_app`` here on the SuperLink's Runtime API, as ``flwr-serverapp`` would."""
    from flwr.common.constant import SubStatus
    from flwr.common.serde import context_from_proto, context_to_proto, run_from_proto
    from flwr.proto.runtime_pb2 import PullTaskInputRequest, PushTaskOutputRequest
    from flwr.supercore.heartbeat import HeartbeatSender, make_task_heartbeat_fn_http
    from flwr.supercore.task_identity import TaskIdentity
    from flwr.superlink.grid import HttpGrid

    grid = HttpGrid(address, insecure=True, token=token)
    runtime = grid._runtime_client  # flwr-serverapp's own way to its task's input and output
    heartbeat = HeartbeatSender(make_task_heartbeat_fn_http(runtime))
    heartbeat.start()
    status, details, context = SubStatus.FAILED, "fedgen's ServerApp raised", None
    try:
        task = runtime.PullTaskInput(PullTaskInputRequest())
        TaskIdentity.task_id = task.task_id
        TaskIdentity.run_id = task.run.run_id
        TaskIdentity.node_id = task.context.node_id
        grid.set_run(run_from_proto(task.run))
        context = context_from_proto(task.context)
        processes.wait(
            f"{num_clients} SuperNodes", lambda: len(list(grid.get_node_ids())) == num_clients
        )
        server_app(grid=grid, context=context)
        status, details = SubStatus.COMPLETED, ""
    finally:
        heartbeat.stop()
        # The run's own outcome is what propagates, not a failure to report it.
        with contextlib.suppress(Exception):
            runtime.PushTaskOutput(
                PushTaskOutputRequest(
                    context=context_to_proto(context) if context else None,
                    sub_status=status,
                    details=details,
                )
            )
        grid.close()


def run_deployment(
    server_app: ServerApp, client_app: ClientApp, num_clients: int, timeout_s: float = 120.0
) -> None:
    """Run ``server_app`` here against ``num_clients`` SuperNode processes on loopback.

    Parameters
    ----------
    server_app : ServerApp
        Runs in this process, on the SuperLink's Runtime API.
    client_app : ClientApp
        Runs in the SuperNodes' ClientApp processes; node ``i`` has ``partition-id=i``.
    num_clients : int
        SuperNodes to start.
    timeout_s : float
        How long to wait for the SuperLink, the SuperNodes and the run's task to be ready.

    Raises
    ------
    RuntimeError
        A Flower process exited early (its log's tail is in the message) or survived shutdown.
    TimeoutError
        Something was not ready within ``timeout_s``.
    """
    tag = f"{os.getpid()}-{next(_tags)}"
    with tempfile.TemporaryDirectory(prefix="fedgen-deployment-") as tmp:
        workdir = Path(tmp)
        pickled = workdir / "client_app.pkl"
        pickled.write_bytes(cloudpickle.dumps(client_app))
        processes = _Processes(workdir, _child_env(workdir, tag), tag, timeout_s)
        try:
            address = _start_fleet(processes, num_clients)
            _start_run(address, {CLIENT_APP_KEY: str(pickled)})
            token = _acquire_server_task(address, processes)
            _serve(server_app, num_clients, address, token, processes)
        finally:
            processes.stop()
