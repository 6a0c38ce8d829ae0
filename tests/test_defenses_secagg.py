"""SecAgg+ (Flower's SecAggPlusWorkflow + secaggplus_mod): the server sees only the aggregate."""

from __future__ import annotations

import gc
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from flwr.app import ConfigRecord, Context, Message, RecordDict
from flwr.clientapp import ClientApp
from flwr.serverapp.strategy import FedProx
from flwr.supercore.task_identity import TaskIdentity
from omegaconf import DictConfig

from fedgen.attacks import Arena, ConfidenceMIA, GradientNormMIA
from fedgen.attacks.views import membership_view
from fedgen.core.errors import ConfigError, FederationError
from fedgen.core.records import Cohort, FederationResult, Split
from fedgen.core.seeding import child_rng
from fedgen.defenses import BaseDefense, SecAgg, TrainingShape
from fedgen.evaluation.pools import PaperPool
from fedgen.experiment.build import build_training
from fedgen.experiment.cache import TrainingCache
from fedgen.federation import train_federation
from fedgen.federation.grid import InProcessGrid
from fedgen.models import Model, SGDLogistic
from tests.conftest import make_split, settings
from tests.test_seams import ScaleUpdates, ShiftAggregate

CLIENTS = 5


def _fitting() -> SGDLogistic:
    """A model whose training is not chaotic: a small perturbation stays small over rounds."""
    return SGDLogistic(learning_rate="constant", eta0=0.001)


def _train(
    cohort: Cohort,
    defenses: Sequence[Any] = (),
    rounds: int = 2,
    model: Model | None = None,
    split: Split | None = None,
    **kwargs: Any,
) -> FederationResult:
    split = split or make_split(cohort, CLIENTS)
    federation = settings(split.num_clients, rounds, **kwargs)
    return train_federation(cohort, split, federation, model or SGDLogistic(), 7, defenses)


def _step(defense: SecAgg) -> float:
    """One quantisation level of one client's weighted parameters, ``2 C / T``."""
    return 2 * defense.clipping_range / defense.quantization_range


# --- configuration ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "key"),
    [
        ({"num_shares": 2}, "num_shares"),
        ({"num_shares": 1.5}, "num_shares"),
        ({"num_shares": True}, "num_shares"),
        ({"reconstruction_threshold": 1}, "reconstruction_threshold"),
        ({"num_shares": 5, "reconstruction_threshold": 5}, "reconstruction_threshold"),
        ({"reconstruction_threshold": 0.0}, "reconstruction_threshold"),
        ({"clipping_range": 0}, "clipping_range"),
        ({"clipping_range": float("inf")}, "clipping_range"),
        ({"quantization_range": 1.5}, "quantization_range"),
        ({"quantization_range": 2**32}, "quantization_range"),
        ({"modulus_range": 3 * 2**20}, "modulus_range"),
        ({"modulus_range": 2**33}, "modulus_range"),
        ({"max_weight": 0}, "max_weight"),
        ({"timeout": -1}, "timeout"),
    ],
)
def test_invalid_values_name_the_key(kwargs: dict[str, Any], key: str) -> None:
    with pytest.raises(ConfigError, match=rf"^defense\.secagg\.{key}="):
        SecAgg(**kwargs)


def _shape(num_clients: int, rows: int = 100) -> TrainingShape:
    return TrainingShape(num_clients, 2, 1, (rows,) * num_clients)


def test_values_that_depend_on_the_federation_are_checked_when_it_starts() -> None:
    with pytest.raises(ConfigError, match=r"defense\.secagg\.num_shares=5 exceeds .*num_clients=3"):
        SecAgg().fit_workflow(0, _shape(3))
    with pytest.raises(ConfigError, match=r"reconstruction_threshold=3 must be below the 3 shares"):
        SecAgg(num_shares=1.0).fit_workflow(0, _shape(3))
    with pytest.raises(ConfigError, match=r"defense\.secagg\.max_weight=50.0 is below .* 100"):
        SecAgg(max_weight=50).fit_workflow(0, _shape(5))
    with pytest.raises(ConfigError, match=r"quantization_range=.* would wrap"):
        SecAgg(quantization_range=2**30).fit_workflow(0, _shape(5))
    workflow = SecAgg(num_shares=1.0, reconstruction_threshold=0.6).fit_workflow(0, _shape(7))
    assert (workflow.num_shares, workflow.max_weight) == (1.0, 100.0)


