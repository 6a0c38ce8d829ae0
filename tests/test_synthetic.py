"""Tests for fedgen.data.synthetic: Hardy-Weinberg genotypes and the liability-threshold cohort."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from numpy.typing import NDArray

from fedgen.core.errors import ConfigError
from fedgen.core.records import Cohort
from fedgen.data import synthetic
from fedgen.data.synthetic import SyntheticCohort, hwe_genotypes


def rng(seed: int) -> np.random.Generator:
    return np.random.default_rng(seed)


def label_correlations(cohort: Cohort) -> NDArray[np.float64]:
    """Signed Pearson r of every SNP with the label (0 for a monomorphic SNP)."""
    g = cohort.genotypes.astype(np.float64)
    y = cohort.labels.astype(np.float64)
    g_std = g.std(axis=0)
    g = (g - g.mean(axis=0)) / np.where(g_std > 0, g_std, 1.0)
    y = (y - y.mean()) / y.std()
    return np.asarray((g.T @ y) / y.size, dtype=np.float64)


def adjacent_correlations(genotypes: NDArray[np.int8]) -> NDArray[np.float64]:
    """Pearson r of SNP j with SNP j + 1, for every j."""
    g = genotypes.astype(np.float64)
    g = (g - g.mean(axis=0)) / g.std(axis=0)
    return np.asarray((g[:, :-1] * g[:, 1:]).mean(axis=0), dtype=np.float64)


@pytest.fixture(scope="module")
def default_cohort() -> Cohort:
    return SyntheticCohort().load(rng(0))


# --- hwe_genotypes -------------------------------------------------------------------------


def test_hwe_shape_dtype_and_values() -> None:
    maf = np.array([0.05, 0.2, 0.5])
    g = hwe_genotypes(rng(0), maf, 1001)
    assert g.shape == (1001, 3)
    assert g.dtype == np.int8
    assert set(np.unique(g).tolist()) == {0, 1, 2}


def test_hwe_frequencies_match_hardy_weinberg() -> None:
    n = 200_000
    maf = np.array([0.02, 0.1, 0.25, 0.4, 0.5])
    g = hwe_genotypes(rng(1), maf, n)
    for j, f in enumerate(maf):
        expected = np.array([(1 - f) ** 2, 2 * f * (1 - f), f**2])
        observed = np.bincount(g[:, j], minlength=3)[:3] / n
        se = np.sqrt(expected * (1 - expected) / n)
        assert np.all(np.abs(observed - expected) < 5 * se), (f, observed, expected)


def test_hwe_snps_and_individuals_are_independent() -> None:
    n = 200_000
    g = hwe_genotypes(rng(2), np.full(6, 0.3), n)
    r = np.asarray(np.corrcoef(g.astype(np.float64), rowvar=False))
    off_diagonal = r[~np.eye(6, dtype=bool)]
    assert np.abs(off_diagonal).max() < 5 / np.sqrt(n)
    # Consecutive individuals are not correlated either (no reuse of random words).
    x = g[:, 0].astype(np.float64)
    assert abs(np.corrcoef(x[:-1], x[1:])[0, 1]) < 5 / np.sqrt(n)


def test_hwe_monomorphic_snp_is_all_zero() -> None:
    g = hwe_genotypes(rng(3), np.array([0.0, 0.5]), 50_000)
    assert np.all(g[:, 0] == 0)
    assert 0.45 < g[:, 1].mean() / 2 < 0.55


def test_hwe_is_correct_across_chunk_boundaries(monkeypatch: pytest.MonkeyPatch) -> None:
    # Tiny chunks: 3 rows x 3 SNPs = 9 cells per chunk, not a multiple of the 4 words per draw.
    monkeypatch.setattr(synthetic, "_CHUNK_CELLS", 10)
    n = 20_000  # 6666 full chunks and a last one of 2 rows
    maf = np.array([0.1, 0.3, 0.5])
    g = hwe_genotypes(rng(4), maf, n)
    assert g.shape == (n, 3)
    assert set(np.unique(g).tolist()) <= {0, 1, 2}
    for j, f in enumerate(maf):
        expected = np.array([(1 - f) ** 2, 2 * f * (1 - f), f**2])
        observed = np.bincount(g[:, j], minlength=3)[:3] / n
        se = np.sqrt(expected * (1 - expected) / n)
        assert np.all(np.abs(observed - expected) < 5 * se), (f, observed, expected)


def test_hwe_same_seed_identical_different_seed_different() -> None:
    maf = np.array([0.1, 0.4])
    a = hwe_genotypes(rng(5), maf, 5000)
    b = hwe_genotypes(rng(5), maf, 5000)
    c = hwe_genotypes(rng(6), maf, 5000)
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c)


# --- SyntheticCohort: structure and determinism -------------------------------------------


def test_default_cohort_shapes_dtypes_and_values(default_cohort: Cohort) -> None:
    c = default_cohort
    assert c.genotypes.shape == (20_000, 100)
    assert c.genotypes.dtype == np.int8
    assert set(np.unique(c.genotypes).tolist()) == {0, 1, 2}
    assert c.labels.shape == (20_000,)
    assert c.labels.dtype == np.int8
    assert set(np.unique(c.labels).tolist()) == {0, 1}
    assert c.n_individuals == 20_000
    assert c.n_snps == 100
    assert c.snp_names == tuple(f"snp_{j}" for j in range(100))


def test_default_cohort_metadata(default_cohort: Cohort) -> None:
    md = default_cohort.metadata
    assert set(md) == {"maf", "causal", "effect", "ld_block", "ancestry_group"}
    assert md["maf"].shape == (100,)
    maf = np.asarray(md["maf"], dtype=np.float64)
    assert np.all((maf >= 0.05) & (maf <= 0.5))
    assert md["causal"].dtype == np.bool_
    assert int(md["causal"].sum()) == 10
    assert np.array_equal(md["effect"] != 0, md["causal"])
    assert np.array_equal(md["ld_block"], np.arange(100))
    assert np.all(md["ancestry_group"] == 0)
    assert md["ancestry_group"].shape == (20_000,)


def test_observed_allele_frequencies_match_metadata_maf(default_cohort: Cohort) -> None:
    observed = default_cohort.genotypes.mean(axis=0) / 2
    maf = np.asarray(default_cohort.metadata["maf"], dtype=np.float64)
    se = np.sqrt(maf * (1 - maf) / (2 * default_cohort.n_individuals))
    assert np.all(np.abs(observed - maf) < 5 * se)


def test_same_seed_gives_bit_identical_cohort() -> None:
    source = SyntheticCohort(n_individuals=2000, n_snps=30, n_ancestry_groups=2, fst=0.05)
    a, b = source.load(rng(7)), source.load(rng(7))
    assert np.array_equal(a.genotypes, b.genotypes)
    assert np.array_equal(a.labels, b.labels)
    assert a.snp_names == b.snp_names
    assert a.metadata.keys() == b.metadata.keys()
    for key in a.metadata:
        assert np.array_equal(a.metadata[key], b.metadata[key]), key


def test_different_seed_gives_different_cohort() -> None:
    source = SyntheticCohort(n_individuals=2000, n_snps=30)
    a, b = source.load(rng(7)), source.load(rng(8))
    assert not np.array_equal(a.genotypes, b.genotypes)
    assert not np.array_equal(a.labels, b.labels)
    assert not np.array_equal(a.metadata["maf"], b.metadata["maf"])


# --- phenotype ------------------------------------------------------------------------------


@pytest.mark.parametrize(("n", "prevalence"), [(20_000, 0.5), (1001, 0.5), (999, 0.1), (37, 0.3)])
def test_prevalence_is_exact(n: int, prevalence: float) -> None:
    cohort = SyntheticCohort(n_individuals=n, n_snps=10, n_causal=3, prevalence=prevalence).load(
        rng(9)
    )
    assert int(cohort.labels.sum()) == round(prevalence * n)


@settings(max_examples=50, deadline=None)
@given(
    st.integers(2, 400),
    st.floats(0.0, 1.0, exclude_min=True, exclude_max=True),
    st.floats(0.0, 1.0),
    st.integers(0, 2**32 - 1),
)
def test_prevalence_is_exact_for_any_size(
    n: int, prevalence: float, heritability: float, seed: int
) -> None:
    cohort = SyntheticCohort(
        n_individuals=n, n_snps=4, n_causal=2, prevalence=prevalence, heritability=heritability
    ).load(rng(seed))
    assert cohort.labels.dtype == np.int8
    assert set(np.unique(cohort.labels).tolist()) <= {0, 1}
    assert int(cohort.labels.sum()) == round(prevalence * n)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_default_signal_strength_is_weak_but_present(seed: int) -> None:
    cohort = SyntheticCohort().load(rng(seed))
    assert 0.05 <= np.abs(label_correlations(cohort)).max() <= 0.2


@pytest.mark.parametrize("seed", [0, 1])
def test_zero_heritability_gives_no_signal(seed: int) -> None:
    cohort = SyntheticCohort(heritability=0.0).load(rng(seed))
    assert np.abs(label_correlations(cohort)).max() < 0.05


def test_causal_snps_carry_the_signal() -> None:
    cohort = SyntheticCohort(heritability=0.5).load(rng(10))
    r = label_correlations(cohort)
    causal = np.asarray(cohort.metadata["causal"], dtype=np.bool_)
    assert np.abs(r[causal]).mean() > 5 * np.abs(r[~causal]).mean()
    assert np.abs(r[~causal]).max() < 0.05
    # Cases are the *highest* liabilities: r follows the sign and size of the effect.
    effect = np.asarray(cohort.metadata["effect"], dtype=np.float64)
    assert np.corrcoef(effect[causal], r[causal])[0, 1] > 0.9
    strong = causal & (np.abs(effect) > 0.5)
    assert strong.any()
    assert np.array_equal(np.sign(r[strong]), np.sign(effect[strong]))


def test_heritability_one_makes_labels_a_function_of_causal_snps() -> None:
    cohort = SyntheticCohort(
        n_individuals=5000, n_snps=20, n_causal=3, heritability=1.0, prevalence=0.3
    ).load(rng(11))
    causal = np.asarray(cohort.metadata["causal"], dtype=np.bool_)
    g = cohort.genotypes[:, causal].astype(np.float64)
    score = ((g - g.mean(axis=0)) / g.std(axis=0)) @ cohort.metadata["effect"][causal]
    # Without environment noise, every case has a score at least that of every control.
    assert score[cohort.labels == 1].min() >= score[cohort.labels == 0].max() - 1e-9


def test_all_snps_causal_and_none_causal_are_allowed() -> None:
    all_causal = SyntheticCohort(n_individuals=500, n_snps=5, n_causal=5).load(rng(12))
    assert all_causal.metadata["causal"].all()
    none_causal = SyntheticCohort(n_individuals=500, n_snps=5, n_causal=0).load(rng(12))
    assert not none_causal.metadata["causal"].any()
    assert np.all(none_causal.metadata["effect"] == 0)
    assert int(none_causal.labels.sum()) == 250


# --- ancestry -------------------------------------------------------------------------------


def group_frequency_gap(cohort: Cohort) -> float:
    groups = cohort.metadata["ancestry_group"]
    f0 = cohort.genotypes[groups == 0].mean(axis=0) / 2
    f1 = cohort.genotypes[groups == 1].mean(axis=0) / 2
    return float(np.abs(f0 - f1).mean())


def test_fst_separates_ancestry_groups() -> None:
    kwargs: dict[str, Any] = {"n_snps": 50, "n_ancestry_groups": 2}
    structured = SyntheticCohort(fst=0.1, **kwargs).load(rng(13))
    panmictic = SyntheticCohort(fst=0.0, **kwargs).load(rng(13))
    gap_structured = group_frequency_gap(structured)
    gap_panmictic = group_frequency_gap(panmictic)
    assert gap_panmictic < 0.01  # sampling noise only
    assert gap_structured > 0.05
    assert gap_structured > 5 * gap_panmictic


def test_ancestry_groups_metadata() -> None:
    cohort = SyntheticCohort(n_snps=10, n_causal=2, n_ancestry_groups=3, fst=0.05).load(rng(14))
    groups = cohort.metadata["ancestry_group"]
    assert groups.shape == (20_000,)
    counts = np.bincount(groups, minlength=3)
    assert counts.size == 3
    # Equal expected sizes: 20,000 / 3 each, binomial sd ~ 67.
    assert np.all(np.abs(counts - 20_000 / 3) < 400)
    assert set(np.unique(cohort.genotypes).tolist()) == {0, 1, 2}
    assert int(cohort.labels.sum()) == 10_000


# --- linkage disequilibrium -----------------------------------------------------------------


def test_ld_blocks_correlate_snps_within_but_not_across_blocks() -> None:
    cohort = SyntheticCohort(
        n_snps=50, n_causal=0, heritability=0.0, ld_block_size=5, ld_rho=0.5
    ).load(rng(15))
    blocks = cohort.metadata["ld_block"]
    assert np.array_equal(blocks, np.arange(50) // 5)
    r = adjacent_correlations(cohort.genotypes)
    same_block = blocks[:-1] == blocks[1:]
    assert same_block.sum() == 40
    assert r[same_block].mean() > 0.15
    assert r[same_block].min() > 0.05
    assert abs(r[~same_block].mean()) < 0.02
    assert np.abs(r[~same_block]).max() < 0.04


def test_ld_keeps_marginal_allele_frequencies() -> None:
    cohort = SyntheticCohort(n_snps=40, ld_block_size=4, ld_rho=0.8).load(rng(16))
    maf = np.asarray(cohort.metadata["maf"], dtype=np.float64)
    observed = cohort.genotypes.mean(axis=0) / 2
    se = np.sqrt(maf * (1 - maf) / (2 * cohort.n_individuals))
    assert np.all(np.abs(observed - maf) < 5 * se)
    assert cohort.genotypes.dtype == np.int8
    assert set(np.unique(cohort.genotypes).tolist()) == {0, 1, 2}


def test_block_size_without_rho_gives_no_ld() -> None:
    cohort = SyntheticCohort(n_snps=30, ld_block_size=5, ld_rho=0.0).load(rng(17))
    r = adjacent_correlations(cohort.genotypes)
    assert np.abs(r).max() < 0.04


def test_ld_with_ancestry_groups() -> None:
    cohort = SyntheticCohort(
        n_snps=20, n_causal=2, n_ancestry_groups=2, fst=0.05, ld_block_size=4, ld_rho=0.6
    ).load(rng(18))
    assert cohort.genotypes.shape == (20_000, 20)
    groups = cohort.metadata["ancestry_group"]
    blocks = cohort.metadata["ld_block"]
    same_block = blocks[:-1] == blocks[1:]
    for k in (0, 1):
        r = adjacent_correlations(cohort.genotypes[groups == k])
        assert r[same_block].mean() > 0.15


# --- validation -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "key"),
    [
        ({"n_snps": 5, "n_causal": 6}, "dataset.n_causal"),
        ({"n_causal": -1}, "dataset.n_causal"),
        ({"prevalence": 0.0}, "dataset.prevalence"),
        ({"prevalence": 1.0}, "dataset.prevalence"),
        ({"maf_low": 0.3, "maf_high": 0.2}, "dataset.maf_low"),
        ({"maf_low": 0.0}, "dataset.maf_low"),
        ({"maf_high": 0.6}, "dataset.maf_high"),
        ({"heritability": 1.01}, "dataset.heritability"),
        ({"heritability": -0.1}, "dataset.heritability"),
        ({"n_individuals": 1}, "dataset.n_individuals"),
        ({"n_snps": 0, "n_causal": 0}, "dataset.n_snps"),
        ({"n_ancestry_groups": 0}, "dataset.n_ancestry_groups"),
        ({"fst": 1.0}, "dataset.fst"),
        ({"fst": -0.1}, "dataset.fst"),
        ({"ld_block_size": 0}, "dataset.ld_block_size"),
        ({"ld_rho": 1.0}, "dataset.ld_rho"),
    ],
)
def test_invalid_settings_raise_config_error_naming_the_key(
    kwargs: dict[str, Any], key: str
) -> None:
    with pytest.raises(ConfigError) as info:
        SyntheticCohort(**kwargs)
    assert key in str(info.value)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"n_snps": 5, "n_causal": 5},
        {"heritability": 0.0},
        {"heritability": 1.0},
        {"maf_low": 0.2, "maf_high": 0.2},
        {"maf_high": 0.5},
        {"n_individuals": 2},
    ],
)
def test_boundary_settings_are_accepted(kwargs: dict[str, Any]) -> None:
    source = SyntheticCohort(**kwargs)
    for name, value in kwargs.items():
        assert getattr(source, name) == value
