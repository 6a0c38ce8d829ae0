"""Cross-run summaries of fedgen jobs: a table, comparison plots, a self-contained HTML report."""

from __future__ import annotations

import base64
import csv
import html
import io
import itertools
import json
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from fedgen.core.errors import DataError
from fedgen.core.io import atomic_write_text
from fedgen.figures.base import Plot, new_figure, png_bytes, save_png

SUMMARY_METRICS = ("precision", "recall", "f1", "auc", "advantage", "trivial_f1")
RADAR_AXES = ("precision", "recall", "f1", "auc")
_RUN_KEYS = ("run_id", "run_name", "params", "metrics")
_BOOKKEEPING = ("attack", "cache", "cache_dir")


@dataclass(frozen=True)
class RunRecord:
    """One job's outcome: its params (config values as strings) and its final metrics."""

    run_id: str
    run_name: str
    params: dict[str, str]
    metrics: dict[str, float]


def dump_run_json(record: RunRecord) -> str:
    """``record`` as JSON with the keys run_id, run_name, params, metrics (floats exact)."""
    data = {
        "run_id": record.run_id,
        "run_name": record.run_name,
        "params": {k: record.params[k] for k in sorted(record.params)},
        "metrics": {k: float(record.metrics[k]) for k in sorted(record.metrics)},
    }
    return json.dumps(data, indent=2) + "\n"


def load_run_json(path: Path | str) -> RunRecord:
    """Read a ``run.json`` written by :func:`dump_run_json`.

    Raises
    ------
    DataError
        If the file is missing, unreadable, not JSON or not shaped like a run record.
    """
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DataError(f"{path}: no such run file") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DataError(f"{path}: not a readable run JSON file ({exc})") from None
    if not (
        isinstance(data, dict)
        and sorted(data) == sorted(_RUN_KEYS)
        and isinstance(data["run_id"], str)
        and isinstance(data["run_name"], str)
        and isinstance(data["params"], dict)
        and all(isinstance(v, str) for v in data["params"].values())
        and isinstance(data["metrics"], dict)
        and all(type(v) in (int, float) for v in data["metrics"].values())
    ):
        raise DataError(
            f"{path}: not a run record (keys {', '.join(_RUN_KEYS)}; params map to strings, "
            "metrics to numbers)"
        )
    floats = {k: float(v) for k, v in data["metrics"].items()}
    return RunRecord(data["run_id"], data["run_name"], dict(data["params"]), floats)


def _natural(value: str | None) -> tuple[int, float, str]:
    """Sort key: finite numbers by value (``0.45 < 0.5 < 10``), then any other string."""
    try:
        number = float(value or "nan")
    except ValueError:
        number = math.nan
    return (0, number, value or "") if math.isfinite(number) else (1, 0.0, value or "")


def swept_params(records: Iterable[RunRecord]) -> list[str]:
    """Params that every record has and whose values differ among ``records``, sorted.

    A param only some records have belongs to a config option that only some jobs chose
    (``attack.gmia.model`` exists only where gmia ran): the option's own column says that.
    """
    records = list(records)
    if not records:
        return []
    keys = set.intersection(*(set(r.params) for r in records)) - set(_BOOKKEEPING)
    keys = {k for k in keys if not k.startswith(("tracking.", "hydra"))}
    return sorted(k for k in keys if len({r.params.get(k) for r in records}) > 1)


def _attacks(record: RunRecord) -> list[str]:
    names = [a.strip() for a in record.params.get("attack", "").split(",")]
    return list(dict.fromkeys(a for a in names if a and a != "none"))


def _record_key(record: RunRecord, swept: Sequence[str]) -> tuple[Any, ...]:
    return (
        tuple(_natural(record.params.get(p, "")) for p in swept),
        record.run_name,
        record.run_id,
        sorted(record.params.items()),
        sorted((k, repr(v)) for k, v in record.metrics.items()),
    )


