"""Cross-run summaries of fedgen jobs: a table, comparison plots, a self-contained HTML report."""

from __future__ import annotations

import base64
import csv
import html
import io
import json
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

import fedgen
from fedgen.core.errors import DataError
from fedgen.core.io import atomic_write_text
from fedgen.figures.base import Plot, new_figure, png_bytes, save_png
from fedgen.reporting.verdict import (
    caption,
    fixed_params,
    key_settings,
    observer_of,
    sweep_verdicts,
)

SUMMARY_METRICS = (
    "member_share",
    "auc",
    "auc_ci_low",
    "auc_ci_high",
    "advantage",
    "tpr_at_fpr_0.01",
    "tpr_at_fpr_0.001",
    "trivial_f1",
    "precision",
    "recall",
    "f1",
)
FIGURE_METRICS = {"auc": "AUC", "advantage": "Advantage", "tpr_at_fpr_0.01": "TPR at 1% FPR"}
CHANCE = {"auc": 0.5, "advantage": 0.0, "tpr_at_fpr_0.01": 0.01}
RUN_COLUMNS = ("run_name", "run_id", "sweep_dir", "started", "attack")
_RUN_KEYS = ("run_id", "run_name", "params", "metrics")
_OPTIONAL_KEYS = ("started", "sweep_dir", "version", "git_commit")
_BOOKKEEPING = ("attack", "cache", "cache_dir")


@dataclass(frozen=True)
class RunRecord:
    """One job's outcome: its params (config values as strings) and its final metrics.

    ``started`` (ISO 8601 start time), ``sweep_dir``, ``version`` (fedgen's) and
    ``git_commit`` (of the fedgen checkout) are empty where unknown (e.g. a job outside a
    ``--multirun`` has no sweep, an installed fedgen no commit, runs from older fedgen none).
    """

    run_id: str
    run_name: str
    params: dict[str, str]
    metrics: dict[str, float]
    started: str = ""
    sweep_dir: str = ""
    version: str = ""
    git_commit: str = ""


def dump_run_json(record: RunRecord) -> str:
    """``record`` as JSON: run_id, run_name, params, metrics (floats exact), and ``started``,
    ``sweep_dir``, ``version`` and ``git_commit`` when known."""
    data: dict[str, Any] = {"run_id": record.run_id, "run_name": record.run_name}
    data.update({k: getattr(record, k) for k in _OPTIONAL_KEYS if getattr(record, k)})
    data["params"] = {k: record.params[k] for k in sorted(record.params)}
    data["metrics"] = {k: float(record.metrics[k]) for k in sorted(record.metrics)}
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
        and set(_RUN_KEYS) <= set(data) <= set(_RUN_KEYS) | set(_OPTIONAL_KEYS)
        and all(isinstance(data.get(k, ""), str) for k in _OPTIONAL_KEYS)
        and isinstance(data["run_id"], str)
        and isinstance(data["run_name"], str)
        and isinstance(data["params"], dict)
        and all(isinstance(v, str) for v in data["params"].values())
        and isinstance(data["metrics"], dict)
        and all(type(v) in (int, float) for v in data["metrics"].values())
    ):
        raise DataError(
            f"{path}: not a run record (keys {', '.join(_RUN_KEYS)}, optionally "
            f"{', '.join(_OPTIONAL_KEYS)}; params map to strings, metrics to numbers)"
        )
    floats = {k: float(v) for k, v in data["metrics"].items()}
    extra = {k: data[k] for k in _OPTIONAL_KEYS if k in data}
    return RunRecord(data["run_id"], data["run_name"], dict(data["params"]), floats, **extra)


