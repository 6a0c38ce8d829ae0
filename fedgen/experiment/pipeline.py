"""One experiment, start to end: cohort -> split -> federation -> attacks -> metrics -> tracker.

No Hydra here: the builder hands over typed objects.
"""

from __future__ import annotations

import csv
import io
import json
import logging
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, is_dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

import fedgen
from fedgen.attacks import Arena, Attack
from fedgen.core import progress
from fedgen.core.errors import DataError
from fedgen.core.io import atomic_write_text
from fedgen.core.records import Cohort, FederationResult, Split
from fedgen.core.seeding import child_rng
from fedgen.data import CohortSource, IIDPartition, MsprimeCohort, Partition, SyntheticCohort
from fedgen.defenses import Defense
from fedgen.evaluation.assess import Assessment, assess
from fedgen.evaluation.pools import Evaluation
from fedgen.experiment.cache import TrainingCache, code_digest, library_versions, training_key
from fedgen.experiment.objective import Objective
from fedgen.experiment.privacy import Privacy, account, audit_violations
from fedgen.federation import FederationSettings
from fedgen.figures import pool as figure_pool
from fedgen.figures.run import cohort_figures, run_figures
from fedgen.models import Model
from fedgen.reporting import attack_logs
from fedgen.reporting.report import RunRecord, dump_run_json, write_run_report
from fedgen.reporting.verdict import NOTE_TAG, run_note
from fedgen.tracking.trackers import DatasetInfo, MlflowTracker, Tracker, tracked_run

log = logging.getLogger("fedgen")


@dataclass(frozen=True)
class Training:
    """What determines the trained federation: cohort, partition, federation, model, defenses."""

    seed: int
    dataset: CohortSource
    federation: FederationSettings
    model: Model
    defenses: tuple[Defense, ...] = ()
    partition: Partition = field(default_factory=IIDPartition)


def cohort_and_split(training: Training) -> tuple[Cohort, Split]:
    """The cohort and its split across clients, from the seed's ``cohort``/``partition`` streams.

    The one path from config to data, used by ``python -m fedgen`` and by the ``flwr run``
    apps (:mod:`fedgen.flwr_app`).
    """
    cohort = _load_cohort(training.dataset, training.seed)
    present = np.unique(cohort.labels)
    if present.size < 2:
        raise DataError(
            f"the cohort's phenotype has only label {int(present[0]) if present.size else '-'} "
            f"({cohort.n_individuals} individuals): a binary phenotype needs cases (1) and "
            "controls (0); check the label column (dataset.label_column) or the phenotype file"
        )
    split = training.partition.split(
        cohort,
        training.federation.num_clients,
        training.federation.test_fraction,
        child_rng(training.seed, "partition"),
    )
    return cohort, split


# The last simulated cohort this process made, by (source, seed): the jobs of a sweep that
# differ only after training (thresholds, attacks, evaluation) share it instead of simulating
# it again (0.15 s of a 0.3 s cache-hit job on the default cohort). Its arrays are read-only,
# so its digest, once computed, is kept with it (hashing a biobank cohort takes seconds).
_last_cohort: dict[tuple[CohortSource, int], Cohort] = {}
_last_digest: dict[int, str] = {}  # id of the cohort in _last_cohort -> its digest


def _load_cohort(source: CohortSource, seed: int) -> Cohort:
    """``source``'s cohort from the seed's ``cohort`` stream; a simulated one is reused when
    this process made the same one last (a file-backed one is read again: it may change)."""
    if not isinstance(source, SyntheticCohort | MsprimeCohort):
        return source.load(child_rng(seed, "cohort"))
    key = (source, seed)
    try:
        hash(key)
    except TypeError:  # a setting given as an unhashable list: no reuse
        return _read_only(source.load(child_rng(seed, "cohort")))
    cohort = _last_cohort.get(key)
    if cohort is None:
        _last_cohort.clear()  # before simulating: never two biobank-sized cohorts at once
        _last_digest.clear()
        cohort = _read_only(source.load(child_rng(seed, "cohort")))
        _last_cohort[key] = cohort
    return cohort


def _read_only(cohort: Cohort) -> Cohort:
    """``cohort`` with every array (its reference's too) made read-only, so no job can change
    what a later job of the same process reuses."""
    arrays = [cohort.genotypes, cohort.labels, *cohort.metadata.values()]
    if cohort.reference is not None:
        reference = cohort.reference
        arrays += [reference.genotypes, reference.labels, *reference.metadata.values()]
    for array in arrays:
        array.flags.writeable = False
    return cohort


