"""Simulated populations: a coalescent cohort (msprime, stdpopsim) with a liability phenotype.

Where :class:`~fedgen.data.synthetic.SyntheticCohort` draws SNPs independently (or in
Gaussian-copula blocks) with uniform allele frequencies, this source simulates the genealogy
of a human sample under a published demographic model, so the cohort has what real data has:

- linkage disequilibrium that decays with distance (recombination along one contig);
- a realistic allele-frequency spectrum, skewed to rare variants (population growth);
- population structure: individuals are sampled from ``populations`` (by default the three
  of the out-of-Africa model: YRI, CEU, CHB), recorded as ``ancestry_group`` metadata (the
  population's index), never as a feature.

The simulation, step by step (``n`` cohort and ``m`` reference individuals):

1. Two msprime seeds ``rng.integers(1, 2**31 - 1, size=2)`` (ancestry, mutations).
2. ``n`` and ``m`` are each split as evenly as possible across ``populations`` (the first
   populations get the remainder); all ``n + m`` diploids are simulated together, so the
   reference individuals share the cohort's genealogy: the same population, outside every client.
3. msprime's coalescent with recombination on ``n_contigs`` contigs of ``sequence_length`` bp,
   inherited independently like chromosomes, at a uniform ``recombination_rate`` within each
   (no genetic map, nothing downloaded), mutations at ``mutation_rate`` (null: the model's).
   Sites with one mutation and a minor-allele frequency (in all ``n + m``) of at least
   ``min_maf`` pass; ``n_snps`` of them are kept evenly spaced by rank, so the SNPs span every
   contig and neighbours are in LD (``position`` and ``contig`` metadata per SNP). Genotypes
   count the minor allele (two haplotypes summed). Simulated arrays are cached on disk
   (:func:`~fedgen.data.coalescent.simulate_cached`).
4. Cohort and reference rows are shuffled (the simulation lists them population by population).
5. The phenotype: :class:`~fedgen.data.phenotype.LiabilityPhenotype` (``n_causal``,
   ``heritability``, ``prevalence``), as for the synthetic source; the reference individuals'
   labels use the cohort's effects, standardisation and cutoff.

Simulating costs seconds to minutes (about 6 s for 2,000 individuals over 5 Mb, on one core);
the cache under ``cache_dir`` makes every later run with the same settings and seed a load.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from fedgen.core.cachedir import default_cache_dir
from fedgen.core.errors import ConfigError
from fedgen.core.records import Cohort
from fedgen.data.coalescent import Simulation, demographic_model, simulate_cached
from fedgen.data.phenotype import LiabilityPhenotype, cohort_checks


@dataclass(frozen=True)
class MsprimeCohort:
    """A coalescent-simulated cohort source; every field is a ``dataset.*`` config key.

    ``cache`` false simulates every time; ``cache_dir`` null means ``$FEDGEN_CACHE_DIR``, else
    ``$XDG_CACHE_HOME/fedgen``, else ``~/.cache/fedgen`` (entries in its ``msprime/``).
    """

    n_individuals: int = 20_000
    n_snps: int = 100
    n_causal: int = 10
    heritability: float = 0.1
    prevalence: float = 0.5
    model: str = "OutOfAfrica_3G09"
    populations: Sequence[str] = ("YRI", "CEU", "CHB")
    sequence_length: float = 5e6
    n_contigs: int = 1
    recombination_rate: float = 1e-8
    mutation_rate: float | None = None
    min_maf: float = 0.05
    n_reference: int = 0
    cache: bool = True
    cache_dir: str | None = None

    def __post_init__(self) -> None:
        for name in ("n_individuals", "n_snps", "n_causal", "n_reference", "n_contigs"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int):
                raise ConfigError(f"dataset.{name}={value!r} must be an integer")
        for name in ("heritability", "prevalence", "sequence_length", "recombination_rate"):
            _number(name, getattr(self, name))
        _number("min_maf", self.min_maf)
        if self.mutation_rate is not None:
            _number("mutation_rate", self.mutation_rate)
            if not self.mutation_rate > 0:
                raise ConfigError("dataset.mutation_rate must be positive (or null: the model's)")
        pops = self.populations
        if isinstance(pops, str) or not all(isinstance(p, str) for p in pops) or not pops:
            raise ConfigError(
                f"dataset.populations={pops!r} must be a non-empty list of population names"
            )
        object.__setattr__(self, "populations", tuple(pops))
        if len(set(self.populations)) != len(self.populations):
            raise ConfigError(f"dataset.populations={list(pops)} names a population twice")
        if not isinstance(self.cache, bool):
            raise ConfigError(f"dataset.cache={self.cache!r} must be true or false")
        if self.cache_dir is not None and not isinstance(self.cache_dir, str):
            raise ConfigError(f"dataset.cache_dir={self.cache_dir!r} must be a path or null")
        checks = [
            *cohort_checks(
                self.n_individuals, self.n_snps, self.n_causal, self.heritability, self.prevalence
            ),
            (
                self.sequence_length >= 1 and float(self.sequence_length).is_integer(),
                "dataset.sequence_length must be a whole number of bp, at least 1",
            ),
            (self.n_contigs >= 1, "dataset.n_contigs must be at least 1"),
            (self.recombination_rate >= 0, "dataset.recombination_rate must be non-negative"),
            (0.0 < self.min_maf <= 0.5, "dataset.min_maf must be in (0, 0.5]"),
            (self.n_reference >= 0, "dataset.n_reference must be a non-negative integer"),
        ]
        for ok, message in checks:
            if not ok:
                raise ConfigError(message)

    def check(self) -> None:
        """Fail before any run if the extra is missing or the model or a population is wrong."""
        demographic_model(self.model, tuple(self.populations))

    def load(self, rng: np.random.Generator) -> Cohort:
        """Simulate (or load from the cache) the cohort and its reference individuals."""
        ancestry_seed, mutation_seed = (int(s) for s in rng.integers(1, 2**31 - 1, size=2))
        cohort_counts = _even_split(self.n_individuals, len(self.populations))
        reference_counts = _even_split(self.n_reference, len(self.populations))
        sim = Simulation(
            model=self.model,
            populations=tuple(self.populations),
            counts=tuple(
                n_k + m_k for n_k, m_k in zip(cohort_counts, reference_counts, strict=True)
            ),
            sequence_length=float(self.sequence_length),
            n_contigs=self.n_contigs,
            recombination_rate=float(self.recombination_rate),
            mutation_rate=None if self.mutation_rate is None else float(self.mutation_rate),
            min_maf=float(self.min_maf),
            n_snps=self.n_snps,
            ancestry_seed=ancestry_seed,
            mutation_seed=mutation_seed,
        )
        directory = None
        if self.cache:
            directory = Path(self.cache_dir).expanduser() if self.cache_dir else default_cache_dir()
        simulated = simulate_cached(sim, directory)
        # Sample order is population by population, with each population's cohort
        # individuals before its reference ones.
        in_cohort = np.zeros(sum(sim.counts), dtype=bool)
        start = 0
        for n_k, m_k in zip(cohort_counts, reference_counts, strict=True):
            in_cohort[start : start + n_k] = True
            start += n_k + m_k
        rows = rng.permutation(np.flatnonzero(in_cohort))
        ref_rows = rng.permutation(np.flatnonzero(~in_cohort))
        genotypes = simulated.genotypes[rows]
        p = self.n_snps
        phenotype = LiabilityPhenotype.draw(
            rng,
            genotypes,
            n_causal=self.n_causal,
            heritability=self.heritability,
            prevalence=self.prevalence,
        )
        names = tuple(f"pos_{int(x)}" for x in simulated.position)
        reference = None
        if self.n_reference:
            ref_genotypes = simulated.genotypes[ref_rows]
            reference = Cohort(
                genotypes=ref_genotypes,
                labels=phenotype.labels_of(rng, ref_genotypes, self.heritability),
                snp_names=names,
                metadata={"ancestry_group": simulated.population[ref_rows]},
            )
        metadata: dict[str, NDArray[np.generic]] = {
            "maf": simulated.maf,
            "position": simulated.position,
            "contig": (simulated.position // (self.sequence_length + 1)).astype(np.int32),
            "causal": phenotype.causal_mask(p),
            "effect": phenotype.effects(p),
            "ancestry_group": simulated.population[rows],
        }
        return Cohort(
            genotypes=genotypes,
            labels=phenotype.labels,
            snp_names=names,
            metadata=metadata,
            reference=reference,
        )


def _number(name: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigError(f"dataset.{name}={value!r} must be a number")


def _even_split(total: int, parts: int) -> list[int]:
    """``total`` split into ``parts`` counts differing by at most one, the larger first."""
    base, extra = divmod(total, parts)
    return [base + (k < extra) for k in range(parts)]
