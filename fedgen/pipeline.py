"""One experiment, start to end: cohort -> split -> federation -> tracker. No Hydra here."""

from __future__ import annotations

import csv
import io
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fedgen.data import CohortSource, partition
from fedgen.federation import FederationSettings, train_federation
from fedgen.io import atomic_write_text
from fedgen.records import FederationResult
from fedgen.seeding import child_rng
from fedgen.tracking import Tracker, tracked_run

log = logging.getLogger("fedgen")


@dataclass(frozen=True)
class Experiment:
    """Everything one job needs, as typed objects."""

    seed: int
    dataset: CohortSource
    federation: FederationSettings
    model: Any
    tracker: Tracker
    run_name: str
    params: dict[str, str]
    tags: dict[str, str]
    artifacts: dict[str, str]
    output_dir: Path


def run_experiment(exp: Experiment) -> FederationResult:
    """Build the cohort, train the federation and log everything; return the training record."""
    cohort = exp.dataset.load(child_rng(exp.seed, "cohort"))
    split = partition(
        cohort.labels,
        exp.federation.num_clients,
        exp.federation.test_fraction,
        child_rng(exp.seed, "partition"),
    )
    log.info(
        "cohort %d individuals x %d SNPs, %d clients, %d rounds",
        cohort.n_individuals,
        cohort.n_snps,
        split.num_clients,
        exp.federation.num_rounds,
    )
    with tracked_run(exp.tracker, exp.run_name, exp.params, exp.tags) as run:
        for name, text in exp.artifacts.items():
            run.log_text(text, name)
        result = train_federation(cohort, split, exp.federation, exp.model, exp.seed)
        run.log_history([(r.round, r.metrics) for r in result.rounds])
        log_path = exp.output_dir / "training_log.csv"
        atomic_write_text(log_path, training_log_csv(result))
        run.log_file(log_path, "logs")
    return result


def training_log_csv(result: FederationResult) -> str:
    """Per-round metrics as CSV: a ``round`` column, then one column per metric name."""
    names = sorted({k for r in result.rounds for k in r.metrics})
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["round", *names])
    for r in result.rounds:
        writer.writerow([r.round, *(repr(r.metrics[n]) for n in names)])
    return out.getvalue()
