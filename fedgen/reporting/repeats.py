"""Repeats: runs that differ only in ``seed``, summarised as mean ± SD across them.

A *repeat group* is one attack and one configuration: every run in it has exactly the same
params except ``seed`` (and bookkeeping such as ``tracking.*``, ``hydra*``, ``cache``). Runs
that differ in any other param (``threshold`` included) are never pooled. The same config run
twice (same seed too) is a group of two runs as well: it is counted, never merged silently.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from fedgen.reporting.report import RunRecord, attack_threshold, attacks_of, natural, swept_params

SEED = "seed"
REPEAT_METRICS = ("auc", "advantage", "tpr_at_fpr_0.01")
_IGNORED = ("cache", "cache_dir")


def _is_config(key: str) -> bool:
    return key != SEED and key not in _IGNORED and not key.startswith(("tracking.", "hydra"))


@dataclass(frozen=True)
class RepeatGroup:
    """One attack's runs of one configuration (all params equal but ``seed``), by seed."""

    attack: str
    params: tuple[tuple[str, str], ...]  # every param but seed and bookkeeping, sorted
    records: tuple[RunRecord, ...]

    @property
    def n(self) -> int:
        return len(self.records)

    def values(self, metric: str) -> list[float]:
        """``<attack>/<metric>`` of each run that has it (NaN dropped), in seed order."""
        out = [r.metrics.get(f"{self.attack}/{metric}", math.nan) for r in self.records]
        return [float(v) for v in out if not math.isnan(v)]

    def param(self, key: str) -> str:
        return dict(self.params).get(key, "")


def config_key(record: RunRecord) -> tuple[tuple[str, str], ...]:
    """The params that make a configuration: all of them but ``seed`` and bookkeeping."""
    return tuple(sorted((k, v) for k, v in record.params.items() if _is_config(k)))


def repeat_groups(records: Iterable[RunRecord]) -> list[RepeatGroup]:
    """Every (attack, configuration) with its runs, ordered by attack then swept params."""
    records = list(records)
    swept = [p for p in swept_params(records) if p != SEED]
    found: dict[tuple[str, tuple[tuple[str, str], ...]], list[RunRecord]] = {}
    ordered = sorted(records, key=lambda r: (natural(r.params.get(SEED)), r.run_id, r.run_name))
    for record in ordered:
        for attack in attacks_of(record):
            found.setdefault((attack, config_key(record)), []).append(record)
    attacks = list(dict.fromkeys(a for r in ordered for a in attacks_of(r)))
    groups = [RepeatGroup(a, key, tuple(rs)) for (a, key), rs in found.items()]
    return sorted(
        groups,
        key=lambda g: (
            attacks.index(g.attack),
            tuple(natural(g.param(p)) for p in swept),
            g.params,
        ),
    )


def has_repeats(records: Sequence[RunRecord]) -> bool:
    """Whether some (attack, configuration) ran more than once (over seeds, or twice alike)."""
    return any(g.n >= 2 for g in repeat_groups(records))


def mean_sd(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample SD (``ddof=1``, NaN below two values) of ``values``; NaN if empty."""
    if not values:
        return math.nan, math.nan
    arr = np.asarray(values, dtype=np.float64)
    return float(np.mean(arr)), float(np.std(arr, ddof=1)) if arr.size >= 2 else math.nan


def _cell(value: float) -> str:
    return "" if math.isnan(value) else repr(float(value))


def repeats_table(records: Sequence[RunRecord]) -> list[dict[str, str]]:
    """One row per (attack, configuration): n, seeds, mean ± SD across runs, bootstrap CIs.

    Columns: ``attack``, the swept params but ``seed`` (``threshold`` always), ``n_runs``,
    ``seeds`` (space-separated, repeated if a seed ran twice), ``run_ids``; for AUC, advantage
    and TPR at 1% FPR ``<m>_mean``, ``<m>_sd`` (sample SD, empty below two runs) and ``<m>_n``
    (the runs that have it: TPR at low FPR is omitted on small pools); and the within-run
    bootstrap interval of AUC: ``auc_ci_width_mean`` and each run's ``auc_ci`` listed.
    """
    records = list(records)
    shown = [p for p in swept_params(records) if p not in (SEED, "threshold")] + ["threshold"]
    rows = []
    for g in repeat_groups(records):
        row = {"attack": g.attack, **{p: g.param(p) for p in shown}}
        row["threshold"] = attack_threshold(g.records[0], g.attack)
        row["n_runs"] = str(g.n)
        row["seeds"] = " ".join(r.params.get(SEED, "") for r in g.records)
        row["run_ids"] = " ".join(r.run_id for r in g.records)
        for m in REPEAT_METRICS:
            values = g.values(m)
            mean, sd = mean_sd(values)
            row.update({f"{m}_mean": _cell(mean), f"{m}_sd": _cell(sd), f"{m}_n": str(len(values))})
        intervals = []
        for r in g.records:
            low = r.metrics.get(f"{g.attack}/auc_ci_low")
            high = r.metrics.get(f"{g.attack}/auc_ci_high")
            intervals.append(None if low is None or high is None else (low, high))
        widths = [hi - lo for lo, hi in (i for i in intervals if i is not None)]
        row["auc_ci_width_mean"] = _cell(float(np.mean(widths))) if widths else ""
        row["auc_ci"] = " ".join(
            "[]" if i is None else f"[{i[0]:.3f}, {i[1]:.3f}]" for i in intervals
        )
        rows.append(row)
    return rows