def train(training: Training, cohort: Cohort, split: Split) -> FederationResult:
    """Train the federation of ``training`` on ``cohort`` and ``split`` (no cache)."""
    from fedgen.federation.train import train_federation  # Flower: only when training runs

    with progress.step("training rounds", training.federation.num_rounds):
        return train_federation(
            cohort, split, training.federation, training.model, training.seed, training.defenses
        )


@dataclass(frozen=True)
class Experiment:
    """Everything one job needs, as typed objects."""

    training: Training
    tracker: Tracker
    run_name: str
    params: dict[str, str]
    tags: dict[str, str]
    artifacts: dict[str, str]
    output_dir: Path
    attacks: tuple[Attack[Any], ...] = ()
    threshold: float = 0.5
    objective: str = "fed/test_accuracy"
    evaluation: Evaluation | None = None
    cache: TrainingCache | None = None
    training_material: dict[str, Any] | None = None
    sweep_dir: Path | None = None
    job: str = ""
    figures: bool = True

    @property
    def seed(self) -> int:
        return self.training.seed

    @property
    def federation(self) -> FederationSettings:
        return self.training.federation


@dataclass(frozen=True)
class Outcome:
    """What a job produced: the training record, each attack's assessment, final metrics."""

    federation: FederationResult
    assessments: tuple[Assessment, ...]
    metrics: dict[str, float]

    def objective(self, name: str) -> float:
        """The job's return value for sweepers: the logged metric ``name``, or a constrained
        objective such as ``mia/auc if fed/test_accuracy >= 0.6 else 1`` (:mod:`.objective`)."""
        return Objective.parse(name).value(self.metrics)


def run_experiment(exp: Experiment) -> Outcome:
    """Build the cohort, train (or reuse) the federation, attack it and log everything."""
    cohort, split = cohort_and_split(exp.training)
    log.info(
        "cohort %d individuals x %d SNPs, %d clients, %d rounds",
        cohort.n_individuals,
        cohort.n_snps,
        split.num_clients,
        exp.federation.num_rounds,
    )
    digest = cohort_digest(cohort)
    key = _cache_key(exp, digest, split)
    cached = exp.cache.load(key) if exp.cache is not None and key else None
    status = "off" if exp.cache is None else ("hit" if cached is not None else "miss")
    tags = {**exp.tags, "fedgen.training_cache": status}
    if exp.figures:
        figure_pool.start()  # its imports overlap training
    started = datetime.now(UTC).isoformat(timespec="seconds")
    with tracked_run(exp.tracker, exp.run_name, exp.params, tags) as run:
        run.log_dataset(dataset_info(exp.training.dataset, cohort, digest, exp.seed))
        if exp.figures and exp.evaluation is not None:
            # Drawn while the job trains and attacks: they depend on the cohort only.
            figure_pool.submit(
                cohort_figures(cohort, exp.seed),
                exp.output_dir / "figures",
                run.artifact_sink("figures"),
            )
        for name, text in exp.artifacts.items():
            run.log_text(text, name)
        if cached is not None:
            log.info("trained federation reused from the cache (%s)", key[:12])
            result = cached
        elif exp.cache is not None and key:
            # Locked: a parallel job training the same federation meanwhile is waited for.
            result, hit = exp.cache.load_or_train(key, lambda: train(exp.training, cohort, split))
            if hit:
                log.info("trained federation reused from the cache (%s)", key[:12])
                run.set_tags({"fedgen.training_cache": "hit"})
        else:
            result = train(exp.training, cohort, split)
        run.log_history([(r.round, r.metrics) for r in result.rounds])
        log_path = exp.output_dir / "training_log.csv"
        atomic_write_text(log_path, training_log_csv(result))
        run.log_file(log_path, "logs")
        privacy = account(exp.training.defenses, exp.federation, split)
        run.log_metrics(privacy.metrics())
        if privacy.accounts:
            run.set_tags(privacy.tags())
        assessments: tuple[Assessment, ...] = ()
        if exp.evaluation is not None:
            pool = exp.evaluation.pool(split, child_rng(exp.seed, "evaluation"))
            arena = Arena(cohort, pool, result, exp.seed, exp.training.model, split)
            assessments = _attack(exp, arena, run, privacy.delta)
            _check_audit(privacy, exp.attacks, assessments, run)
            if exp.figures:
                _figures(exp, arena, assessments, split, run)
        metrics = _record(exp, result, assessments, privacy, run, started)
        if exp.sweep_dir is not None and assessments:
            # Last, so that the sweep's table only ever holds rows of complete jobs.
            attack_logs.append(exp.sweep_dir / "attack_logs.csv", _rows(exp, assessments))
    # Last: where the results are, the MLflow run and the UI page that opens on it.
    where = exp.tracker.where() if isinstance(exp.tracker, MlflowTracker) else []
    log.info("%s", "\n".join([f"results: {exp.output_dir.resolve()}", *where]))
    return Outcome(result, assessments, metrics)


