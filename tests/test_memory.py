"""Memory that fits (issue 11): genotypes stay int8, chunks give the bits the whole matrix gives."""

from __future__ import annotations

import hashlib
import pickle

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from numpy.typing import NDArray

from fedgen.attacks import Arena, ConfidenceMIA, GradientNormMIA
from fedgen.attacks import genotypes as genotype_rows
from fedgen.attacks.alignment import AlignmentMIA, alignments
from fedgen.attacks.genotypes import GenotypeRows, chunk_rows
from fedgen.attacks.lrt import LikelihoodRatioMIA, allele_frequencies, lr_statistics
from fedgen.attacks.membership import MODEL_OF_OBSERVER
from fedgen.attacks.signals import (
    decision_values,
    gradient_norms,
    log_gradient_norms,
    norms_and_log_norms,
    per_sample_gradients,
)
from fedgen.attacks.views import label_view, membership_view
from fedgen.core.records import Cohort
from fedgen.core.seeding import child_rng
from fedgen.data import SyntheticCohort
from fedgen.evaluation.pools import PaperPool
from fedgen.experiment import cache
from fedgen.federation import data as federation_data
from fedgen.federation import train_federation
from fedgen.federation.data import ClientFloats, client_data
from fedgen.models import SGDLogistic
from tests.conftest import make_split
from tests.conftest import settings as fed_settings

MODEL = SGDLogistic()


@pytest.fixture(scope="module")
def trained() -> tuple[Cohort, Arena]:
    """A 4-client federation on 600 x 300 SNPs with a reference panel (pool 600 rows)."""
    cohort = SyntheticCohort(n_individuals=600, n_snps=300, n_causal=20, n_reference=200).load(
        child_rng(0, "cohort")
    )
    split = make_split(cohort, 4)
    server = train_federation(cohort, split, fed_settings(4, 3), MODEL, seed=0)
    pool = PaperPool().pool(split, child_rng(0, "pool"))
    return cohort, Arena(cohort, pool, server, 0, MODEL)


@pytest.fixture()
def small_chunks(monkeypatch: pytest.MonkeyPatch) -> int:
    """Chunks of 64 rows at 300 SNPs, so a 600-row pool is read in 10 uneven pieces."""
    monkeypatch.setattr(genotype_rows, "CHUNK_VALUES", 64 * 300 + 63)
    assert chunk_rows(300) == 64
    return 64


def test_views_hold_the_cohorts_int8_genotypes_not_a_float_copy(
    trained: tuple[Cohort, Arena],
) -> None:
    cohort, arena = trained
    view = membership_view(arena).view
    assert view.records.source is cohort.genotypes and view.records.source.dtype == np.int8
    np.testing.assert_array_equal(view.records.rows, arena.pool.rows)
    np.testing.assert_array_equal(
        view.records.dense(), cohort.genotypes[arena.pool.rows].astype(np.float64)
    )
    labels = label_view(arena, 0.5, "s").view
    assert labels.aux_records.source is cohort.genotypes
    lrt = LikelihoodRatioMIA().observe(arena).view
    assert lrt.records.source is cohort.genotypes
    assert cohort.reference is not None
    assert lrt.reference_records.int8() is cohort.reference.genotypes  # all of it: no copy
    alignment = AlignmentMIA().observe(arena).view
    assert alignment.records.source is alignment.participant_records.source is cohort.genotypes