def natural(value: str | None) -> tuple[int, float, str]:
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
    An attack's own threshold that equals the top-level ``threshold`` in every record only
    follows it (``attack.<name>.threshold: ${threshold}``) and is left out.
    """
    records = list(records)
    if not records:
        return []
    keys = set.intersection(*(set(r.params) for r in records)) - set(_BOOKKEEPING)
    keys = {k for k in keys if not k.startswith(("tracking.", "hydra"))}
    keys = {k for k in keys if not _follows_threshold(k, records)}
    return sorted(k for k in keys if len({r.params.get(k) for r in records}) > 1)


def _attack_threshold_key(key: str) -> bool:
    parts = key.split(".")
    return len(parts) == 3 and parts[0] == "attack" and parts[2] == "threshold"


def _follows_threshold(key: str, records: Sequence[RunRecord]) -> bool:
    if not _attack_threshold_key(key):
        return False
    return all(r.params.get(key) == r.params.get("threshold") for r in records)


def attacks_of(record: RunRecord) -> list[str]:
    """The run's attacks that score targets (those with an AUC; ``label_counts`` has none)."""
    names = [a.strip() for a in record.params.get("attack", "").split(",")]
    scored = {k.split("/", 1)[0] for k in record.metrics if k.endswith("/auc")}
    return list(dict.fromkeys(a for a in names if a and a != "none" and a in scored))


def attack_threshold(record: RunRecord, attack: str) -> str:
    """The threshold ``attack`` used in ``record``: its own, else the top-level one."""
    return record.params.get(f"attack.{attack}.threshold", record.params.get("threshold", ""))


def _record_key(record: RunRecord, swept: Sequence[str]) -> tuple[Any, ...]:
    return (
        tuple(natural(record.params.get(p, "")) for p in swept),
        record.run_name,
        record.run_id,
        sorted(record.params.items()),
        sorted((k, repr(v)) for k, v in record.metrics.items()),
    )


def summary_table(records: Iterable[RunRecord]) -> list[dict[str, str]]:
    """One row per (run, attack): who, what, and the leakage numbers at the run's threshold.

    Columns: :data:`RUN_COLUMNS` (run name and id, sweep directory and start time where
    known, attack), the swept params, ``threshold`` (always: P/R/F1 are at it), then
    :data:`SUMMARY_METRICS` (member share, AUC with its bootstrap 95% interval, advantage,
    TPR at 1% and 0.1% FPR, trivial F1, precision, recall, F1). Rows are ordered by attack
    (first appearance), swept params (numeric-aware), run name; the same records in any
    order give the same table. A missing metric (e.g. TPR at 0.1% FPR on a small pool) is
    an empty cell.
    """
    records = list(records)
    swept = swept_params(records)
    shown = [p for p in swept if p != "threshold"] + ["threshold"]
    rows = []
    for record, attack in table_order(records):
        row = {
            "run_name": record.run_name,
            "run_id": record.run_id,
            "sweep_dir": record.sweep_dir,
            "started": record.started,
            "attack": attack,
        }
        row.update({p: record.params.get(p, "") for p in shown})
        row["threshold"] = attack_threshold(record, attack)
        for m in SUMMARY_METRICS:
            value = record.metrics.get(f"{attack}/{m}")
            row[m] = "" if value is None else repr(float(value))
        rows.append(row)
    return rows


def table_order(records: Iterable[RunRecord]) -> list[tuple[RunRecord, str]]:
    """Every (run, scored attack), by attack (first appearance), swept params, run name.

    The order of :func:`summary_table`'s rows; the same records in any order give the same.
    """
    records = list(records)
    swept = swept_params(records)
    pairs = [
        (record, attack)
        for record in sorted(records, key=lambda r: _record_key(r, swept))  # a total order
        for attack in attacks_of(record)
    ]
    attacks = list(dict.fromkeys(attack for _, attack in pairs))
    return sorted(pairs, key=lambda pair: attacks.index(pair[1]))  # stable


def to_csv(table: Sequence[Mapping[str, str]]) -> str:
    """``table`` as CSV with a header line; floats keep their full ``repr``."""
    if not table:
        return ""
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=list(table[0]), lineterminator="\n")
    writer.writeheader()
    writer.writerows(table)
    return out.getvalue()


def _numeric(column: str) -> bool:
    return column in SUMMARY_METRICS or column.endswith(("_mean", "_sd"))