def _check_audit(
    privacy: Privacy, attacks: Sequence[Attack[Any]], done: Sequence[Assessment], run: Tracker
) -> None:
    """Flag (tag and error line) an empirical epsilon bound above the accounted epsilon."""
    key = "epsilon_lower_bound"
    bounds = {
        a.name: (attack.observer, a.metrics[key])
        for attack, a in zip(attacks, done, strict=True)
        if key in a.metrics
    }
    violations = audit_violations(privacy, bounds)
    for name, (bound, limit) in violations.items():
        log.error(
            "%s's empirical epsilon lower bound %.3f exceeds the accounted record-level epsilon "
            "%.3f: a bug in fedgen's defenses or accounting, please report it",
            name,
            bound,
            limit,
        )
    if violations:
        run.set_tags({"fedgen.audit_violation": ",".join(sorted(violations))})


def _attack(
    exp: Experiment, arena: Arena, run: Tracker, delta: float = 0.0
) -> tuple[Assessment, ...]:
    """Run every attack, log its metrics and the job's attack_logs.csv, print the table."""
    assert exp.evaluation is not None
    done = tuple(
        assess(a, arena, exp.evaluation.n_bootstrap, delta)
        for a in progress.track(exp.attacks, "attacks")
    )
    run.log_metrics(_namespaced(done))
    # Leakage over rounds, as MLflow charts: <attack>/per_round/<metric> with step = round.
    history: dict[int, dict[str, float]] = {}
    for a in done:
        for r, values in a.rounds.items():
            history.setdefault(r, {}).update(
                {f"{a.name}/per_round/{k}": v for k, v in values.items()}
            )
    if history:
        run.log_history(sorted(history.items()))
    omitted = {f"fedgen.omitted.{a.name}/{k}": why for a in done for k, why in a.omitted.items()}
    if omitted:
        run.set_tags(omitted)
    # One line per metric and reason, naming the attacks (not one line per attack).
    unreported: dict[tuple[str, str], list[str]] = {}
    for a in done:
        for k, why in a.omitted.items():
            if not k.startswith("client_"):
                unreported.setdefault((k, why), []).append(a.name)
    for (k, why), names in unreported.items():
        log.info("%s not reported for %s: %s", k, ", ".join(names), why)
    job_log = exp.output_dir / "attack_logs.csv"
    atomic_write_text(job_log, attack_logs.to_csv(_rows(exp, done)))
    run.log_file(job_log, "logs")
    log.info(
        "attacks on %d candidates (%s evaluation)\n%s",
        arena.pool.size,
        exp.evaluation.name,
        attack_logs.console_table(done),
    )
    return done


def _namespaced(done: Sequence[Assessment]) -> dict[str, float]:
    """Every attack's metrics under its name: ``gmia/precision``, ``gmia/client_3/auc``, ..."""
    return {f"{a.name}/{k}": v for a in done for k, v in a.metrics.items()}


def _rows(exp: Experiment, done: Sequence[Assessment]) -> list[dict[str, str]]:
    context = {
        "evaluation": exp.evaluation.name if exp.evaluation is not None else "",
        "seed": str(exp.seed),
        "run_name": exp.run_name,
        "job": exp.job,
    }
    return attack_logs.rows(done, context, exp.federation.num_clients)


