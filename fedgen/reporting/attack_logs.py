"""``attack_logs.csv`` (the study's columns, then the honest ones) and the console summary."""

from __future__ import annotations

import csv
import io
from collections.abc import Mapping, Sequence
from pathlib import Path

from filelock import FileLock

from fedgen.core.errors import TrackingError
from fedgen.core.io import atomic_write_text
from fedgen.evaluation.assess import Assessment

# The study's columns first, in its order; then what tells whether there is any leakage.
STUDY_COLUMNS = ("attack_type", "client_count", "threshold", "precision", "recall", "f1_score")
METRIC_COLUMNS = (
    "accuracy",
    "balanced_accuracy",
    "member_share",
    "trivial_precision",
    "trivial_recall",
    "trivial_f1",
    "auc",
    "auc_ci_low",
    "auc_ci_high",
    "f1_ci_low",
    "f1_ci_high",
    "advantage",
    "tpr_at_fpr_0.01",
    "tpr_at_fpr_0.001",
)
CONTEXT_COLUMNS = ("evaluation", "seed", "run_name", "job")
COLUMNS = STUDY_COLUMNS + METRIC_COLUMNS + CONTEXT_COLUMNS


def rows(
    assessments: Sequence[Assessment], context: Mapping[str, str], client_count: int
) -> list[dict[str, str]]:
    """One row per attack; a metric that could not be estimated is an empty cell."""
    out = []
    for a in assessments:
        m = a.metrics
        row = {
            "attack_type": a.name,
            "client_count": str(client_count),
            "threshold": repr(a.threshold),
            "precision": _cell(m, "precision"),
            "recall": _cell(m, "recall"),
            "f1_score": _cell(m, "f1"),
        }
        row.update({c: _cell(m, c) for c in METRIC_COLUMNS})
        row.update({c: context.get(c, "") for c in CONTEXT_COLUMNS})
        out.append(row)
    return out


def to_csv(table: Sequence[Mapping[str, str]], header: bool = True) -> str:
    """``table`` as CSV text in :data:`COLUMNS` order."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=COLUMNS, lineterminator="\n")
    if header:
        writer.writeheader()
    writer.writerows(table)
    return buffer.getvalue()


def append(path: Path, table: Sequence[Mapping[str, str]]) -> None:
    """Add a job's rows to a CSV shared by the jobs of a sweep, safely across processes.

    The rows of a job (its ``job`` number) replace any the job wrote before, so a sweep rerun
    into its own directory leaves one set of rows per job: those of its latest complete run,
    where the job's first rows stood. Rows without a job number are added. Under a file lock,
    the file is rewritten whole through a temporary file and a rename, so a reader (or a crash)
    never sees a half-written row.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(path.with_name(f".{path.name}.lock")), timeout=120):
        existing = path.read_text(encoding="utf-8") if path.exists() else ""
        if existing and existing.splitlines()[0] != ",".join(COLUMNS):
            raise TrackingError(
                f"{path} has other columns than this version of fedgen writes; move it away "
                "or start a new sweep directory"
            )
        atomic_write_text(path, to_csv(merge(list(csv.DictReader(io.StringIO(existing))), table)))


def merge(
    old: Sequence[Mapping[str, str]], new: Sequence[Mapping[str, str]]
) -> list[Mapping[str, str]]:
    """``old`` with the rows of every job in ``new`` replaced by ``new``'s (see :func:`append`)."""
    jobs = {row.get("job", "") for row in new} - {""}
    out: list[Mapping[str, str]] = []
    placed = False
    for row in old:
        if row.get("job", "") in jobs:
            if not placed:
                out.extend(new)
                placed = True
        else:
            out.append(row)
    if not placed:
        out.extend(new)
    return out


def console_table(assessments: Sequence[Assessment]) -> str:
    """A short fixed-width table: attack, threshold, P/R/F1, AUC, advantage, trivial F1."""
    head = ("attack", "threshold", "precision", "recall", "F1", "AUC", "advantage", "trivial F1")
    keys = ("precision", "recall", "f1", "auc", "advantage", "trivial_f1")
    width = max([8, *(len(a.name) + 2 for a in assessments)])
    row = "{:<" + str(width) + "}{:>10}{:>10}{:>8}{:>8}{:>8}{:>10}{:>11}"
    lines = [row.format(*head)]
    for a in assessments:
        if a.truth.size == 0:
            continue
        values = [f"{a.metrics[k]:.3f}" if k in a.metrics else "-" for k in keys]
        lines.append(row.format(a.name, f"{a.threshold:g}", *values))
    for a in assessments:
        for key, estimate in a.result.estimates.items():
            lines.append(_estimate_line(a, key, estimate.kind))
    return "\n".join(lines)


def _estimate_line(a: Assessment, key: str, kind: str) -> str:
    """``<attack>: <key> mean abs. error 0 (trivial guess 12.4)``, or its accuracy vs chance."""
    m = a.metrics
    if kind == "category":
        text = f"{key} accuracy {m[f'{key}_accuracy']:.3f}"
        if f"{key}_chance" in m:
            text += f" (chance {m[f'{key}_chance']:.3f})"
    else:
        text = f"{key} mean abs. error {m[f'{key}_mae']:.3g}"
        if f"{key}_trivial_mae" in m:
            text += f" (trivial guess {m[f'{key}_trivial_mae']:.3g})"
    return f"{a.name}: {text}"


def _cell(metrics: Mapping[str, float], key: str) -> str:
    return repr(metrics[key]) if key in metrics else ""
