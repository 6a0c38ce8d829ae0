"""dataset=msprime: coalescent cohorts have LD, rare variants and structure; they are cached."""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from numpy.typing import NDArray
from omegaconf import DictConfig

from fedgen.core.errors import ConfigError, DataError
from fedgen.core.records import Cohort
from fedgen.core.seeding import child_rng
from fedgen.data import MsprimeCohort, SyntheticCohort, coalescent
from fedgen.experiment.build import check_config

# Tiny simulations: 1 Mb of sequence and a few hundred individuals take about a second.
SMALL = {"n_individuals": 240, "n_reference": 120, "n_snps": 200, "sequence_length": 1e6}
TINY = {"n_individuals": 60, "n_reference": 30, "n_snps": 20, "sequence_length": 2e5}


@pytest.fixture(scope="module")
def cohort() -> Cohort:
    return MsprimeCohort(**SMALL, min_maf=0.01, cache=False).load(child_rng(0, "cohort"))


def _hudson_fst(a: NDArray[np.int8], b: NDArray[np.int8]) -> float:
    """Hudson's Fst between two samples of genotypes (n_a, p) and (n_b, p), ratio of averages."""
    pa, pb = a.mean(axis=0) / 2, b.mean(axis=0) / 2
    na, nb = 2 * a.shape[0], 2 * b.shape[0]
    num = (pa - pb) ** 2 - pa * (1 - pa) / (na - 1) - pb * (1 - pb) / (nb - 1)
    den = pa * (1 - pb) + pb * (1 - pa)
    return float(num.sum() / den.sum())


def _adjacent_r2(genotypes: NDArray[np.int8]) -> float:
    """Mean squared correlation of neighbouring SNPs (columns j and j + 1)."""
    g = genotypes.astype(np.float64)
    g = (g - g.mean(axis=0)) / g.std(axis=0)
    r = (g[:, :-1] * g[:, 1:]).mean(axis=0)
    return float(np.mean(r**2))


def test_cohort_shapes_codes_and_metadata(cohort: Cohort) -> None:
    n, p = SMALL["n_individuals"], SMALL["n_snps"]
    assert cohort.genotypes.shape == (n, p) and cohort.genotypes.dtype == np.int8
    assert set(np.unique(cohort.genotypes)) <= {0, 1, 2}
    assert cohort.labels.dtype == np.int8 and cohort.labels.sum() == n // 2  # prevalence 0.5
    assert len(set(cohort.snp_names)) == p
    position = cohort.metadata["position"]
    assert np.all(np.diff(position) > 0) and position[-1] < SMALL["sequence_length"]
    assert cohort.metadata["causal"].sum() == 10
    # Minor-allele counts: the counted allele is the rarer one over cohort and reference.
    assert cohort.reference is not None
    both = np.vstack([cohort.genotypes, cohort.reference.genotypes])
    freq = both.mean(axis=0) / 2
    np.testing.assert_allclose(freq, cohort.metadata["maf"])
    assert np.all(freq <= 0.5) and np.all(freq >= 0.01)
    # Equal numbers from each population, shuffled (not listed population by population).
    groups = cohort.metadata["ancestry_group"]
    assert groups.dtype == np.int8 and np.bincount(groups).tolist() == [80, 80, 80]
    assert np.any(np.diff(groups) < 0)


def test_neighbouring_snps_are_in_ld_unlike_the_unlinked_simulator(cohort: Cohort) -> None:
    n, p = cohort.genotypes.shape
    unlinked = SyntheticCohort(n_individuals=n, n_snps=p, maf_low=0.01).load(child_rng(0, "x"))
    ld, none = _adjacent_r2(cohort.genotypes), _adjacent_r2(unlinked.genotypes)
    assert none < 0.01  # ~1/n: sampling noise only
    assert ld > 10 * none
    # LD decays with distance: SNPs 50 apart (~250 kb) are far less correlated than neighbours.
    g = cohort.genotypes.astype(np.float64)
    g = (g - g.mean(axis=0)) / g.std(axis=0)
    far = float(np.mean((g[:, :-50] * g[:, 50:]).mean(axis=0) ** 2))
    assert far < ld / 3