def _shown(column: str, value: str) -> str:
    return f"{float(value):.3f}" if _numeric(column) and value else value


def to_markdown(table: Sequence[Mapping[str, str]]) -> str:
    """``table`` as a GitHub Markdown table, metrics rounded to 3 decimals."""
    if not table:
        return ""
    columns = list(table[0])
    lines = [
        "| " + " | ".join(columns) + " |",
        "|" + "|".join("---:" if _numeric(c) else "---" for c in columns) + "|",
    ]
    for row in table:
        cells = (_shown(c, row.get(c, "")).replace("|", "\\|") for c in columns)
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


REPEATS_HEADING = "## Repeats (mean ± SD across seeds)"
REPEATS_NOTE = (
    "One row per attack and configuration: runs whose params are all equal but `seed`. "
    "SD is the sample SD (ddof=1) across those runs; auc_ci lists each run's bootstrap 95% "
    "interval. Nothing is averaged across thresholds or configurations."
)


def summary_markdown(
    table: Sequence[Mapping[str, str]], repeats: Sequence[Mapping[str, str]] = ()
) -> str:
    """``summary.md``: the per-run table, then the repeats table when some config repeats."""
    text = to_markdown(table)
    if repeats:
        text += f"\n{REPEATS_HEADING}\n\n{REPEATS_NOTE}\n\n{to_markdown(repeats)}"
    return text


def numeric_swept_params(records: Iterable[RunRecord]) -> list[str]:
    """The swept params whose values, in every record, are finite numbers."""
    records = list(records)
    swept = swept_params(records)
    return [p for p in swept if all(natural(r.params.get(p))[0] == 0 for r in records)]


def _lines(records: Sequence[RunRecord], param: str) -> dict[str, dict[str, Any]]:
    """The repeat groups as lines against ``param``: one per attack and other params' values.

    A line holds the groups that are equal in every param but ``param`` (and ``seed``); its
    label names the attack and the params that tell the lines apart.
    """
    from fedgen.reporting.repeats import repeat_groups

    lines: dict[tuple[Any, ...], list[Any]] = {}
    for group in repeat_groups(records):
        # An attack's own threshold that follows the top-level one moves with it: it is the
        # same axis, neither a line of its own nor a label.
        rest = tuple(
            (k, v)
            for k, v in group.params
            if k != param and not (_attack_threshold_key(k) and v == group.param("threshold"))
        )
        lines.setdefault((group.attack, rest), []).append(group)
    keys = {k for _, rest in lines for k, _ in rest}
    differing = sorted(k for k in keys if len({dict(rest).get(k) for _, rest in lines}) > 1)
    differing = [k for k in differing if k != "attack"]
    out: dict[str, dict[str, Any]] = {}
    for (attack, rest), groups in lines.items():
        fixed = {k: dict(rest).get(k, "") for k in differing}
        label = " ".join([attack, *(f"{k}={v}" for k, v in fixed.items())])
        groups = sorted(groups, key=lambda g: natural(g.param(param)))
        out[label] = {"attack": attack, "fixed": fixed, "groups": groups}
    return out


def _series(groups: Sequence[Any], param: str, metrics: Iterable[str]) -> dict[str, Any]:
    """x, n and per metric the mean, SD across runs, and the bars drawn (low, high)."""
    from fedgen.reporting.repeats import mean_sd

    series: dict[str, Any] = {
        "x": np.array([float(g.param(param)) for g in groups]),
        "n": np.array([g.n for g in groups]),
    }
    for m in metrics:
        stats = [mean_sd(g.values(m)) for g in groups]
        mean = np.array([s[0] for s in stats])
        sd = np.array([s[1] for s in stats])
        series[m], series[f"{m}_sd"] = mean, sd
        if m == "auc":  # the within-run bootstrap interval, mean over the runs
            lows = [mean_sd(g.values("auc_ci_low"))[0] for g in groups]
            highs = [mean_sd(g.values("auc_ci_high"))[0] for g in groups]
            series["auc_ci_low"], series["auc_ci_high"] = np.array(lows), np.array(highs)
        # Bars: ± SD across seeds where a point has repeats, else the bootstrap interval.
        repeated = series["n"] >= 2
        low = np.where(repeated, mean - sd, series.get(f"{m}_ci_low", np.nan))
        high = np.where(repeated, mean + sd, series.get(f"{m}_ci_high", np.nan))
        series[f"{m}_bar_low"], series[f"{m}_bar_high"] = low, high
    return series