def test_config_group_builds_the_defense(compose_cfg: Callable[..., DictConfig]) -> None:
    training = build_training(compose_cfg("defense=secagg"))
    (defense,) = training.defenses
    assert isinstance(defense, SecAgg) and defense.name == "secagg"
    # The defaults suit the default federation of 5 clients.
    assert defense.fit_workflow(0, _shape(training.federation.num_clients)) is not None


def test_it_replaces_the_train_exchange_so_it_composes_only_as_it_can(tiny_cohort: Cohort) -> None:
    secagg = SecAgg()
    with pytest.raises(ConfigError, match="must come last"):
        _train(tiny_cohort, [secagg, ScaleUpdates()])
    with pytest.raises(ConfigError, match="wraps the server strategy"):
        _train(tiny_cohort, [ShiftAggregate(), secagg])
    with pytest.raises(ConfigError, match=r"federation\.strategy"):
        _train(tiny_cohort, [secagg], strategy=lambda **kw: FedProx(proximal_mu=0.1, **kw))


# --- what the server sees ---------------------------------------------------------------------


def test_record_holds_only_the_aggregate(tiny_cohort: Cohort) -> None:
    split = make_split(tiny_cohort, CLIENTS)
    secagg = SecAgg()
    plain = _train(tiny_cohort, split=split)
    secure = _train(tiny_cohort, [secagg], split=split)
    assert secure.aggregate_only and not plain.aggregate_only
    for mine, theirs in zip(secure.rounds, plain.rounds, strict=True):
        assert mine.aggregate_only and mine.client_params == ()
        # The sample counts travel in the clear; the evaluation is the usual one.
        assert mine.client_num_examples == theirs.client_num_examples
        assert set(mine.metrics) == set(theirs.metrics)
    # Round 1 starts from the same model and trains the same clients: the aggregate differs
    # from FedAvg's only by the quantisation, at most one level per client over the weights.
    sizes = np.array(plain.rounds[0].client_num_examples, dtype=float)
    bound = _step(secagg) * len(sizes) / (sizes / sizes.max()).sum()
    for k, want in plain.rounds[0].global_params.items():
        got = secure.rounds[0].global_params[k]
        assert got.dtype == np.float64 and got.shape == want.shape
        np.testing.assert_allclose(got, want, rtol=0, atol=bound)
        assert not np.array_equal(got, want)  # it did go through the quantisation


def test_aggregate_stays_close_to_fedavg_over_rounds(tiny_cohort: Cohort) -> None:
    split = make_split(tiny_cohort, CLIENTS)
    plain = _train(tiny_cohort, rounds=4, model=_fitting(), split=split)
    secure = _train(tiny_cohort, [SecAgg()], rounds=4, model=_fitting(), split=split)
    for mine, theirs in zip(secure.rounds, plain.rounds, strict=True):
        for k in theirs.global_params:
            np.testing.assert_allclose(
                mine.global_params[k], theirs.global_params[k], rtol=0, atol=1e-4
            )
        assert mine.metrics["fed/test_accuracy"] == pytest.approx(
            theirs.metrics["fed/test_accuracy"], abs=0.02
        )


def test_it_carries_what_the_other_defenses_mods_produced(tiny_cohort: Cohort) -> None:
    split = make_split(tiny_cohort, CLIENTS)
    plain = _train(tiny_cohort, rounds=1, split=split)
    halved = _train(tiny_cohort, [ScaleUpdates(factor=0.5), SecAgg()], rounds=1, split=split)
    for k, want in plain.final_params.items():
        np.testing.assert_allclose(halved.final_params[k], 0.5 * want, rtol=0, atol=1e-4)


def test_attacks_on_the_global_model_are_unchanged_and_client_models_are_gone(
    tiny_cohort: Cohort,
) -> None:
    split = make_split(tiny_cohort, CLIENTS)
    pool = PaperPool(n_bootstrap=0).pool(split, child_rng(0, "evaluation"))
    model = _fitting()
    views = {
        name: membership_view(Arena(tiny_cohort, pool, result, 7, model)).view
        for name, result in (
            ("plain", _train(tiny_cohort, model=model, split=split)),
            ("secagg", _train(tiny_cohort, [SecAgg()], model=model, split=split)),
        )
    }
    for attack in (ConfidenceMIA(), GradientNormMIA()):
        plain, secure = (attack.run(views[k]).scores for k in ("plain", "secagg"))
        np.testing.assert_allclose(secure, plain, rtol=0, atol=1e-4)
    # The server's attacks on client models run on the aggregate, which stands in for each
    # client's model: exactly what the public's attacks see.
    for server, public in (
        (ConfidenceMIA(observer="server"), ConfidenceMIA()),
        (GradientNormMIA(observer="server"), GradientNormMIA()),
    ):
        assert not np.array_equal(
            server.run(views["plain"]).scores, public.run(views["plain"]).scores
        )
        np.testing.assert_array_equal(
            server.run(views["secagg"]).scores, public.run(views["secagg"]).scores
        )