def test_contigs_are_inherited_independently() -> None:
    # One population, so that structure adds no correlation between unlinked SNPs.
    source = MsprimeCohort(
        n_individuals=300, n_snps=100, sequence_length=2e5, n_contigs=2, populations=["YRI"]
    )
    cohort = source.load(child_rng(0, "cohort"))
    contig = cohort.metadata["contig"]
    assert contig.tolist() == sorted(contig.tolist()) and set(contig.tolist()) == {0, 1}
    g = cohort.genotypes.astype(np.float64)
    g = (g - g.mean(axis=0)) / g.std(axis=0)
    r2 = (g.T @ g / g.shape[0]) ** 2
    a, b = contig == 0, contig == 1
    within = r2[np.ix_(a, a)][np.triu_indices(int(a.sum()), 1)].mean()
    across = r2[np.ix_(a, b)].mean()
    assert across < 1.5 / 300  # E[r^2] = 1/n for independent SNPs
    assert within > 5 * across


def test_allele_frequency_spectrum_is_skewed_to_rare_variants(cohort: Cohort) -> None:
    maf = cohort.metadata["maf"]
    # Uniform on [0.01, 0.5] (the synthetic source's model) has median 0.255 and 18% below 0.1;
    # the coalescent's spectrum (~1/f, then thinned evenly by rank) has far more rare SNPs.
    assert np.median(maf) < 0.15
    assert np.mean(maf < 0.1) > 0.35


def test_populations_differ_in_allele_frequencies(cohort: Cohort) -> None:
    g, groups = cohort.genotypes, cohort.metadata["ancestry_group"]
    yri, ceu = g[groups == 0], g[groups == 1]
    assert _hudson_fst(yri, ceu) > 0.05  # YRI-CEU is ~0.1 in real data and in this model
    # Control: two halves of one population do not differ beyond sampling noise.
    assert abs(_hudson_fst(yri[:40], yri[40:])) < 0.02


def test_reference_individuals_come_from_the_same_populations(cohort: Cohort) -> None:
    ref = cohort.reference
    assert ref is not None
    assert ref.genotypes.shape == (SMALL["n_reference"], SMALL["n_snps"])
    assert ref.snp_names == cohort.snp_names
    ref_groups = ref.metadata["ancestry_group"]
    assert np.bincount(ref_groups).tolist() == [40, 40, 40]
    groups = cohort.metadata["ancestry_group"]
    for k in range(3):
        same = _hudson_fst(cohort.genotypes[groups == k], ref.genotypes[ref_groups == k])
        other = _hudson_fst(cohort.genotypes[groups == k], ref.genotypes[ref_groups == (k + 1) % 3])
        assert abs(same) < 0.02 < other
    # Their phenotype is the cohort's model: causal effects shared, prevalence about 0.5.
    assert 0.3 < ref.labels.mean() < 0.7


def test_same_seed_same_cohort_other_seed_other_cohort(cohort: Cohort) -> None:
    source = MsprimeCohort(**SMALL, min_maf=0.01, cache=False)
    again = source.load(child_rng(0, "cohort"))
    np.testing.assert_array_equal(again.genotypes, cohort.genotypes)
    np.testing.assert_array_equal(again.labels, cohort.labels)
    assert again.reference is not None and cohort.reference is not None
    np.testing.assert_array_equal(again.reference.genotypes, cohort.reference.genotypes)
    tiny = MsprimeCohort(**TINY, cache=False)
    a, b = tiny.load(child_rng(1, "cohort")), tiny.load(child_rng(2, "cohort"))
    assert a.snp_names != b.snp_names


def _counting(monkeypatch: pytest.MonkeyPatch) -> list[coalescent.Simulation]:
    calls: list[coalescent.Simulation] = []
    real = coalescent.simulate

    def counted(sim: coalescent.Simulation) -> coalescent.Simulated:
        calls.append(sim)
        return real(sim)

    monkeypatch.setattr(coalescent, "simulate", counted)
    return calls