def summary_table(records: Iterable[RunRecord]) -> list[dict[str, str]]:
    """One row per (run, attack): run_name, attack, the swept params, :data:`SUMMARY_METRICS`.

    Rows are ordered by attack (first appearance), swept params (numeric-aware), run name;
    the same records in any order give the same table. A missing metric is an empty cell.
    """
    records = list(records)
    swept = swept_params(records)
    rows = []
    for record in sorted(records, key=lambda r: _record_key(r, swept)):  # a total order
        for attack in _attacks(record):
            row = {"run_name": record.run_name, "attack": attack}
            row.update({p: record.params.get(p, "") for p in swept})
            for m in SUMMARY_METRICS:
                value = record.metrics.get(f"{attack}/{m}")
                row[m] = "" if value is None else repr(float(value))
            rows.append(row)
    attacks = list(dict.fromkeys(row["attack"] for row in rows))
    return sorted(rows, key=lambda row: attacks.index(row["attack"]))  # stable


def to_csv(table: Sequence[Mapping[str, str]]) -> str:
    """``table`` as CSV with a header line; floats keep their full ``repr``."""
    if not table:
        return ""
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=list(table[0]), lineterminator="\n")
    writer.writeheader()
    writer.writerows(table)
    return out.getvalue()


def _shown(column: str, value: str) -> str:
    return f"{float(value):.3f}" if column in SUMMARY_METRICS and value else value


def to_markdown(table: Sequence[Mapping[str, str]]) -> str:
    """``table`` as a GitHub Markdown table, metrics rounded to 3 decimals."""
    if not table:
        return ""
    columns = list(table[0])
    lines = [
        "| " + " | ".join(columns) + " |",
        "|" + "|".join("---:" if c in SUMMARY_METRICS else "---" for c in columns) + "|",
    ]
    for row in table:
        cells = (_shown(c, row.get(c, "")).replace("|", "\\|") for c in columns)
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _mean(values: Iterable[str]) -> float:
    numbers = [float(v) for v in values if v and not math.isnan(float(v))]
    return math.fsum(numbers) / len(numbers) if numbers else math.nan


def _by_attack(table: Sequence[dict[str, str]]) -> dict[str, list[dict[str, str]]]:
    """The rows of a :func:`summary_table` (grouped by attack already) by attack."""
    return {a: list(rows) for a, rows in itertools.groupby(table, lambda r: r["attack"])}


def radar_across(records: Iterable[RunRecord], subtitle: str) -> Plot:
    """Radar chart of each attack's precision, recall, F1 and AUC, mean over its runs."""
    from fedgen.figures.plots import radar

    groups = _by_attack(summary_table(records))
    if not groups:
        raise DataError("no attack results to draw: every run has attack=none")
    means = {a: {m: _mean(r[m] for r in rows) for m in RADAR_AXES} for a, rows in groups.items()}
    counts = {a: len(rows) for a, rows in groups.items()}
    low, high = min(counts.values()), max(counts.values())
    n = str(low) if low == high else f"{low}-{high}"
    plot = radar(means, subtitle, axes=RADAR_AXES, title=f"Attacks compared (mean over {n} runs)")
    return Plot(plot.name, plot.figure, {**plot.data, "means": means, "n_runs": counts})


def numeric_swept_params(records: Iterable[RunRecord]) -> list[str]:
    """The swept params whose values, in every record, are finite numbers."""
    records = list(records)
    swept = swept_params(records)
    return [p for p in swept if all(_natural(r.params.get(p))[0] == 0 for r in records)]


def metric_vs_param(records: Iterable[RunRecord], param: str, subtitle: str) -> Plot:
    """Precision, recall and F1 against a numeric swept param, one line per attack.

    Each point is the mean over the runs at that value (so over the other swept params, if
    any); the trivial F1 (always answering "member") is dashed in the F1 panel.
    ``data[attack]`` holds arrays ``x``, ``precision``, ``recall``, ``f1`` and ``trivial_f1``.
    """
    records = list(records)
    if param not in numeric_swept_params(records):
        raise DataError(f"{param!r} is not a swept param with numeric values in every run")
    others = [p for p in swept_params(records) if p != param]
    if others:
        subtitle = f"{subtitle}; each point: mean over {', '.join(others)}"
    data: dict[str, Any] = {}
    for attack, rows in _by_attack(summary_table(records)).items():
        xs = sorted({float(r[param]) for r in rows})
        at = {x: [r for r in rows if float(r[param]) == x] for x in xs}
        series = {"x": np.array(xs)}
        for m in ("precision", "recall", "f1", "trivial_f1"):
            series[m] = np.array([_mean(r[m] for r in at[x]) for x in xs])
        data[attack] = series
    fig = new_figure(f"Precision, recall and F1 vs {param}", subtitle, size=(11.0, 4.0))
    axes = fig.subplots(1, 3, sharex=True, sharey=True)
    for i, (attack, s) in enumerate(data.items()):
        for ax, m in zip(axes, ("precision", "recall", "f1"), strict=True):
            ax.plot(s["x"], s[m], marker="o", color=f"C{i}", label=attack)
        axes[2].plot(s["x"], s["trivial_f1"], ls="--", color=f"C{i}", label=f"{attack} trivial")
    for ax, label in zip(axes, ("Precision", "Recall", "F1"), strict=True):
        ax.set(title=label, xlabel=param, ylim=(0.0, 1.05))
        ax.grid(alpha=0.3)
    axes[2].legend(fontsize=7)
    return Plot(f"metrics_vs_{re.sub(r'[^A-Za-z0-9_-]', '_', param)}", fig, data)


