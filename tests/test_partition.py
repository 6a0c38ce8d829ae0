"""Tests for fedgen.data.partition.partition: disjoint, complete, balanced, stratified, seeded."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fedgen.core.errors import ConfigError
from fedgen.core.records import Split
from fedgen.data.partition import partition

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