def _n_label(n: np.ndarray) -> str:
    low, high = int(n.min()), int(n.max())
    return f"n={low}" if low == high else f"n={low}-{high}"


def _check_param(records: Sequence[RunRecord], param: str) -> None:
    if param == "seed":
        raise DataError("seed is a repeat dimension: runs over seeds are aggregated, not plotted")
    if param not in numeric_swept_params(records):
        raise DataError(f"{param!r} is not a swept param with numeric values in every run")


def metric_vs_param(records: Iterable[RunRecord], param: str, subtitle: str) -> Plot:
    """AUC, advantage and TPR at 1% FPR against a numeric swept param.

    One line per attack and per value of every other param that differs (nothing is averaged
    over thresholds or configurations); runs differing only in ``seed`` are one point, their
    mean, with ± SD bars and n in the legend. A point of one run has its bootstrap 95% AUC
    interval as bars. ``data[label]`` holds ``attack``, ``fixed`` (the other params' values)
    and arrays ``x``, ``n``, ``<m>``, ``<m>_sd``, ``<m>_bar_low``, ``<m>_bar_high`` for each
    metric of :data:`FIGURE_METRICS`, and ``auc_ci_low``/``auc_ci_high``.
    """
    records = list(records)
    _check_param(records, param)
    data: dict[str, Any] = {}
    for label, line in _lines(records, param).items():
        series = _series(line["groups"], param, FIGURE_METRICS)
        data[label] = {"attack": line["attack"], "fixed": line["fixed"], **series}
    fig = new_figure(
        f"Leakage vs {param}",
        f"{subtitle}; bars: ± SD across seeds, or the bootstrap 95% AUC interval of one run",
        size=(12.0, 4.2),
    )
    axes = fig.subplots(1, 3, sharex=True)
    for i, (label, s) in enumerate(data.items()):
        for ax, m in zip(axes, FIGURE_METRICS, strict=True):
            low, high = s[f"{m}_bar_low"], s[f"{m}_bar_high"]
            yerr = np.vstack([s[m] - low, high - s[m]])
            has_bar = np.isfinite(yerr).all(axis=0)
            ax.errorbar(
                s["x"],
                s[m],
                yerr=np.maximum(np.where(has_bar, yerr, 0.0), 0.0),  # rounding, odd CIs
                marker="o",
                capsize=3,
                color=f"C{i % 10}",
                label=f"{label} ({_n_label(s['n'])})",
            )
    for ax, m in zip(axes, FIGURE_METRICS, strict=True):
        ax.axhline(CHANCE[m], color="grey", ls=":", lw=1)
        ax.set(title=FIGURE_METRICS[m], xlabel=param)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7)
    return Plot(f"metrics_vs_{re.sub(r'[^A-Za-z0-9_-]', '_', param)}", fig, data)