_CSS = (
    "body{font-family:system-ui,sans-serif;margin:2em;color:#222}table{border-collapse:collapse}"
    "th,td{border:1px solid #ccc;padding:.2em .6em;font-size:.85em}th{background:#eee}"
    "td.num{text-align:right}img{max-width:100%}.notes{white-space:pre-wrap;color:#555}"
)


def _td(column: str, value: str) -> str:
    if column not in SUMMARY_METRICS:
        return f"<td>{html.escape(value)}</td>"
    return f'<td class="num" title="{html.escape(value)}">{_shown(column, value)}</td>'


def html_report(
    title: str, table: Sequence[Mapping[str, str]], plots: Sequence[Plot], notes: str = ""
) -> str:
    """One self-contained HTML page (inline CSS, plots as base64 PNG): the table and plots."""
    esc = html.escape
    parts = [
        f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{esc(title)}</title>',
        f"<style>{_CSS}</style></head><body>\n<h1>{esc(title)}</h1>",
    ]
    if notes:
        parts.append(f'<p class="notes">{esc(notes)}</p>')
    if table:
        columns = list(table[0])
        parts.append("<table><thead><tr>" + "".join(f"<th>{esc(c)}</th>" for c in columns))
        parts.append("</tr></thead><tbody>")
        for row in table:
            cells = (_td(c, row.get(c, "")) for c in columns)
            parts.append("<tr>" + "".join(cells) + "</tr>")
        parts.append("</tbody></table>")
    for plot in plots:
        encoded = base64.b64encode(png_bytes(plot)).decode("ascii")
        parts.append(
            f'<figure><img alt="{esc(plot.name)}" src="data:image/png;base64,{encoded}">'
            f"<figcaption>{esc(plot.name)}</figcaption></figure>"
        )
    parts.append("</body></html>\n")
    return "\n".join(parts)


def write_summary(
    directory: Path | str, records: Sequence[RunRecord], title: str, notes: str = ""
) -> list[Path]:
    """Write summary.csv, summary.md, radar.png, metrics_vs_<param>.png and report.html.

    A sweep over defenses also gets frontier.csv and privacy_utility_frontier.png
    (:mod:`fedgen.reporting.frontier`). Every file is written atomically. Returns the paths
    written.

    Raises
    ------
    DataError
        If there are no records, or none of them ran an attack.
    """
    directory = Path(directory)
    if not records:
        raise DataError("no runs to summarise: the selection is empty")
    table = summary_table(records)
    if not table:
        raise DataError(f"none of the {len(records)} runs has attack results (params.attack: none)")
    swept = swept_params(records)
    subtitle = f"{len(records)} runs" + (f"; swept: {', '.join(swept)}" if swept else "")
    plots = [radar_across(records, subtitle)]
    plots += [metric_vs_param(records, p, subtitle) for p in numeric_swept_params(records)]
    paths = [directory / "summary.csv", directory / "summary.md"]
    atomic_write_text(paths[0], to_csv(table))
    atomic_write_text(paths[1], to_markdown(table))
    from fedgen.reporting import frontier  # it builds on this module's records

    if frontier.is_privacy_sweep(records):
        plots.insert(0, frontier.frontier_plot(records, subtitle))
        paths.append(directory / "frontier.csv")
        atomic_write_text(paths[-1], to_csv(frontier.frontier_table(records)))
    paths += [save_png(plot, directory) for plot in plots]
    report = directory / "report.html"
    atomic_write_text(report, html_report(title, table, plots, notes))
    return [*paths, report]