def test_cache_hit_returns_the_same_arrays_without_simulating(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = _counting(monkeypatch)
    source = MsprimeCohort(**TINY, cache_dir=str(tmp_path))
    first = source.load(child_rng(0, "cohort"))
    assert len(calls) == 1
    (entry,) = (tmp_path / "msprime").glob("*.npz")
    assert not list((tmp_path / "msprime").glob("*.tmp"))  # written atomically
    second = source.load(child_rng(0, "cohort"))
    assert len(calls) == 1  # a hit
    np.testing.assert_array_equal(second.genotypes, first.genotypes)
    np.testing.assert_array_equal(second.labels, first.labels)
    np.testing.assert_array_equal(second.metadata["position"], first.metadata["position"])
    # The phenotype is drawn after the simulation: changing it reuses the entry...
    MsprimeCohort(**TINY, cache_dir=str(tmp_path), heritability=0.5).load(child_rng(0, "cohort"))
    assert len(calls) == 1
    # ... while anything that changes the genotypes, or the seed, simulates again.
    MsprimeCohort(**TINY, cache_dir=str(tmp_path), min_maf=0.1).load(child_rng(0, "cohort"))
    source.load(child_rng(1, "cohort"))
    assert len(calls) == 3
    assert len(list((tmp_path / "msprime").glob("*.npz"))) == 3
    assert entry.exists()


def test_a_corrupt_entry_is_simulated_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    calls = _counting(monkeypatch)
    source = MsprimeCohort(**TINY, cache_dir=str(tmp_path))
    first = source.load(child_rng(0, "cohort"))
    (entry,) = (tmp_path / "msprime").glob("*.npz")
    entry.write_bytes(b"not a zip file")
    with caplog.at_level(logging.WARNING, logger="fedgen.data.coalescent"):
        again = source.load(child_rng(0, "cohort"))
    assert len(calls) == 2 and "corrupt" in caplog.text
    np.testing.assert_array_equal(again.genotypes, first.genotypes)
    assert source.load(child_rng(0, "cohort")) is not None and len(calls) == 2  # repaired


def test_cache_dir_defaults_to_the_fedgen_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FEDGEN_CACHE_DIR", str(tmp_path / "fc"))
    MsprimeCohort(**TINY).load(child_rng(0, "cohort"))
    assert len(list((tmp_path / "fc" / "msprime").glob("*.npz"))) == 1


def test_missing_extra_names_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "msprime", None)  # import msprime now raises ImportError
    source = MsprimeCohort(**TINY, cache=False)
    message = "msprime and stdpopsim: pip install 'fedgen[sim]'"
    with pytest.raises(ConfigError, match=re.escape(message)):
        source.check()
    with pytest.raises(ConfigError, match="fedgen\\[sim\\]"):
        source.load(child_rng(0, "cohort"))


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"model": "NoSuchModel"}, "dataset.model='NoSuchModel'.*OutOfAfrica_3G09"),
        ({"populations": ["YRI", "XXX"]}, "'XXX' cannot be sampled"),
    ],
)
def test_unknown_model_or_population_is_a_config_error(
    kwargs: dict[str, object], match: str
) -> None:
    with pytest.raises(ConfigError, match=match):
        MsprimeCohort(**kwargs).check()


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"n_snps": 0}, "dataset.n_snps must be at least 1"),
        ({"min_maf": 0.6}, r"dataset.min_maf must be in \(0, 0.5\]"),
        ({"populations": "YRI"}, "dataset.populations='YRI' must be a non-empty list"),
        ({"populations": ["YRI", "YRI"]}, "names a population twice"),
        ({"mutation_rate": 0}, "dataset.mutation_rate must be positive"),
        ({"n_contigs": 0}, "dataset.n_contigs must be at least 1"),
        ({"sequence_length": 1e5 + 0.5}, "dataset.sequence_length must be a whole number"),
        ({"sequence_length": "1e6"}, "dataset.sequence_length='1e6' must be a number"),
    ],
)
def test_bad_values_name_their_key(kwargs: dict[str, object], match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        MsprimeCohort(**kwargs)


def test_too_few_snps_says_what_to_raise() -> None:
    source = MsprimeCohort(**{**TINY, "n_snps": 5000}, cache=False)
    with pytest.raises(DataError, match=r"raise dataset\.sequence_length"):
        source.load(child_rng(0, "cohort"))


def test_config_option_builds_the_source(
    compose_cfg: Callable[..., DictConfig], tmp_path: Path
) -> None:
    cfg = compose_cfg("dataset=msprime", f"cache_dir={tmp_path}", "cache=false")
    source = check_config(cfg).training.dataset
    assert isinstance(source, MsprimeCohort)
    assert source.populations == ("YRI", "CEU", "CHB")
    assert source.n_reference == source.n_individuals == 20_000
    assert source.cache_dir == str(tmp_path) and source.cache is False


@pytest.mark.slow
def test_cli_runs_a_small_msprime_experiment(tmp_path: Path) -> None:
    import subprocess

    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "fedgen",
            "dataset=msprime",
            "dataset.n_individuals=200",
            "dataset.n_snps=50",
            "dataset.sequence_length=5e5",
            "federation.num_rounds=2",
            "attack=lrt",
            "tracking=none",
            "figures=false",
            f"cache_dir={tmp_path / 'cache'}",
            f"hydra.run.dir={tmp_path / 'run'}",
        ],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "cohort 200 individuals x 50 SNPs" in result.stdout + result.stderr
    assert len(list((tmp_path / "cache" / "msprime").glob("*.npz"))) == 1