def prf_vs_threshold(records: Iterable[RunRecord], subtitle: str) -> Plot:
    """Precision, recall and F1 against the swept threshold, trivial F1 dashed.

    One line per attack and per value of every other param that differs; runs differing
    only in ``seed`` are averaged (± SD bars, n in the legend). ``data[label]`` holds
    ``attack``, ``fixed`` and arrays ``x``, ``n``, ``precision``, ``recall``, ``f1``,
    ``trivial_f1`` (each with ``_sd``).
    """
    records = list(records)
    _check_param(records, "threshold")
    metrics = ("precision", "recall", "f1", "trivial_f1")
    data: dict[str, Any] = {}
    for label, line in _lines(records, "threshold").items():
        series = _series(line["groups"], "threshold", metrics)
        data[label] = {"attack": line["attack"], "fixed": line["fixed"], **series}
    fig = new_figure("Precision, recall and F1 vs threshold", subtitle, size=(11.0, 4.0))
    axes = fig.subplots(1, 3, sharex=True, sharey=True)
    for i, (label, s) in enumerate(data.items()):
        color = f"C{i % 10}"
        for ax, m in zip(axes, ("precision", "recall", "f1"), strict=True):
            sd = np.nan_to_num(s[f"{m}_sd"])
            shown = f"{label} ({_n_label(s['n'])})"
            ax.errorbar(s["x"], s[m], yerr=sd, marker="o", capsize=3, color=color, label=shown)
        axes[2].plot(s["x"], s["trivial_f1"], ls="--", color=color, label=f"{label} trivial")
    for ax, title in zip(axes, ("Precision", "Recall", "F1"), strict=True):
        ax.set(title=title, xlabel="threshold", ylim=(0.0, 1.05))
        ax.grid(alpha=0.3)
    axes[2].legend(fontsize=7)
    return Plot("prf_vs_threshold", fig, data)


_CSS = (
    "body{font-family:system-ui,sans-serif;margin:2em;color:#222;line-height:1.35;"
    "overflow-wrap:break-word}"
    "table{border-collapse:collapse;margin:.4em 0 1em}"
    "th,td{border:1px solid #ccc;padding:.2em .5em;font-size:.85em;vertical-align:top}"
    "th{background:#eee;text-align:left}td.num{text-align:right;white-space:nowrap}"
    ".wide{overflow-x:auto;max-width:100%}img{max-width:100%;height:auto}"
    "figure{margin:1em 0}figcaption{font-size:.9em;color:#333;max-width:60em}"
    ".notes{white-space:pre-wrap;color:#555}.meta{color:#555;font-size:.9em}"
    "ul.verdicts li{margin:.25em 0}table.settings th{width:12em}"
    "h2{margin-top:1.4em}"
    # Narrow screens and paper: tables wrap inside the page instead of scrolling past it.
    "@media print,(max-width:800px){body{margin:0}.wide{overflow:visible}"
    "table{width:100%;table-layout:auto}"
    "th,td{overflow-wrap:anywhere;font-size:.72em;padding:.15em .3em}"
    "td.num{white-space:normal}}"
    "@page{size:A4;margin:14mm}"
    "@media print{body{font-size:10pt}h1,h2{break-after:avoid}"
    "figure,tr,li li{break-inside:avoid}thead{display:table-header-group}"
    "img{max-height:200mm;object-fit:contain}a{color:inherit}}"
)

# The columns of the report's table (the CSV keeps every field, full precision).
_HTML_COLUMNS = {
    "advantage": "advantage",
    "tpr_at_fpr_0.01": "TPR @ 1% FPR",
    "tpr_at_fpr_0.001": "TPR @ 0.1% FPR",
    "member_share": "member share",
    "trivial_f1": "trivial F1",
    "precision": "precision",
    "recall": "recall",
    "f1": "F1",
}
TABLE_NOTE = (
    "AUC with its bootstrap 95% interval; advantage = the largest TPR - FPR over thresholds; "
    "TPR @ 1% / 0.1% FPR = the share of participants identified when 1% / 0.1% of "
    "non-participants are wrongly accused (empty: too few non-participants to tell); member "
    "share = the share of participants among the candidates; trivial F1 = the F1 of calling "
    "every candidate a participant, the bar an attack must clear; precision, recall and F1 at "
    "the threshold shown. Label attacks (lia, phenotype) score 'label 1' (a case) instead of "
    "'participant'."
)


def _cell(value: float | None, digits: int = 3) -> str:
    if value is None or math.isnan(value):
        return '<td class="num"></td>'
    return f'<td class="num" title="{value!r}">{value:.{digits}f}</td>'