def test_chunked_signals_are_bit_identical_to_the_whole_float_matrix(
    trained: tuple[Cohort, Arena], small_chunks: int
) -> None:
    """Every signal, read 64 rows at a time from int8, equals the whole float64 computation."""
    cohort, arena = trained
    view = membership_view(arena).view
    X = cohort.genotypes[arena.pool.rows].astype(np.float64)
    y, clients, server = view.labels, view.clients, arena.server
    assert X.shape[0] > 5 * small_chunks and X.shape[0] % small_chunks != 0
    final = server.final_params
    whole = MODEL.decision_function(final, X)
    np.testing.assert_array_equal(
        decision_values(MODEL, server, "global", view.records, clients), whole
    )
    by_client = np.empty(X.shape[0])
    for c, params in enumerate(server.rounds[-1].client_params):
        rows = np.flatnonzero(clients == c)
        by_client[rows] = MODEL.decision_function(params, X[rows])
    np.testing.assert_array_equal(
        decision_values(MODEL, server, "client", view.records, clients), by_client
    )
    grads = MODEL.per_sample_gradients(final, X, y)
    np.testing.assert_array_equal(per_sample_gradients(MODEL, final, view.records, y), grads)
    for choice in ("global", "client"):
        np.testing.assert_array_equal(
            gradient_norms(MODEL, server, choice, view.records, y, clients),
            gradient_norms(MODEL, server, choice, X, y, clients),
        )
        np.testing.assert_array_equal(
            log_gradient_norms(MODEL, server, choice, view.records, y, clients),
            log_gradient_norms(MODEL, server, choice, X, y, clients),
        )
    assert cohort.reference is not None
    ref = GenotypeRows(cohort.reference.genotypes, np.arange(cohort.reference.n_individuals))
    freqs = allele_frequencies(ref)
    np.testing.assert_array_equal(freqs, allele_frequencies(ref.dense()))
    updates = np.stack([np.r_[p["coef"], p["intercept"]] for p in server.rounds[-1].client_params])
    p = freqs.size
    direction = (updates[:, :p] - 2.0 * freqs * updates[:, p:]) / (2.0 * freqs * (1.0 - freqs))
    sign = 2.0 * y.astype(np.float64) - 1.0
    # A matrix product (K updates) is blocked by BLAS by its size: chunks round the last bit.
    np.testing.assert_allclose(
        lr_statistics(view.records, y, updates, freqs),
        sign[:, None] * ((X - 2.0 * freqs) @ direction.T),
        rtol=1e-13,
        atol=1e-9,
    )
    offset = ref.int8().mean(axis=0, dtype=np.float64)
    training = AlignmentMIA().observe(arena).view.training
    for a, b in zip(
        alignments(training, MODEL, view.records, y, offset),
        alignments(training, MODEL, X, y, offset),
        strict=True,
    ):
        np.testing.assert_array_equal(a, b)


def test_attack_scores_do_not_depend_on_the_chunk_size(
    trained: tuple[Cohort, Arena], monkeypatch: pytest.MonkeyPatch
) -> None:
    _, arena = trained
    exact = [ConfidenceMIA(), GradientNormMIA(observer="server"), AlignmentMIA()]
    lrt = LikelihoodRatioMIA()

    def scores() -> list[NDArray[np.float64] | None]:
        out = [a.run(a.observe(arena).view).ranks for a in exact]
        return [*out, lrt.run(lrt.observe(arena).view).ranks]

    before = scores()
    monkeypatch.setattr(genotype_rows, "CHUNK_VALUES", 128 * 300)
    after = scores()
    for b, a in zip(before[:-1], after[:-1], strict=True):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_allclose(after[-1], before[-1], rtol=1e-12, atol=1e-12)


@settings(max_examples=30, deadline=None)
@given(p=st.integers(1, 10**6), limit=st.integers(64, 8192))
def test_chunks_are_bounded_multiples_of_the_row_quantum(p: int, limit: int) -> None:
    rows = chunk_rows(p, limit)
    assert rows % genotype_rows.ROW_QUANTUM == 0 and rows >= genotype_rows.ROW_QUANTUM
    assert rows <= max(limit, genotype_rows.ROW_QUANTUM)
    assert rows * p <= max(genotype_rows.CHUNK_VALUES, genotype_rows.ROW_QUANTUM * p)


def test_clients_share_the_cohort_and_make_float_rows_only_on_use(
    trained: tuple[Cohort, Arena],
) -> None:
    cohort, _ = trained
    split = make_split(cohort, 4)
    data = client_data(cohort, split)
    for rows, c in zip(data, split.clients, strict=True):
        assert rows.genotypes is cohort.genotypes
        first = rows.X_train
        np.testing.assert_array_equal(first, cohort.genotypes[c.train].astype(np.float64))
        np.testing.assert_array_equal(rows.X_test, cohort.genotypes[c.test].astype(np.float64))
        assert rows.X_train is not first  # not kept: one client's float rows at a time
        np.testing.assert_array_equal(rows.y_train, cohort.labels[c.train])


