"""The Flower app that ``flwr run`` launches: fedgen's training as module-level Server/ClientApp.

``pyproject.toml`` names ``server_app`` and ``client_app`` in ``[tool.flwr.app.components]``, so
``flwr run .`` starts the same federation as ``python -m fedgen``: Hydra composes fedgen's config
(plus the run-config key ``overrides``, a space-separated Hydra override string such as
``"seed=1 federation.num_rounds=3"``), the cohort and its split are made from the seed exactly
as in the pipeline (streams ``cohort`` and ``partition``), and each SuperNode trains on the
rows of its ``partition-id``. Both apps are built lazily inside their handlers, from the same
factories (``fedgen.federation.apps``) and the same ``train_federation`` as the pipeline, so the
final global parameters are bit-identical to ``python -m fedgen`` for the same config.

What this mode does: trains and evaluates the federation on Flower's runtime (the simulation
engine of a local SuperLink, or a deployment whose SuperNodes carry ``partition-id``); logs one
line per round, then the final global test accuracy and a digest of the final parameters; leaves
the final parameters and metrics in the ServerApp context's state; writes the per-round training
log (``training_log.csv``'s format) if the run-config key ``training-log`` names a file.

What it does not do: no inference attacks or their metrics (the ``attack``, ``evaluation`` and
``threshold`` settings are ignored), no MLflow tracking (``tracking`` is ignored), no training
cache (``cache``), no Hydra job directory or sweeps, and no ``FederationResult`` handed back to a
caller (the ServerApp runs in Flower's process). ``federation/backend`` is ignored too: Flower's
runtime is the backend. The number of SuperNodes (``num-supernodes``) must equal
``federation.num_clients``; otherwise the run fails naming both numbers.

Start the local SuperLink with ``FLWR_DISABLE_RUNTIME_DEPENDENCY_INSTALLATION=1`` so that the apps
run in this environment; by default Flower 1.41 ``uv sync``s the app's dependencies into a fresh
environment per run, whose newer numpy/scikit-learn need not give the same bits.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import importlib.util
import logging
import shlex
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from flwr.app import Context, Message, MetricRecord
from flwr.clientapp import ClientApp
from flwr.serverapp import Grid, ServerApp
from omegaconf import DictConfig

import fedgen
from fedgen.core.errors import ConfigError
from fedgen.core.io import atomic_write_text
from fedgen.core.records import Cohort, FederationResult, Params, Split
from fedgen.experiment.build import build_training
from fedgen.experiment.pipeline import Training, cohort_and_split, train, training_log_csv
from fedgen.federation.arrays import to_record
from fedgen.federation.recorder import scalar
from fedgen.federation.train import build_client_app
from fedgen.models import flatten

__all__ = ["client_app", "compose_config", "load_federation", "params_digest", "server_app"]

log = logging.getLogger("fedgen")

OVERRIDES_KEY = "overrides"
TRAINING_LOG_KEY = "training-log"
# Where the ServerApp leaves the outcome in its Context's state (what Flower hands back).
FINAL_ARRAYS_KEY = "fedgen-final-arrays"
FINAL_METRICS_KEY = "fedgen-final-metrics"
NUM_PARTITIONS = "num-partitions"
# SuperNodes register with the SuperLink after the ServerApp starts: wait until their number has
# stopped changing for _NODES_SETTLE_S (at most _NODES_TIMEOUT_S) before comparing it.
_NODES_SETTLE_S = 0.5
_NODES_TIMEOUT_S = 30.0


@dataclass(frozen=True)
class LoadedFederation:
    """What both apps build from one override string: the training objects and the data."""

    training: Training
    cohort: Cohort
    split: Split


def compose_config(overrides: str = "") -> DictConfig:
    """fedgen's composed Hydra config (``conf/``) with ``overrides`` (space-separated)."""
    from hydra import compose, initialize_config_dir, initialize_config_module

    args = shlex.split(overrides)
    if importlib.util.find_spec("fedgen.conf") is not None:
        with initialize_config_module(config_module="fedgen.conf", version_base="1.3"):
            return compose(config_name="config", overrides=args)
    # Inside a Flower App Bundle the configs sit next to the package as conf/ (the editable or
    # wheel install maps them to fedgen.conf; an unpacked FAB does not).
    conf_dir = Path(fedgen.__file__).resolve().parent.parent / "conf"
    with initialize_config_dir(config_dir=str(conf_dir), version_base="1.3"):
        return compose(config_name="config", overrides=args)


@functools.lru_cache(maxsize=4)
def load_federation(overrides: str = "") -> LoadedFederation:
    """Compose and build as ``python -m fedgen`` does, and make the cohort and its split.

    The same builder (:func:`fedgen.experiment.build.build_training`) and the same data path
    (:func:`fedgen.experiment.pipeline.cohort_and_split`) as the pipeline. Memoised per process
    and override string: a Ray worker that hosts several SuperNodes, or the rounds of one node,
    build the cohort once.
    """
    training = build_training(compose_config(overrides))
    cohort, split = cohort_and_split(training)
    return LoadedFederation(training, cohort, split)


