"""Federated training oracles: FedAvg with Flower equals the computation it stands for."""

from __future__ import annotations

import functools
import gc

import numpy as np
import pytest
from sklearn.linear_model import SGDClassifier

from fedgen.core.errors import FederationError
from fedgen.core.records import Cohort, Params
from fedgen.federation import train_federation
from fedgen.federation.data import client_data
from fedgen.federation.runners import RayRunner
from fedgen.federation.strategy import RecordingFedAvg
from fedgen.federation.train import client_seeds
from fedgen.models import SGDLogistic
from tests.conftest import make_split, settings

CLASSES = np.array([0, 1])


def _model() -> SGDLogistic:
    return SGDLogistic()


def _assert_params_equal(got: Params, want: Params) -> None:
    """Same names in the same order, bit-identical float64 arrays."""
    assert list(got) == list(want)
    for name in want:
        assert got[name].dtype == np.float64, name
        np.testing.assert_array_equal(got[name], want[name], err_msg=name)


def test_one_client_one_round_equals_local_partial_fit(tiny_cohort: Cohort) -> None:
    split = make_split(tiny_cohort, 1)
    result = train_federation(tiny_cohort, split, settings(1, 1), _model(), seed=7)
    rows = split.clients[0].train
    local = SGDClassifier(loss="log_loss", random_state=client_seeds(7, 1)[0])
    local.partial_fit(tiny_cohort.genotypes[rows].astype(float), tiny_cohort.labels[rows], CLASSES)
    assert list(result.final_params) == ["coef", "intercept"]
    np.testing.assert_array_equal(result.final_params["coef"], local.coef_.ravel())
    assert result.final_params["intercept"].shape == (1,)
    assert result.final_params["intercept"][0] == local.intercept_[0]
    assert result.rounds[0].client_num_examples == (rows.size,)


def test_one_client_many_rounds_equals_consecutive_partial_fits(tiny_cohort: Cohort) -> None:
    # The client keeps its optimiser step count between rounds, so R rounds of one client are
    # exactly R partial_fit calls on one local estimator.
    split = make_split(tiny_cohort, 1)
    result = train_federation(tiny_cohort, split, settings(1, 4), _model(), seed=3)
    rows = split.clients[0].train
    local = SGDClassifier(loss="log_loss", random_state=client_seeds(3, 1)[0])
    X, y = tiny_cohort.genotypes[rows].astype(float), tiny_cohort.labels[rows]
    for record in result.rounds:
        local.partial_fit(X, y, CLASSES)
        np.testing.assert_array_equal(record.global_params["coef"], local.coef_.ravel())
        assert record.global_params["intercept"][0] == local.intercept_[0]


def test_fedavg_round_is_the_sample_weighted_mean_of_local_models(tiny_cohort: Cohort) -> None:
    split = make_split(tiny_cohort, 3)
    result = train_federation(tiny_cohort, split, settings(3, 2), _model(), seed=5)
    data = client_data(tiny_cohort, split)
    seeds = client_seeds(5, 3)
    first, second = result.rounds
    # Round 2 starts from round 1's global model; each client's t_ continues from round 1.
    for i, rows in enumerate(data):
        local1, state = _model().fit(
            result.initial_params,
            rows.X_train,
            rows.y_train,
            epochs=1,
            seed=seeds[i],
            state=None,
        )
        _assert_params_equal(first.client_params[i], local1)
        local2, _ = _model().fit(
            first.global_params,
            rows.X_train,
            rows.y_train,
            epochs=1,
            seed=seeds[i],
            state=state,
        )
        _assert_params_equal(second.client_params[i], local2)
    weights = np.array(second.client_num_examples, dtype=float)
    assert second.client_num_examples == tuple(d.n_train for d in data)
    for name in ("coef", "intercept"):
        stacked = np.stack([p[name] for p in second.client_params])
        expected = (weights[:, None] * stacked).sum(axis=0) / weights.sum()
        np.testing.assert_allclose(
            second.global_params[name], expected, rtol=1e-12, atol=1e-12, err_msg=name
        )