def _figures(
    exp: Experiment, arena: Arena, done: Sequence[Assessment], split: Split, run: Tracker
) -> None:
    """Have the job's figures drawn into ``<job dir>/figures``, each logged under ``figures/``.

    They are drawn in the background (:mod:`fedgen.figures.pool`) while the job goes on.
    """
    cohort = arena.cohort
    evaluation = exp.evaluation.name if exp.evaluation is not None else ""
    subtitle = (
        f"{cohort.n_individuals:,} x {cohort.n_snps:,} SNPs, {split.num_clients} clients, "
        f"{exp.federation.num_rounds} rounds, {evaluation} pool, seed {exp.seed}"
    )
    sink = run.artifact_sink("figures")
    figure_pool.submit(
        run_figures(arena, exp.attacks, done, subtitle, cohort_too=False),
        exp.output_dir / "figures",
        sink,
    )


def _record(
    exp: Experiment,
    result: FederationResult,
    done: Sequence[Assessment],
    privacy: Privacy,
    run: Tracker,
    started: str = "",
) -> dict[str, float]:
    """``run.json`` (the job's params, final metrics, start time, sweep and fedgen version, for
    the summary) and ``report.html``, the job's leakage report."""
    metrics = dict(result.rounds[-1].metrics) if result.rounds else {}
    metrics.update(_namespaced(done))
    metrics.update(privacy.metrics())
    record = RunRecord(
        run_id=str(getattr(run, "run_id", None) or ""),
        run_name=exp.run_name,
        params=dict(exp.params),
        metrics=metrics,
        started=started,
        sweep_dir=str(exp.sweep_dir or ""),
        version=fedgen.__version__,
        git_commit=exp.tags.get("fedgen.git_commit", ""),
    )
    atomic_write_text(exp.output_dir / "run.json", dump_run_json(record))
    note = run_note(record)
    if note:  # the run's Description in the MLflow UI: the verdicts in plain words
        run.set_tags({NOTE_TAG: note})
    # The job's leakage report; its figures, drawn in the background, are linked, not embedded.
    write_run_report(exp.output_dir, record, figures=exp.figures and exp.evaluation is not None)
    return metrics


def cohort_digest(cohort: Cohort) -> str:
    """SHA-256 hex digest of the cohort's genotypes and labels (with dtypes and shapes)."""
    digest = _last_digest.get(id(cohort))
    if digest is None:
        digest = training_key({"cohort": 1}, [cohort.genotypes, cohort.labels])
        if any(kept is cohort for kept in _last_cohort.values()):  # read-only: it cannot change
            _last_digest[id(cohort)] = digest
    return digest


def _cache_key(exp: Experiment, cohort_digest: str, split: Split) -> str:
    """The training cache's key: everything that determines training, the cohort by its
    digest (hashed once per job, also the run's dataset digest) and the split by its indices."""
    if exp.cache is None or exp.training_material is None:
        return ""
    material = {
        **exp.training_material,
        "seed": exp.seed,
        "fedgen": fedgen.__version__,
        "code": code_digest(),
        "libraries": library_versions(),
        "cohort": cohort_digest,
    }
    arrays: list[NDArray[Any]] = []
    for c in split.clients:
        arrays += [c.train, c.test]
    return training_key(material, arrays)


def dataset_info(source: CohortSource, cohort: Cohort, digest: str, seed: int) -> DatasetInfo:
    """The cohort as an MLflow dataset: a file by its path, a generator by its settings."""
    kind = type(source).__name__
    path = getattr(source, "path", None)
    if isinstance(path, str) and path:
        where = Path(path).expanduser().resolve()
        name, source_type, origin = where.name, "local", json.dumps({"uri": where.as_uri()})
    else:
        name, source_type = kind.removesuffix("Cohort").lower() or kind, "code"
        settings: dict[str, Any] = (
            asdict(source) if is_dataclass(source) and not isinstance(source, type) else {}
        )
        origin = json.dumps(
            {"generator": f"{type(source).__module__}.{kind}", "seed": seed, **settings},
            sort_keys=True,
            default=str,
        )
    reference = cohort.reference.n_individuals if cohort.reference is not None else 0
    profile = {
        "individuals": cohort.n_individuals,
        "snps": cohort.n_snps,
        "cases": int(np.count_nonzero(cohort.labels == 1)),
        "reference_individuals": reference,
    }
    return DatasetInfo(name, digest[:16], source_type, origin, profile)


def training_log_csv(result: FederationResult) -> str:
    """Per-round metrics as CSV: a ``round`` column, then one column per metric name."""
    names = sorted({k for r in result.rounds for k in r.metrics})
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["round", *names])
    for r in result.rounds:
        writer.writerow([r.round, *(repr(r.metrics[n]) for n in names)])
    return out.getvalue()