def params_digest(params: Params) -> str:
    """A short SHA-256 of the parameters' exact bytes, to compare runs across processes."""
    return hashlib.sha256(flatten(params).tobytes()).hexdigest()[:16]


def _overrides(context: Context) -> str:
    value = context.run_config.get(OVERRIDES_KEY, "")
    if not isinstance(value, str):
        raise ConfigError(f"run config `{OVERRIDES_KEY}` must be a string, got {value!r}")
    return value


def _mismatch(nodes: int, num_clients: int) -> ConfigError:
    return ConfigError(
        f"the Flower federation has {nodes} SuperNodes (num-supernodes={nodes}) but the fedgen "
        f"config has federation.num_clients={num_clients}; they must be equal. Run with "
        f"`--federation-config num-supernodes={num_clients}`, or pass "
        f"`--run-config 'overrides=\"federation.num_clients={nodes}\"'`"
    )


# --- ClientApp ------------------------------------------------------------------------------

client_app = ClientApp()


@functools.lru_cache(maxsize=4)
def _client_logic(overrides: str) -> tuple[ClientApp, int]:
    """The factory-made ClientApp for ``overrides`` (as ``train_federation`` makes it)."""
    fed = load_federation(overrides)
    n = fed.split.num_clients
    t = fed.training
    app = build_client_app(fed.cohort, fed.split, t.model, t.seed, t.defenses)
    return app, n


def _delegate(msg: Message, context: Context) -> Message:
    app, num_clients = _client_logic(_overrides(context))
    partitions = context.node_config.get(NUM_PARTITIONS)
    if partitions is not None and int(scalar(partitions)) != num_clients:
        raise _mismatch(int(scalar(partitions)), num_clients)
    return app(msg, context)


@client_app.train()
def _train(msg: Message, context: Context) -> Message:
    return _delegate(msg, context)


@client_app.evaluate()
def _evaluate(msg: Message, context: Context) -> Message:
    return _delegate(msg, context)


# --- ServerApp ------------------------------------------------------------------------------

server_app = ServerApp()


@dataclass(frozen=True)
class _FlowerRuntime:
    """``train_federation``'s backend when Flower's runtime already runs the ClientApps.

    It runs the ServerApp on the runtime's grid. The ClientApp that ``train_federation`` passes
    is not used: the SuperNodes run the module-level ``client_app``, which builds the same one
    from the same config.
    """

    grid: Grid
    context: Context

    def run(self, server_app: ServerApp, client_app: ClientApp, num_clients: int) -> None:
        nodes = _settled_node_count(self.grid)
        if nodes != num_clients:
            raise _mismatch(nodes, num_clients)
        server_app(grid=self.grid, context=self.context)


def _settled_node_count(grid: Grid) -> int:
    deadline = time.monotonic() + _NODES_TIMEOUT_S
    seen, since = -1, time.monotonic()
    while True:
        count = len(list(grid.get_node_ids()))
        now = time.monotonic()
        if count != seen:
            seen, since = count, now
        if (seen > 0 and now - since >= _NODES_SETTLE_S) or now >= deadline:
            return seen
        time.sleep(0.05)


@contextmanager
def _visible_logs() -> Iterator[None]:
    """Show fedgen's INFO lines when nothing is configured (Flower's processes configure none)."""
    if log.hasHandlers():
        yield
        return
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(levelname)s : [fedgen] %(message)s"))
    level = log.level
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    try:
        yield
    finally:
        log.removeHandler(handler)
        log.setLevel(level)


@server_app.main()
def _main(grid: Grid, context: Context) -> None:
    with _visible_logs():
        overrides = _overrides(context)
        fed = load_federation(overrides)
        log.info(
            "flwr run: cohort %d individuals x %d SNPs, %d clients, %d rounds (overrides: %s)",
            fed.cohort.n_individuals,
            fed.cohort.n_snps,
            fed.split.num_clients,
            fed.training.federation.num_rounds,
            overrides or "none",
        )
        settings = dataclasses.replace(
            fed.training.federation, backend=_FlowerRuntime(grid, context)
        )
        result = train(
            dataclasses.replace(fed.training, federation=settings), fed.cohort, fed.split
        )
        _report(result, context)


def _report(result: FederationResult, context: Context) -> None:
    last = result.rounds[-1]
    context.state[FINAL_ARRAYS_KEY] = to_record(result.final_params)
    context.state[FINAL_METRICS_KEY] = MetricRecord(dict(last.metrics))
    log.info(
        "flwr run: final global test accuracy %.4f (fed/test_accuracy=%r) after %d rounds; "
        "final parameters sha256[:16] %s",
        last.metrics["fed/test_accuracy"],
        last.metrics["fed/test_accuracy"],
        last.round,
        params_digest(result.final_params),
    )
    target = context.run_config.get(TRAINING_LOG_KEY, "")
    if not isinstance(target, str):
        raise ConfigError(f"run config `{TRAINING_LOG_KEY}` must be a string, got {target!r}")
    if target:
        path = Path(target).expanduser().resolve()
        atomic_write_text(path, training_log_csv(result))
        log.info("flwr run: training log written to %s", path)