def test_training_key_hashes_a_strided_array_by_blocks_as_its_contiguous_copy(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(cache, "_HASH_BLOCK_BYTES", 100)
    rng = np.random.default_rng(0)
    matrix = rng.integers(0, 3, (50, 40)).astype(np.int8)
    strided = matrix[:, ::2]  # 20 columns, not contiguous: hashed 5 rows at a time
    assert not strided.flags.c_contiguous
    key = cache.training_key({"a": 1}, [strided, matrix.T, np.arange(7)])
    same = cache.training_key({"a": 1}, [strided.copy(), matrix.T.copy(), np.arange(7)])
    assert key == same
    assert key != cache.training_key({"a": 1}, [matrix[:, 1::2], matrix.T, np.arange(7)])
    # The digest is the one hashing each whole contiguous copy gave (the cache's old keys).
    digest = hashlib.sha256()
    cache._update_framed(digest, b'{"a":1}')
    arrays = [strided, matrix.T, np.arange(7)]
    digest.update(len(arrays).to_bytes(8, "big"))
    for array in arrays:
        header = f'["{array.dtype.str}",[{",".join(map(str, array.shape))}]]'.encode("ascii")
        cache._update_framed(digest, header)
        cache._update_framed(digest, np.ascontiguousarray(array).data)
    assert key == digest.hexdigest()


def test_client_floats_are_the_fresh_cast_kept_when_small_else_one_reused_buffer(
    trained: tuple[Cohort, Arena],
) -> None:
    cohort, _ = trained
    data = client_data(cohort, make_split(cohort, 4))
    kept, reused = ClientFloats(data), ClientFloats(data, budget=0)
    assert kept.keep and not reused.keep
    buffers = set()
    for pid, rows in enumerate(data):
        for part, index in (("train", rows.train), ("test", rows.test)):
            fresh = cohort.genotypes[index].astype(np.float64)
            with kept.rows(pid, part) as x:
                np.testing.assert_array_equal(x, fresh)
                assert not x.flags.writeable and x.flags.c_contiguous
                with kept.rows(pid, part) as again:
                    assert again is x  # made once, then kept
            with reused.rows(pid, part) as x:
                np.testing.assert_array_equal(x, fresh)
                assert x.flags.c_contiguous and x.shape == fresh.shape
                buffers.add(x.__array_interface__["data"][0])
                with reused.rows(pid, part) as inner:  # the buffer is busy: a fresh array
                    assert not np.shares_memory(inner, x)
                    np.testing.assert_array_equal(inner, fresh)
    assert len(buffers) == 1  # every client's rows were cast into the same buffer
    copy = pickle.loads(pickle.dumps(reused))
    assert copy._buffer is None and not copy.keep
    with copy.rows(0, "test") as x:
        np.testing.assert_array_equal(x, cohort.genotypes[data[0].test].astype(np.float64))


def test_training_is_bit_identical_with_kept_floats_and_with_the_reused_buffer(
    trained: tuple[Cohort, Arena], monkeypatch: pytest.MonkeyPatch
) -> None:
    cohort, arena = trained
    split = make_split(cohort, 4)
    monkeypatch.setattr(federation_data, "FLOAT_CACHE_BYTES", 0)
    reused = train_federation(cohort, split, fed_settings(4, 3), MODEL, seed=0)
    kept = arena.server  # trained with the default budget: every client's floats kept
    for a, b in zip(kept.rounds, reused.rounds, strict=True):
        assert a.metrics == b.metrics
        ours, theirs = (a.global_params, *a.client_params), (b.global_params, *b.client_params)
        for pa, pb in zip(ours, theirs, strict=True):
            for key in pa:
                np.testing.assert_array_equal(pa[key], pb[key])


def test_one_pass_gmia_and_mia_equal_the_signals_bit_for_bit(
    trained: tuple[Cohort, Arena], small_chunks: int
) -> None:
    _, arena = trained
    view = membership_view(arena).view
    for choice in ("global", "client"):
        args = (view.server, choice, view.records, view.labels, view.clients)
        norms, log_norms = norms_and_log_norms(MODEL, *args)
        np.testing.assert_array_equal(norms, gradient_norms(MODEL, *args))
        np.testing.assert_array_equal(log_norms, log_gradient_norms(MODEL, *args))
    for observer in ("server", "public"):
        z = decision_values(
            MODEL, view.server, MODEL_OF_OBSERVER[observer], view.records, view.clients
        )
        ranks = ConfidenceMIA(observer=observer).run(view).ranks
        np.testing.assert_array_equal(ranks, np.where(view.labels == 1, z, -z))


def test_float_chunks_reuse_one_buffer_and_read_as_take_does(
    trained: tuple[Cohort, Arena],
) -> None:
    cohort, arena = trained
    records = GenotypeRows(cohort.genotypes, arena.pool.rows)
    offset = cohort.genotypes.mean(axis=0)
    pieces = [np.arange(0, 64), np.arange(64, 100), np.array([5, 3, 5])]
    for X in (records, records.centred(offset), records.dense()):
        seen = set()
        for part, x in zip(pieces, genotype_rows.float_chunks(X, pieces), strict=True):
            np.testing.assert_array_equal(x, genotype_rows.take(X, part))
            seen.add(x.__array_interface__["data"][0])
        if isinstance(X, GenotypeRows):
            assert len(seen) == 1