def _auc_cell(metrics: Mapping[str, float], attack: str) -> str:
    auc = metrics.get(f"{attack}/auc")
    low, high = metrics.get(f"{attack}/auc_ci_low"), metrics.get(f"{attack}/auc_ci_high")
    if auc is None:
        return '<td class="num"></td>'
    interval = f" [{low:.3f}, {high:.3f}]" if low is not None and high is not None else ""
    return f'<td class="num" title="{auc!r}">{auc:.3f}{interval}</td>'


def _leakage_table(records: Sequence[RunRecord]) -> list[str]:
    """The honest table: one row per run and attack, who attacked, every leakage number, and
    which run it is (its id's first 8 characters, its start time; the full id on hover)."""
    esc = html.escape
    swept = [p for p in swept_params(records) if p != "threshold"]
    head = ["attack", "observer", *swept, "threshold", "AUC [95% CI]", *_HTML_COLUMNS.values()]
    head.append("run (started)")
    parts = ['<div class="wide"><table class="runs"><thead><tr>']
    parts.append("".join(f"<th>{esc(c)}</th>" for c in head) + "</tr></thead><tbody>")
    for record, attack in table_order(records):
        cells = [attack, observer_of(record, attack)]
        cells += [record.params.get(p, "") for p in swept] + [attack_threshold(record, attack)]
        row = "".join(f"<td>{esc(c)}</td>" for c in cells)
        row += _auc_cell(record.metrics, attack)
        row += "".join(_cell(record.metrics.get(f"{attack}/{m}")) for m in _HTML_COLUMNS)
        started = record.started.replace("T", " ")[:16]
        row += f'<td class="run">{esc(record.run_id[:8])}'
        row += f"<br>{esc(started)}</td>" if started else "</td>"
        parts.append(f'<tr title="{esc(record.run_name)} ({esc(record.run_id)})">{row}</tr>')
    parts.append("</tbody></table></div>")
    return parts


def _td(column: str, value: str) -> str:
    if not _numeric(column):
        return f"<td>{html.escape(value)}</td>"
    return f'<td class="num" title="{html.escape(value)}">{_shown(column, value)}</td>'


def _html_table(table: Sequence[Mapping[str, str]], css_class: str) -> list[str]:
    esc = html.escape
    columns = list(table[0])
    parts = [f'<div class="wide"><table class="{css_class}"><thead><tr>']
    parts.append("".join(f"<th>{esc(c)}</th>" for c in columns) + "</tr></thead><tbody>")
    for row in table:
        parts.append("<tr>" + "".join(_td(c, row.get(c, "")) for c in columns) + "</tr>")
    parts.append("</tbody></table></div>")
    return parts


def _settings(records: Sequence[RunRecord]) -> list[str]:
    """The header: every key setting, then what was swept and over which values."""
    esc = html.escape
    parts = ['<table class="settings"><tbody>']
    parts += [f"<tr><th>{esc(k)}</th><td>{esc(v)}</td></tr>" for k, v in key_settings(records)]
    parts.append("</tbody></table>")
    swept = swept_params(records)
    if swept:
        parts.append("<p><b>Swept</b> (everything else is the same in every run):</p><ul>")
        for p in swept:
            values = sorted({r.params.get(p, "") for r in records}, key=natural)
            parts.append(f"<li>{esc(p)}: {esc(', '.join(values))}</li>")
        parts.append("</ul>")
    return parts


def _verdicts(records: Sequence[RunRecord]) -> list[str]:
    """One list per attack, a line per setting: who learns what, beside chance."""
    esc = html.escape
    ordered = {id(r): r for r, _ in table_order(records)}
    ordered |= {id(r): r for r in records}  # runs of count attacks alone score no targets
    lines = sweep_verdicts(list(ordered.values()), swept_params(records))
    if not lines:
        return ["<p>No attack ran, or none has results.</p>"]
    parts = ['<ul class="verdicts">']
    for attack in dict.fromkeys(a for a, _, _ in lines):
        mine = [(k, v) for a, k, v in lines if a == attack]
        if len(mine) == 1 and not mine[0][0]:
            parts.append(f"<li><b>{esc(attack)}</b>: {esc(mine[0][1])}</li>")
            continue
        parts.append(f"<li><b>{esc(attack)}</b><ul>")
        parts += [f"<li>{f'{esc(k)}: ' if k else ''}{esc(v)}</li>" for k, v in mine]
        parts.append("</ul></li>")
    parts.append("</ul>")
    return parts


