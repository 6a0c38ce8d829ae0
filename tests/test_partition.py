"""The partition group: IID and non-IID splits are disjoint, complete, stratified, seeded."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from numpy.typing import NDArray
from omegaconf import DictConfig, OmegaConf

from fedgen.core.errors import ConfigError
from fedgen.core.records import Cohort, Split
from fedgen.data import (
    AncestryPartition,
    DirichletLabelPartition,
    IIDPartition,
    Partition,
    QuantityPartition,
    SyntheticCohort,
)
from fedgen.data.partition import min_rows_per_label, partition
from fedgen.data.skew import home_weights
from fedgen.experiment.build import build_experiment, training_material
from fedgen.experiment.pipeline import cohort_and_split, run_experiment

PROPERTY = settings(max_examples=50, deadline=None)


@st.composite
def feasible_cases(draw: st.DrawFn) -> tuple[np.ndarray, int, float]:
    """Labels, num_clients and test_fraction for which every client surely gets both classes.

    Each client holds at least 40 individuals, the case share is 30-70 % and the test fraction
    is 0.2-0.8, so a client class would need <= 2 members for the split to be impossible.
    """
    num_clients = draw(st.integers(1, 8))
    per_client = draw(st.integers(40, 90))
    extra = draw(st.integers(0, num_clients - 1))
    n = num_clients * per_client + extra
    case_share = draw(st.floats(0.3, 0.7))
    n_cases = round(case_share * n)
    labels = np.zeros(n, dtype=np.int8)
    labels[:n_cases] = 1
    np.random.default_rng(draw(st.integers(0, 2**32 - 1))).shuffle(labels)
    test_fraction = draw(st.floats(0.2, 0.8))
    return labels, num_clients, test_fraction


def assert_valid_split(split: Split, labels: np.ndarray, num_clients: int, tf: float) -> None:
    n = labels.shape[0]
    assert split.num_clients == num_clients
    arrays = [a for c in split.clients for a in (c.train, c.test)]
    for a in arrays:
        assert a.dtype == np.int64
        assert a.ndim == 1
    everything = np.concatenate(arrays)
    # Pairwise disjoint (no index repeated anywhere) and complete (union is range(n)).
    assert everything.size == n
    assert np.array_equal(np.sort(everything), np.arange(n))
    sizes = [c.train.size + c.test.size for c in split.clients]
    assert max(sizes) - min(sizes) <= 1
    for c in split.clients:
        rows = np.concatenate([c.train, c.test])
        for cls in (0, 1):
            n_c = int(np.count_nonzero(labels[rows] == cls))
            n_test_c = int(np.count_nonzero(labels[c.test] == cls))
            assert n_test_c == round(tf * n_c), (cls, n_c, n_test_c, tf)
            # Both sides of every client have both classes.
            assert 0 < n_test_c < n_c


@PROPERTY
@given(feasible_cases(), st.integers(0, 2**32 - 1))
def test_split_is_disjoint_complete_balanced_and_stratified(
    case: tuple[np.ndarray, int, float], seed: int
) -> None:
    labels, num_clients, tf = case
    split = partition(labels, num_clients, tf, np.random.default_rng(seed))
    assert_valid_split(split, labels, num_clients, tf)


@PROPERTY
@given(
    st.lists(st.integers(0, 1), min_size=1, max_size=60),
    st.integers(1, 12),
    st.floats(0.01, 0.99),
    st.integers(0, 2**32 - 1),
)
def test_any_input_either_splits_validly_or_raises_config_error(
    label_list: list[int], num_clients: int, tf: float, seed: int
) -> None:
    labels = np.array(label_list, dtype=np.int8)
    try:
        split = partition(labels, num_clients, tf, np.random.default_rng(seed))
    except ConfigError as exc:
        # The only failure allowed is the documented one, with an actionable message.
        assert f"federation.num_clients={num_clients} is too large" in str(exc)
        assert f"cohort of {labels.size} individuals" in str(exc)
        return
    assert_valid_split(split, labels, num_clients, tf)


@PROPERTY
@given(feasible_cases(), st.integers(0, 2**32 - 1))
def test_same_seed_gives_identical_split(case: tuple[np.ndarray, int, float], seed: int) -> None:
    labels, num_clients, tf = case
    a = partition(labels, num_clients, tf, np.random.default_rng(seed))
    b = partition(labels, num_clients, tf, np.random.default_rng(seed))
    assert a.num_clients == b.num_clients
    for ca, cb in zip(a.clients, b.clients, strict=True):
        assert np.array_equal(ca.train, cb.train)
        assert np.array_equal(ca.test, cb.test)


@PROPERTY
@given(feasible_cases(), st.integers(0, 2**31 - 1), st.integers(1, 2**31))
def test_different_seed_gives_different_split(
    case: tuple[np.ndarray, int, float], seed: int, offset: int
) -> None:
    labels, num_clients, tf = case
    a = partition(labels, num_clients, tf, np.random.default_rng(seed))
    b = partition(labels, num_clients, tf, np.random.default_rng(seed + offset))
    # With >= 40 individuals, two independent shuffles agree on every client's test set with
    # negligible probability; compare as sets so that only the assignment itself counts.
    assert any(
        set(ca.test.tolist()) != set(cb.test.tolist())
        for ca, cb in zip(a.clients, b.clients, strict=True)
    )


def test_clients_are_dealt_at_random() -> None:
    """The split is random, not the first rows to client 0: clients mix the whole index range."""
    labels = np.tile(np.array([0, 1], dtype=np.int8), 500)
    split = partition(labels, 4, 0.25, np.random.default_rng(1))
    for c in split.clients:
        rows = np.concatenate([c.train, c.test])
        # A contiguous block of 250 would span ~250 indices; a random deal spans almost all 1000.
        assert rows.max() - rows.min() > 900
    # Train and test arrays are returned shuffled, not sorted.
    assert not all(np.all(np.diff(c.train) > 0) for c in split.clients)


def test_exact_counts_for_a_single_client() -> None:
    labels = np.array([1] * 30 + [0] * 70, dtype=np.int8)
    (client,) = partition(labels, 1, 0.2, np.random.default_rng(0)).clients
    assert np.count_nonzero(labels[client.test] == 1) == 6
    assert np.count_nonzero(labels[client.test] == 0) == 14
    assert np.count_nonzero(labels[client.train] == 1) == 24
    assert np.count_nonzero(labels[client.train] == 0) == 56


def test_uneven_sizes_for_a_known_cohort() -> None:
    labels = np.array([0, 1] * 51 + [0], dtype=np.int8)  # n = 103
    split = partition(labels, 4, 0.3, np.random.default_rng(3))
    sizes = sorted(c.train.size + c.test.size for c in split.clients)
    assert sizes == [25, 26, 26, 26]


@pytest.mark.parametrize(
    ("n", "num_clients"),
    [(10, 10), (10, 11), (20, 50), (40, 15)],
)
def test_too_many_clients_raises_config_error(n: int, num_clients: int) -> None:
    labels = np.array([0, 1] * (n // 2), dtype=np.int8)
    with pytest.raises(ConfigError, match=r"federation\.num_clients") as info:
        partition(labels, num_clients, 0.2, np.random.default_rng(0))
    assert f"federation.num_clients={num_clients}" in str(info.value)
    assert f"cohort of {n} individuals" in str(info.value)


def test_single_class_cohort_raises_config_error() -> None:
    labels = np.ones(100, dtype=np.int8)
    with pytest.raises(ConfigError, match=r"federation\.num_clients"):
        partition(labels, 1, 0.2, np.random.default_rng(0))


@pytest.mark.parametrize("num_clients", [0, -1])
def test_non_positive_num_clients_raises_config_error(num_clients: int) -> None:
    labels = np.array([0, 1] * 50, dtype=np.int8)
    with pytest.raises(ConfigError, match=r"federation\.num_clients"):
        partition(labels, num_clients, 0.2, np.random.default_rng(0))


@pytest.mark.parametrize("tf", [0.0, 1.0, -0.1, 1.5, math.nan, math.inf])
def test_test_fraction_outside_open_unit_interval_raises_config_error(tf: float) -> None:
    labels = np.array([0, 1] * 50, dtype=np.int8)
    with pytest.raises(ConfigError, match=r"federation\.test_fraction"):
        partition(labels, 2, tf, np.random.default_rng(0))


# --- The partition config group: IID, label skew, quantity skew, ancestry silos. -------------


def _cohort(labels: np.ndarray, groups: np.ndarray | None = None) -> Cohort:
    """A cohort whose genotypes do not matter to a partition (one SNP of zeros)."""
    metadata: dict[str, NDArray[np.generic]] = {}
    if groups is not None:
        metadata["ancestry_group"] = groups.astype(np.int8)
    return Cohort(
        genotypes=np.zeros((labels.size, 1), np.int8),
        labels=labels.astype(np.int8),
        snp_names=("snp0",),
        metadata=metadata,
    )


@st.composite
def skewed_cases(draw: st.DrawFn) -> tuple[Cohort, Partition, int, float]:
    """A cohort with ancestry groups, a non-IID partition of it and a feasible client count."""
    num_clients = draw(st.integers(1, 6))
    n = draw(st.integers(60 * num_clients, 120 * num_clients))
    case_share = draw(st.floats(0.3, 0.7))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    labels = (rng.random(n) < case_share).astype(np.int8)
    groups = rng.integers(0, draw(st.integers(2, 5)), size=n)
    groups[:2] = (0, 1)  # at least two groups
    test_fraction = draw(st.floats(0.1, 0.5))
    part: Partition = draw(
        st.one_of(
            st.builds(DirichletLabelPartition, alpha=st.floats(0.01, 100.0)),
            st.builds(QuantityPartition, alpha=st.floats(0.05, 10.0)),
            st.builds(
                QuantityPartition,
                sizes=st.lists(st.floats(0.5, 5.0), min_size=num_clients, max_size=num_clients),
            ),
            st.builds(AncestryPartition, mixing=st.floats(0.0, 1.0)),
        )
    )
    return _cohort(labels, groups), part, num_clients, test_fraction


def assert_valid_skewed_split(
    split: Split, labels: np.ndarray, num_clients: int, tf: float
) -> None:
    """Disjoint, complete, stratified within each client, both labels on both sides."""
    assert split.num_clients == num_clients
    arrays = [a for c in split.clients for a in (c.train, c.test)]
    assert all(a.dtype == np.int64 and a.ndim == 1 for a in arrays)
    assert np.array_equal(np.sort(np.concatenate(arrays)), np.arange(labels.size))
    floor = min_rows_per_label(tf)
    for c in split.clients:
        rows = np.concatenate([c.train, c.test])
        for cls in (0, 1):
            n_c = int(np.count_nonzero(labels[rows] == cls))
            n_test_c = int(np.count_nonzero(labels[c.test] == cls))
            assert n_c >= floor
            assert n_test_c == round(tf * n_c), (cls, n_c, n_test_c, tf)
            assert 0 < n_test_c < n_c


@PROPERTY
@given(skewed_cases(), st.integers(0, 2**32 - 1))
def test_skewed_split_is_disjoint_complete_and_stratified_within_clients(
    case: tuple[Cohort, Partition, int, float], seed: int
) -> None:
    cohort, part, num_clients, tf = case
    split = part.split(cohort, num_clients, tf, np.random.default_rng(seed))
    assert_valid_skewed_split(split, cohort.labels, num_clients, tf)


@PROPERTY
@given(skewed_cases(), st.integers(0, 2**32 - 1))
def test_skewed_split_is_reproducible_from_the_seed(
    case: tuple[Cohort, Partition, int, float], seed: int
) -> None:
    cohort, part, num_clients, tf = case
    a = part.split(cohort, num_clients, tf, np.random.default_rng(seed))
    b = part.split(cohort, num_clients, tf, np.random.default_rng(seed))
    for ca, cb in zip(a.clients, b.clients, strict=True):
        assert np.array_equal(ca.train, cb.train)
        assert np.array_equal(ca.test, cb.test)


@PROPERTY
@given(
    st.lists(st.integers(0, 1), min_size=1, max_size=80),
    st.integers(1, 8),
    st.floats(0.01, 0.99),
    st.integers(0, 2**32 - 1),
    st.sampled_from([DirichletLabelPartition(0.1), QuantityPartition(0.5), AncestryPartition(0.2)]),
)
def test_any_input_either_splits_validly_or_raises_config_error_naming_num_clients(
    label_list: list[int], num_clients: int, tf: float, seed: int, part: Partition
) -> None:
    labels = np.array(label_list, dtype=np.int8)
    groups = np.arange(labels.size) % 2
    try:
        split = part.split(_cohort(labels, groups), num_clients, tf, np.random.default_rng(seed))
    except ConfigError as exc:
        assert labels.size < 2 or f"federation.num_clients={num_clients} is too large" in str(exc)
        return
    assert_valid_skewed_split(split, labels, num_clients, tf)


@PROPERTY
@given(feasible_cases(), st.integers(0, 2**32 - 1))
def test_iid_partition_is_exactly_the_iid_function(
    case: tuple[np.ndarray, int, float], seed: int
) -> None:
    labels, num_clients, tf = case
    a = IIDPartition().split(_cohort(labels), num_clients, tf, np.random.default_rng(seed))
    b = partition(labels, num_clients, tf, np.random.default_rng(seed))
    for ca, cb in zip(a.clients, b.clients, strict=True):
        assert np.array_equal(ca.train, cb.train)
        assert np.array_equal(ca.test, cb.test)


def _label_skew(split: Split, labels: np.ndarray) -> float:
    """Row-weighted mean over clients of |client case share - cohort case share|."""
    share = labels.mean()
    total = 0.0
    for c in split.clients:
        rows = np.concatenate([c.train, c.test])
        total += rows.size * abs(labels[rows].mean() - share)
    return total / labels.size


def test_label_skew_grows_as_alpha_falls() -> None:
    labels = np.repeat(np.array([0, 1], np.int8), 1000)
    cohort = _cohort(labels)

    def skew(part: Partition) -> float:
        rngs = (np.random.default_rng(seed) for seed in range(20))
        return float(np.mean([_label_skew(part.split(cohort, 5, 0.2, r), labels) for r in rngs]))

    by_alpha = [skew(DirichletLabelPartition(alpha)) for alpha in (0.1, 1.0, 10.0, 100.0)]
    # Measured: 0.42, 0.27, 0.08, 0.026; IID deals 0.018 (0.5 would be one label per client).
    assert by_alpha == sorted(by_alpha, reverse=True)
    assert by_alpha[0] > 0.35 and by_alpha[-1] < 0.05
    assert skew(IIDPartition()) < 0.03


def test_quantity_sizes_follow_the_list_and_keep_the_label_mix() -> None:
    rng = np.random.default_rng(0)
    labels = (rng.random(1003) < 0.4).astype(np.int8)
    sizes = [5.0, 2.0, 1.0, 1.0, 1.0]
    split = QuantityPartition(sizes=sizes).split(_cohort(labels), 5, 0.2, rng)
    weights = np.array(sizes) / sum(sizes)
    for w, c in zip(weights, split.clients, strict=True):
        rows = np.concatenate([c.train, c.test])
        # Largest-remainder rounding per label: within one row per label of the exact share.
        assert abs(rows.size - w * labels.size) <= 2
        assert abs(labels[rows].sum() - w * labels.sum()) <= 1


def test_quantity_dirichlet_sizes_are_unequal_and_seeded() -> None:
    labels = np.tile(np.array([0, 1], np.int8), 500)
    a = QuantityPartition(alpha=0.5).split(_cohort(labels), 5, 0.2, np.random.default_rng(4))
    sizes = [c.train.size + c.test.size for c in a.clients]
    assert max(sizes) > 2 * min(sizes)
    b = QuantityPartition(alpha=0.5).split(_cohort(labels), 5, 0.2, np.random.default_rng(5))
    assert sizes != [c.train.size + c.test.size for c in b.clients]


def _home_share(split: Split, groups: np.ndarray, n_groups: int) -> float:
    """Share of all individuals that sit at a client whose home group is theirs (K >= G)."""
    at_home = 0
    for i, c in enumerate(split.clients):
        rows = np.concatenate([c.train, c.test])
        at_home += int(np.count_nonzero(groups[rows] == i % n_groups))
    return at_home / groups.size


def test_ancestry_silos_hold_their_home_group_and_mixing_dilutes_them() -> None:
    rng = np.random.default_rng(1)
    labels = (rng.random(3000) < 0.5).astype(np.int8)
    groups = rng.integers(0, 3, size=3000)
    cohort = _cohort(labels, groups)
    share = {
        mixing: _home_share(
            AncestryPartition(mixing).split(cohort, 6, 0.2, np.random.default_rng(2)), groups, 3
        )
        for mixing in (0.0, 0.3, 1.0)
    }
    # Expected home shares: 1 (bar the per-label floor, none needed here), 0.7 + 0.3/3, 1/3.
    assert share[0.0] == 1.0
    assert share[0.3] == pytest.approx(0.8, abs=0.03)
    assert share[1.0] == pytest.approx(1 / 3, abs=0.03)


def test_ancestry_with_fewer_clients_than_groups_homes_groups_round_robin() -> None:
    weights = home_weights(5, 2, 0.0)
    assert weights.tolist() == [[1, 0], [0, 1], [1, 0], [0, 1], [1, 0]]
    mixed = home_weights(2, 4, 0.5)
    assert np.allclose(mixed, [[0.375, 0.125, 0.375, 0.125], [0.125, 0.375, 0.125, 0.375]])


def test_floor_gives_every_client_both_labels_even_in_pure_silos() -> None:
    # Group 1 has no cases at all: its silo gets the floor's cases moved in from client 0.
    labels = np.array([1] * 100 + [0] * 100 + [0] * 100, np.int8)
    groups = np.array([0] * 200 + [1] * 100)
    split = AncestryPartition(0.0).split(_cohort(labels, groups), 2, 0.2, np.random.default_rng(0))
    assert_valid_skewed_split(split, labels, 2, 0.2)
    silo = np.concatenate([split.clients[1].train, split.clients[1].test])
    assert int(labels[silo].sum()) == min_rows_per_label(0.2) == 3


@pytest.mark.parametrize(("tf", "floor"), [(0.2, 3), (0.5, 2), (0.1, 6), (0.25, 3), (0.9, 5)])
def test_min_rows_per_label(tf: float, floor: int) -> None:
    assert min_rows_per_label(tf) == floor


def test_ancestry_without_groups_is_a_config_error_naming_the_setting() -> None:
    labels = np.tile(np.array([0, 1], np.int8), 100)
    for cohort in (_cohort(labels), _cohort(labels, np.zeros(200, int))):
        with pytest.raises(ConfigError, match=r"dataset\.n_ancestry_groups"):
            AncestryPartition().split(cohort, 2, 0.2, np.random.default_rng(0))
    with pytest.raises(ConfigError, match=r"dataset\.n_ancestry_groups=1"):
        AncestryPartition().check_source(SyntheticCohort(n_individuals=100, n_snps=5, n_causal=2))
    AncestryPartition().check_source(
        SyntheticCohort(n_individuals=100, n_snps=5, n_causal=2, n_ancestry_groups=2)
    )


@pytest.mark.parametrize(
    ("build", "key"),
    [
        (lambda: DirichletLabelPartition(0.0), "partition.alpha"),
        (lambda: DirichletLabelPartition(-1.0), "partition.alpha"),
        (lambda: DirichletLabelPartition(math.nan), "partition.alpha"),
        (lambda: QuantityPartition(alpha=0.0), "partition.alpha"),
        (lambda: QuantityPartition(sizes=[1.0, 0.0]), "partition.sizes"),
        (lambda: QuantityPartition(sizes=[]), "partition.sizes"),
        (lambda: AncestryPartition(1.5), "partition.mixing"),
        (lambda: AncestryPartition(-0.1), "partition.mixing"),
    ],
)
def test_bad_settings_are_config_errors_naming_the_key(build: Any, key: str) -> None:
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        build()


def test_sizes_of_the_wrong_length_name_both_settings() -> None:
    labels = np.tile(np.array([0, 1], np.int8), 100)
    with pytest.raises(ConfigError, match=r"partition\.sizes has 2 .*federation\.num_clients=3"):
        QuantityPartition(sizes=[1, 2]).split(_cohort(labels), 3, 0.2, np.random.default_rng(0))


# --- End to end: non-IID federations train, attack and draw per-client figures. --------------


def _run_json(tmp_path: Path, *overrides: str) -> dict[str, Any]:
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    env["FEDGEN_CACHE_DIR"] = str(tmp_path / "cache")
    out = subprocess.run(
        [
            sys.executable, "-m", "fedgen", "dataset=tiny", "tracking=none",
            "federation.num_rounds=2", f"hydra.run.dir={tmp_path / 'job'}", *overrides,
        ],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr[-3000:]
    record: dict[str, Any] = json.loads((tmp_path / "job" / "run.json").read_text())
    return record


def _assert_per_client_metrics(metrics: dict[str, float], num_clients: int) -> None:
    for name in ("mia", "gmia", "lia"):
        for cid in range(num_clients):
            assert f"{name}/client_{cid}/auc" in metrics, f"{name}/client_{cid}/auc"
    for cid in range(num_clients):
        assert f"fed/client_{cid}/test_accuracy" in metrics


@pytest.mark.slow
def test_dirichlet_run_end_to_end_with_per_client_metrics_and_figures(tmp_path: Path) -> None:
    record = _run_json(tmp_path, "partition=dirichlet", "partition.alpha=0.1")
    assert record["params"]["partition.alpha"] == "0.1"
    _assert_per_client_metrics(record["metrics"], 5)
    figures = {p.stem for p in (tmp_path / "job" / "figures").iterdir()}
    assert any(name.startswith("client_auc") for name in figures), figures


def test_ancestry_run_in_process_has_unequal_clients_and_per_client_metrics(
    compose_cfg: Callable[..., DictConfig], tmp_path: Path
) -> None:
    cfg = compose_cfg(
        "dataset=tiny", "federation.num_rounds=2", "tracking=none", "figures=false",
        "partition=ancestry", "dataset.n_ancestry_groups=3", "dataset.fst=0.05",
        f"cache_dir={tmp_path / 'cache'}",
    )  # fmt: skip
    exp = build_experiment(cfg, launch_dir=tmp_path, output_dir=tmp_path / "job")
    assert exp.training.partition == AncestryPartition(mixing=0.1)
    outcome = run_experiment(exp)
    _assert_per_client_metrics(outcome.metrics, 5)
    _, split = cohort_and_split(exp.training)
    sizes = {c.train.size + c.test.size for c in split.clients}
    assert len(sizes) > 1  # unequal clients


def test_ancestry_on_a_cohort_without_groups_fails_before_any_work(
    compose_cfg: Callable[..., DictConfig], tmp_path: Path
) -> None:
    cfg = compose_cfg("dataset=tiny", "tracking=none", "partition=ancestry")
    with pytest.raises(ConfigError, match=r"dataset\.n_ancestry_groups=1"):
        build_experiment(cfg, launch_dir=tmp_path, output_dir=tmp_path / "job")


def test_partition_keys_the_training_cache(compose_cfg: Callable[..., DictConfig]) -> None:
    def material(*overrides: str) -> dict[str, Any]:
        resolved = OmegaConf.to_container(compose_cfg(*overrides), resolve=True)
        assert isinstance(resolved, dict)
        return training_material(resolved)

    assert material()["partition"] == {"_target_": "fedgen.data.IIDPartition"}
    assert material("partition=dirichlet")["partition"]["alpha"] == 0.5