def test_aggregate_only_record_round_trips_through_the_cache(
    tiny_cohort: Cohort, tmp_path: Path
) -> None:
    result = _train(tiny_cohort, [SecAgg()])
    cache = TrainingCache(tmp_path)
    cache.store("k" * 64, result)
    loaded = cache.load("k" * 64)
    assert loaded is not None and loaded.aggregate_only
    for got, want in zip(loaded.rounds, result.rounds, strict=True):
        assert (got.aggregate_only, got.client_params) == (True, ())
        assert got.client_num_examples == want.client_num_examples
        assert got.metrics == want.metrics
        for k in want.global_params:
            np.testing.assert_array_equal(got.global_params[k], want.global_params[k])


# --- reproducibility --------------------------------------------------------------------------


def test_same_seed_same_bits_whatever_the_global_random_state(tiny_cohort: Cohort) -> None:
    # Flower's stochastic rounding draws from the global np.random: the defense seeds it from
    # the experiment's seed for that call only, and puts the global state back.
    np.random.seed(1)  # noqa: NPY002
    before = np.random.get_state()[1].copy()  # noqa: NPY002
    first = _train(tiny_cohort, [SecAgg()], rounds=3)
    np.testing.assert_array_equal(np.random.get_state()[1], before)  # noqa: NPY002
    np.random.seed(2)  # noqa: NPY002
    second = _train(tiny_cohort, [SecAgg()], rounds=3)
    for a, b in zip(first.rounds, second.rounds, strict=True):
        assert a.metrics == b.metrics
        for k in a.global_params:
            np.testing.assert_array_equal(a.global_params[k], b.global_params[k])


# --- the in-process Grid and failures ---------------------------------------------------------


def test_in_process_grid_delivers_a_private_copy_to_each_node() -> None:
    app = ClientApp()
    seen: list[object] = []

    @app.query()
    def query(msg: Message, context: Context) -> Message:
        config = msg.content.config_records["config"]
        seen.append(config.pop("stage", None))  # what secaggplus_mod does to its config
        return Message(RecordDict(), reply_to=msg)

    TaskIdentity.task_id, TaskIdentity.run_id, TaskIdentity.node_id = 1, 1, 1
    grid = InProcessGrid(app, 3, run_id=1)
    content = RecordDict({"config": ConfigRecord({"stage": "setup"})})
    sent = [Message(content, node, "query") for node in grid.get_node_ids()]
    replies = list(grid.send_and_receive(sent))
    assert seen == ["setup"] * 3
    assert content.config_records["config"]["stage"] == "setup"  # the server's copy is intact
    assert [r.metadata.src_node_id for r in replies] == list(grid.get_node_ids())


class _FailingClient(BaseDefense):
    def __init__(self) -> None:
        super().__init__("failing")

    def client_mods(self, seed: int) -> Sequence[Any]:
        def mod(msg: Message, context: Context, call_next: Any) -> Message:
            raise RuntimeError("client exploded")

        return [mod]


@pytest.mark.slow  # waits up to 5 s for Flower's client-manager thread to see the run end
def test_a_failing_client_stops_the_run_and_its_threads(tiny_cohort: Cohort) -> None:
    with pytest.raises(FederationError, match="client exploded"):
        _train(tiny_cohort, [_FailingClient(), SecAgg()], rounds=1)
    pollers = [t for t in threading.enumerate() if "_update_client_manager" in t.name]
    for thread in pollers:
        thread.join(timeout=10)
    assert not any(t.is_alive() for t in pollers)


# --- Ray --------------------------------------------------------------------------------------


@pytest.mark.slow
# Ray leaves the Popen handles of its helper processes to the garbage collector.
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_ray_backend_gives_the_same_bits(tiny_cohort: Cohort) -> None:
    from fedgen.federation.runners import RayRunner

    split = make_split(tiny_cohort, 3)
    secagg = [SecAgg(num_shares=3, reconstruction_threshold=2)]
    inproc = _train(tiny_cohort, secagg, split=split)
    ray = _train(tiny_cohort, secagg, split=split, backend=RayRunner())
    assert ray.aggregate_only
    for a, b in zip(inproc.rounds, ray.rounds, strict=True):
        assert a.metrics == b.metrics and b.client_params == ()
        for k in a.global_params:
            np.testing.assert_array_equal(a.global_params[k], b.global_params[k])
    gc.collect()  # Ray's leaked handles, under this test's filter