def _figure(number: int, name: str, src: str) -> str:
    esc = html.escape
    text = caption(name) or name.replace("_", " ")
    return (
        f'<figure id="{esc(name)}"><img alt="{esc(text)}" src="{esc(src)}">'
        f"<figcaption><b>Figure {number}.</b> {esc(text)}</figcaption></figure>"
    )


def html_report(
    title: str,
    records: Sequence[RunRecord],
    plots: Sequence[Plot] = (),
    notes: str = "",
    repeats: Sequence[Mapping[str, str]] = (),
    linked: Sequence[str] = (),
    written: str = "",
) -> str:
    """The leakage report: one self-contained HTML page (inline CSS, no script) that prints.

    A header with every key setting (cohort, SNPs, clients, rounds, model, pool, defenses,
    attacks, seeds, fedgen version, git commit, dates) and what was swept; a one-line verdict
    per attack and observer (:mod:`fedgen.reporting.verdict`); the leakage table (AUC with
    its interval, advantage, TPR at 1% and 0.1% FPR, member share, trivial F1 and P/R/F1 at
    the threshold); the repeats table; ``plots`` embedded as base64 PNG and ``linked``
    figures (paths relative to the page, e.g. ``figures/roc.png``), each with a caption; and
    every setting the runs share. ``written`` (default: today, UTC) dates the page.
    """

    esc = html.escape
    written = written or datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    parts = [
        f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{esc(title)}</title>',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<style>{_CSS}</style></head><body>\n<h1>{esc(title)}</h1>",
        f'<p class="meta">Written {esc(written)} by fedgen {esc(fedgen.__version__)}; '
        f"{len(records)} run{'s' if len(records) != 1 else ''}.</p>",
    ]
    if notes:
        parts.append(f'<p class="notes">{esc(notes)}</p>')
    parts.append("<h2>Settings</h2>")
    parts += _settings(records)
    parts.append("<h2>Verdict</h2>")
    parts += _verdicts(records)
    if table_order(records):
        parts.append("<h2>Leakage per run and attack</h2>")
        parts.append(f'<p class="notes">{esc(TABLE_NOTE)}</p>')
        parts += _leakage_table(records)
    if repeats:
        parts.append(f"<h2>{esc(REPEATS_HEADING.lstrip('# '))}</h2>")
        parts.append(f'<p class="notes">{esc(REPEATS_NOTE.replace("`", ""))}</p>')
        parts += _html_table(repeats, "repeats")
    if plots or linked:
        parts.append("<h2>Figures</h2>")
    for number, plot in enumerate(plots, start=1):
        encoded = base64.b64encode(png_bytes(plot)).decode("ascii")
        parts.append(_figure(number, plot.name, f"data:image/png;base64,{encoded}"))
    if linked:
        parts.append(f'<p class="notes">{esc(LINKED_NOTE)}</p>')
    for number, src in enumerate(linked, start=len(plots) + 1):
        parts.append(_figure(number, Path(src).stem, src))
    fixed = fixed_params(records)
    if fixed:
        parts.append("<h2>Every setting the runs share</h2>")
        parts.append('<div class="wide"><table class="fixed"><tbody>')
        parts += [f"<tr><th>{esc(k)}</th><td>{esc(v)}</td></tr>" for k, v in fixed.items()]
        parts.append("</tbody></table></div>")
    parts.append("</body></html>\n")
    return "\n".join(parts)


LINKED_NOTE = (
    "The figures below are drawn in the background after this page is written, into the "
    "figures/ folder beside it: keep that folder with the page (or print the page to PDF "
    "once they exist)."
)