def test_round_metrics_match_a_direct_evaluation(tiny_cohort: Cohort) -> None:
    split = make_split(tiny_cohort, 2)
    result = train_federation(tiny_cohort, split, settings(2, 2), _model(), seed=1)
    last = result.rounds[-1]
    params = last.global_params
    test_rows = np.concatenate([c.test for c in split.clients])
    z = tiny_cohort.genotypes[test_rows].astype(float) @ params["coef"] + params["intercept"][0]
    y = tiny_cohort.labels[test_rows]
    assert last.metrics["fed/test_accuracy"] == pytest.approx(np.mean((z > 0) == (y == 1)))
    loss = np.mean(np.logaddexp(0, z) - y * z)
    assert last.metrics["fed/test_loss"] == pytest.approx(loss)
    assert {"fed/client_0/train_loss", "fed/client_1/test_accuracy"} <= set(last.metrics)


def test_same_seed_same_numbers_other_seed_other_numbers(tiny_cohort: Cohort) -> None:
    split = make_split(tiny_cohort, 3)
    a = train_federation(tiny_cohort, split, settings(3, 3), _model(), seed=11)
    b = train_federation(tiny_cohort, split, settings(3, 3), _model(), seed=11)
    c = train_federation(tiny_cohort, split, settings(3, 3), _model(), seed=12)
    for ra, rb in zip(a.rounds, b.rounds, strict=True):
        _assert_params_equal(ra.global_params, rb.global_params)
        assert ra.metrics == rb.metrics
    assert not np.array_equal(a.final_params["coef"], c.final_params["coef"])


def test_the_old_recording_strategy_name_trains_as_flowers_fedavg(tiny_cohort: Cohort) -> None:
    # Runs stored before recording moved to the Grid name RecordingFedAvg as their strategy;
    # it must still build, accept the old keyword arguments, and train exactly as FedAvg does.
    split = make_split(tiny_cohort, 3)
    old = functools.partial(RecordingFedAvg, fraction_train=1.0, fraction_evaluate=1.0)
    a = train_federation(tiny_cohort, split, settings(3, 2, strategy=old), _model(), seed=4)
    b = train_federation(tiny_cohort, split, settings(3, 2), _model(), seed=4)
    assert len(a.rounds) == len(b.rounds) == 2
    for ra, rb in zip(a.rounds, b.rounds, strict=True):
        _assert_params_equal(ra.global_params, rb.global_params)
        for ca, cb in zip(ra.client_params, rb.client_params, strict=True):
            _assert_params_equal(ca, cb)
        assert ra.metrics == rb.metrics
    legacy = RecordingFedAvg(num_clients=3, num_rounds=2, fraction_train=1.0)
    assert (legacy.min_train_nodes, legacy.min_evaluate_nodes, legacy.min_available_nodes) == (
        3,
        3,
        3,
    )


class _Exploding(SGDLogistic):
    def fit(self, *args: object, **kwargs: object) -> tuple[Params, Params]:
        raise RuntimeError("disk on fire")


def test_a_failing_client_fails_the_run_with_its_reason(tiny_cohort: Cohort) -> None:
    split = make_split(tiny_cohort, 2)
    with pytest.raises(FederationError, match=r"round 1 \(train\).*disk on fire"):
        train_federation(tiny_cohort, split, settings(2, 2), _Exploding(), seed=0)


@pytest.mark.slow
# Ray leaves the Popen handles of its helper processes to the garbage collector.
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_ray_backend_gives_bit_identical_results(tiny_cohort: Cohort) -> None:
    split = make_split(tiny_cohort, 3)
    local = train_federation(tiny_cohort, split, settings(3, 3), _model(), seed=2)
    ray = train_federation(
        tiny_cohort, split, settings(3, 3, backend=RayRunner(num_cpus=2)), _model(), seed=2
    )
    for a, b in zip(local.rounds, ray.rounds, strict=True):
        _assert_params_equal(a.global_params, b.global_params)
        assert len(a.client_params) == len(b.client_params) == 3
        for ca, cb in zip(a.client_params, b.client_params, strict=True):
            _assert_params_equal(ca, cb)
        assert a.client_num_examples == b.client_num_examples
        assert a.metrics == b.metrics
    # Collect Ray's leaked handles now, under this test's filter, not during a later test.
    gc.collect()
