"""Coalescent genotypes: msprime under a stdpopsim demographic model, cached on disk.

msprime and stdpopsim are the optional extra ``fedgen[sim]``; they are imported only here, and
only when a simulation is asked for.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import zipfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from fedgen.core import progress
from fedgen.core.errors import ConfigError, DataError
from fedgen.core.io import atomic_write_bytes

log = logging.getLogger(__name__)

MISSING_EXTRA = (
    "dataset=msprime needs the optional dependencies msprime and stdpopsim: "
    "pip install 'fedgen[sim]'"
)
_FORMAT = 1  # bump when what is stored changes meaning


def import_sim() -> tuple[Any, Any]:
    """Return the modules ``(msprime, stdpopsim)``, or raise the error naming the extra."""
    try:
        import msprime
        import stdpopsim
    except ImportError as exc:
        raise ConfigError(MISSING_EXTRA) from exc
    return msprime, stdpopsim


@dataclass(frozen=True)
class Simulation:
    """What to simulate: every field changes the genotypes (and so the cache key).

    ``counts[k]`` diploid individuals are sampled from population ``populations[k]`` of the
    stdpopsim ``Homo sapiens`` model ``model``; ``n_contigs`` contigs of ``sequence_length`` bp
    each, inherited independently (like chromosomes), with a uniform recombination rate within
    each (nothing is downloaded), and mutations on a discrete genome at ``mutation_rate`` (the
    model's own if None). Seeds are msprime's ``random_seed`` for ancestry and mutations.
    """

    model: str
    populations: tuple[str, ...]
    counts: tuple[int, ...]
    sequence_length: float
    n_contigs: int
    recombination_rate: float
    mutation_rate: float | None
    min_maf: float
    n_snps: int
    ancestry_seed: int
    mutation_seed: int


@dataclass(frozen=True)
class Simulated:
    """Simulated diploid genotypes, in sample order (population by population).

    Attributes
    ----------
    genotypes : ndarray of int8, shape (n, p)
        Minor-allele counts 0/1/2 (minor in all ``n`` individuals together).
    population : ndarray of int8, shape (n,)
        Index into ``Simulation.populations`` of each individual.
    position : ndarray of float64, shape (p,)
        Base-pair position of each SNP on the simulated genome, increasing; contig ``c`` spans
        ``[c (L + 1), c (L + 1) + L)`` for ``L = sequence_length``.
    maf : ndarray of float64, shape (p,)
        Minor-allele frequency of each SNP in all ``n`` individuals.
    """

    genotypes: NDArray[np.int8]
    population: NDArray[np.int8]
    position: NDArray[np.float64]
    maf: NDArray[np.float64]


def demographic_model(model: str, populations: tuple[str, ...]) -> Any:
    """The stdpopsim HomSap model ``model``, checked to have ``populations`` to sample from."""
    _, stdpopsim = import_sim()
    species = stdpopsim.get_species("HomSap")
    known = [m.id for m in species.demographic_models]
    if model not in known:
        raise ConfigError(
            f"dataset.model={model!r} is not a stdpopsim Homo sapiens demographic model; "
            f"choose one of {', '.join(known)}"
        )
    demography = species.get_demographic_model(model)
    sampleable = [p.name for p in demography.populations if p.default_sampling_time is not None]
    for name in populations:
        if name not in sampleable:
            raise ConfigError(
                f"dataset.populations: {name!r} cannot be sampled in model {model}; "
                f"choose from {', '.join(sampleable)}"
            )
    return demography


def simulate(sim: Simulation) -> Simulated:
    """Run msprime, keep biallelic SNPs with MAF >= ``min_maf`` and thin them to ``n_snps``.

    Of the sites that carry exactly one mutation (so two alleles) and pass the MAF filter,
    ``n_snps`` are kept evenly spaced by rank (``round(linspace(0, K - 1, n_snps))`` of the
    ``K`` passing sites, in position order), so the SNPs span the whole contig.

    Raises
    ------
    DataError
        Fewer than ``n_snps`` sites pass the filter.
    """
    msprime, _ = import_sim()
    demography = demographic_model(sim.model, sim.populations)
    by_name = {p.name: p for p in demography.populations}
    samples = [
        msprime.SampleSet(
            count, population=name, ploidy=2, time=by_name[name].default_sampling_time
        )
        for name, count in zip(sim.populations, sim.counts, strict=True)
        if count
    ]
    with progress.step("simulating ancestry and mutations (msprime)", 2) as done:
        ts = msprime.sim_ancestry(
            samples=samples,
            demography=demography.model,
            recombination_rate=_recombination_map(msprime, sim),
            random_seed=sim.ancestry_seed,
        )
        done(1)
        rate = demography.mutation_rate if sim.mutation_rate is None else sim.mutation_rate
        ts = msprime.sim_mutations(ts, rate=rate, random_seed=sim.mutation_seed)
    n_hap = ts.num_samples
    site_ids: list[int] = []
    derived: list[int] = []
    for tree in ts.trees():
        for site in tree.sites():
            if len(site.mutations) == 1:
                site_ids.append(site.id)
                derived.append(tree.num_samples(site.mutations[0].node))
    freq = np.asarray(derived, dtype=np.float64) / n_hap
    passing = np.flatnonzero(np.minimum(freq, 1.0 - freq) >= sim.min_maf)
    if passing.size < sim.n_snps:
        raise DataError(
            f"the simulation has {passing.size} SNPs with MAF >= {sim.min_maf}, fewer than "
            f"dataset.n_snps={sim.n_snps}; raise dataset.sequence_length (now "
            f"{sim.sequence_length:g} bp) or dataset.n_contigs, or lower dataset.n_snps or "
            "dataset.min_maf"
        )
    chosen = passing[np.round(np.linspace(0, passing.size - 1, sim.n_snps)).astype(np.intp)]
    keep = np.asarray(site_ids, dtype=np.int64)[chosen]
    flip = freq[chosen] > 0.5
    drop = np.setdiff1d(np.arange(ts.num_sites), keep)
    kept_ts = ts.delete_sites(drop)
    samples_ids = kept_ts.samples()
    individual = kept_ts.tables.nodes.individual[samples_ids]
    if not np.array_equal(individual, np.repeat(np.arange(n_hap // 2), 2)):
        raise RuntimeError("msprime returned sample nodes out of individual order")
    by_site = np.empty((sim.n_snps, n_hap // 2), dtype=np.int8)
    variants = progress.track(kept_ts.variants(), "genotypes from the trees", sim.n_snps)
    for j, variant in enumerate(variants):
        hap = variant.genotypes.astype(np.int8)
        by_site[j] = hap[0::2] + hap[1::2]
    by_site[flip] = 2 - by_site[flip]
    pop_ids = kept_ts.tables.nodes.population[samples_ids[0::2]]
    index_of = {name: k for k, name in enumerate(sim.populations)}
    names = [kept_ts.population(int(i)).metadata["name"] for i in range(kept_ts.num_populations)]
    population = np.asarray([index_of[names[i]] for i in pop_ids], dtype=np.int8)
    maf = np.minimum(freq[chosen], 1.0 - freq[chosen])
    return Simulated(
        genotypes=np.ascontiguousarray(by_site.T),
        population=population,
        position=np.asarray(kept_ts.tables.sites.position, dtype=np.float64),
        maf=maf,
    )


def _recombination_map(msprime: Any, sim: Simulation) -> Any:
    """A uniform rate within each contig, and 1 bp of rate ln 2 between contigs.

    ln 2 makes a crossover between adjacent contigs happen with probability 1/2 per meiosis:
    free recombination, as between chromosomes (msprime's recipe for multiple chromosomes).
    """
    length = sim.sequence_length
    position = [0.0]
    rate: list[float] = []
    for c in range(sim.n_contigs):
        start = c * (length + 1)
        if c:
            position.append(start)
            rate.append(float(np.log(2)))
        position.append(start + length)
        rate.append(sim.recombination_rate)
    return msprime.RateMap(position=position, rate=rate)


def cache_key(sim: Simulation) -> str:
    """SHA-256 of every simulation setting, the seeds and msprime's and stdpopsim's versions."""
    msprime, stdpopsim = import_sim()
    material = {
        "format": _FORMAT,
        "simulation": asdict(sim),
        "msprime": msprime.__version__,
        "stdpopsim": stdpopsim.__version__,
        "tskit": _version("tskit"),
    }
    text = json.dumps(material, sort_keys=True, default=list)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _version(module: str) -> str:
    from importlib.metadata import version

    return version(module)


def simulate_cached(sim: Simulation, directory: Path | None) -> Simulated:
    """:func:`simulate`, through an ``.npz`` of plain arrays in ``directory`` (None: no cache).

    An entry is written atomically (a reader sees all of it or none); a corrupt or mismatched
    one is logged and simulated again.
    """
    if directory is None:
        return simulate(sim)
    path = directory / "msprime" / f"{cache_key(sim)}.npz"
    if path.exists():
        cached = _load(path, sim)
        if cached is not None:
            log.info("simulated cohort loaded from %s", path)
            return cached
    result = simulate(sim)
    buffer = io.BytesIO()
    np.savez(buffer, **asdict(result))
    try:
        atomic_write_bytes(path, buffer.getvalue())
    except OSError as exc:
        log.warning("cannot store simulated cohort in %s (%s); not cached", path, exc)
    return result


def _load(path: Path, sim: Simulation) -> Simulated | None:
    n = sum(sim.counts)
    try:
        with np.load(path, allow_pickle=False) as data:
            result = Simulated(
                genotypes=np.asarray(data["genotypes"], dtype=np.int8),
                population=np.asarray(data["population"], dtype=np.int8),
                position=np.asarray(data["position"], dtype=np.float64),
                maf=np.asarray(data["maf"], dtype=np.float64),
            )
    except (OSError, KeyError, ValueError, zipfile.BadZipFile) as exc:
        log.warning("simulated cohort %s is corrupt (%s); simulating again", path, exc)
        return None
    shapes = (result.genotypes.shape, result.population.shape, result.position.shape)
    if shapes != ((n, sim.n_snps), (n,), (sim.n_snps,)) or result.maf.shape != (sim.n_snps,):
        log.warning("simulated cohort %s has the wrong shape; simulating again", path)
        return None
    return result