def run_figure_names(record: RunRecord) -> list[str]:
    """The PNG names a job with figures on draws into ``figures/`` (:mod:`fedgen.figures.run`).

    Leakage figures (ROC, per-round, threshold curves, per client, the gradient-norm
    histogram) when an attack scored targets, then training and cohort figures. Kept in step
    with :func:`fedgen.figures.run.run_figures` by a test that runs a job.
    """
    scored = attacks_of(record)
    names = ["roc"] if scored else []
    if any(f"{a}/round_1/auc" in record.metrics for a in scored):
        names.append("leakage_over_rounds")
    names += [f"threshold_curves_{a}" for a in scored]
    names += ["client_auc"] if scored else []
    target = "GradientNormMIA"
    if any(record.params.get(f"attack.{a}._target_", "").endswith(target) for a in scored):
        names.append("gradient_norm_histogram")
    return [*names, "training_curves", "snp_pca", "top_snp_correlations"]


def write_run_report(directory: Path | str, record: RunRecord, figures: bool = True) -> Path:
    """Write ``<directory>/report.html``: the leakage report of one job.

    The header, verdicts and table are in the page; with ``figures`` the job's figures are
    linked as ``figures/<name>.png`` (they are drawn in the background and may not exist yet
    when this is called). Returns the path written (atomically).
    """
    linked = [f"figures/{name}.png" for name in run_figure_names(record)] if figures else []
    title = f"fedgen run {record.run_name}".strip()
    path = Path(directory) / "report.html"
    atomic_write_text(path, html_report(title, [record], linked=linked))
    return path


def summary_plots(records: Sequence[RunRecord], subtitle: str) -> list[Plot]:
    """Leakage vs every numeric swept param but seed; P/R/F1 vs threshold if it is swept."""
    params = [p for p in numeric_swept_params(records) if p != "seed"]
    plots = [metric_vs_param(records, p, subtitle) for p in params]
    if "threshold" in params:
        plots.append(prf_vs_threshold(records, subtitle))
    return plots


def write_summary(
    directory: Path | str, records: Sequence[RunRecord], title: str, notes: str = ""
) -> list[Path]:
    """Write summary.csv, summary.md, metrics_vs_<param>.png and report.html.

    Also ``repeats.csv`` (and a repeats section in summary.md and report.html) when some
    attack and configuration ran more than once (:mod:`fedgen.reporting.repeats`),
    ``prf_vs_threshold.png`` when the threshold is swept, and for a sweep over defenses
    frontier.csv and privacy_utility_frontier.png (:mod:`fedgen.reporting.frontier`).
    Every file is written atomically. Returns the paths written.

    Raises
    ------
    DataError
        If there are no records, or none of them ran an attack.
    """
    from fedgen.reporting import frontier, repeats  # they build on this module's records

    directory = Path(directory)
    if not records:
        raise DataError("no runs to summarise: the selection is empty")
    table = summary_table(records)
    if not table:
        raise DataError(f"none of the {len(records)} runs has attack results (params.attack: none)")
    swept = swept_params(records)
    subtitle = f"{len(records)} runs" + (f"; swept: {', '.join(swept)}" if swept else "")
    plots = summary_plots(records, subtitle)
    repeated = repeats.repeats_table(records) if repeats.has_repeats(records) else []
    paths = [directory / "summary.csv", directory / "summary.md"]
    atomic_write_text(paths[0], to_csv(table))
    atomic_write_text(paths[1], summary_markdown(table, repeated))
    if repeated:
        paths.append(directory / "repeats.csv")
        atomic_write_text(paths[-1], to_csv(repeated))
    if frontier.is_privacy_sweep(records):
        plots.insert(0, frontier.frontier_plot(records, subtitle))
        paths.append(directory / "frontier.csv")
        atomic_write_text(paths[-1], to_csv(frontier.frontier_table(records)))
    paths += [save_png(plot, directory) for plot in plots]
    report = directory / "report.html"
    atomic_write_text(report, html_report(title, records, plots, notes, repeated))
    return [*paths, report]
