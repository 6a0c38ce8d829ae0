"""Cross-run summaries: the table's columns and order, CSV/Markdown, plots' data, HTML, files."""

from __future__ import annotations

import base64
import csv
import io
import json
import random
import re
from pathlib import Path

import numpy as np
import pytest

from fedgen.core.errors import DataError
from fedgen.reporting.report import (
    SUMMARY_METRICS,
    RunRecord,
    dump_run_json,
    html_report,
    load_run_json,
    metric_vs_param,
    radar_across,
    summary_table,
    swept_params,
    to_csv,
    to_markdown,
    write_summary,
)

BASE = {
    "seed": "42",
    "federation.num_clients": "5",
    "evaluation": "paper",
    "attack": "mia,gmia",
    "cache": "True",
    "cache_dir": "null",
}


def record(run_id: str, threshold: str, seed: str = "42", **extra: str) -> RunRecord:
    """A job with distinct, checkable metrics: value = f(attack, threshold, seed, metric)."""
    params = {**BASE, "threshold": threshold, "seed": seed, "tracking.uri": f"sqlite:///{run_id}"}
    params.update(extra)
    metrics: dict[str, float] = {"fed/test_accuracy": 0.7}
    for k, attack in enumerate(params["attack"].split(",")):
        for j, m in enumerate(SUMMARY_METRICS):
            metrics[f"{attack}/{m}"] = round(
                0.1 * k + float(threshold) / 10 + int(seed) / 1000 + j / 100 + 0.1 / 3, 12
            )
        metrics[f"{attack}/client_0/auc"] = 0.5
    return RunRecord(run_id, f"threshold={threshold} seed={seed}", params, metrics)


@pytest.fixture()
def records() -> list[RunRecord]:
    return [
        record("r1", "10"),
        record("r2", "0.5"),
        record("r3", "0.45"),
        record("r4", "0.5", seed="7"),
        record("r5", "10", seed="7"),
        record("r6", "0.45", seed="7"),
    ]


def test_swept_params_ignore_attack_and_bookkeeping(records: list[RunRecord]) -> None:
    mixed = [*records, record("r7", "0.5", attack="gmia", cache_dir="/x", **{"hydra.x": "1"})]
    assert swept_params(mixed) == ["seed", "threshold"]
    assert swept_params(records[:1]) == []
    # a param only some records have belongs to an option only some jobs chose: not swept
    assert "extra_knob" not in swept_params([*records, record("r8", "0.5", extra_knob="1")])


def test_summary_table_columns_order_and_cells(records: list[RunRecord]) -> None:
    table = summary_table(records)
    assert len(table) == 12
    assert list(table[0]) == ["run_name", "attack", "seed", "threshold", *SUMMARY_METRICS]
    # attacks in order of first appearance, then seed, threshold numeric-aware, then run name
    keys = [(r["attack"], r["seed"], r["threshold"]) for r in table]
    expected = [
        (a, s, t) for a in ("mia", "gmia") for s in ("7", "42") for t in ("0.45", "0.5", "10")
    ]
    assert keys == expected
    by_id = {r.run_name: r for r in records}
    for row in table:
        source = by_id[row["run_name"]]
        for m in SUMMARY_METRICS:
            assert row[m] == repr(source.metrics[f"{row['attack']}/{m}"])


def test_summary_table_is_the_same_for_any_input_order(records: list[RunRecord]) -> None:
    twins = [*records, RunRecord("r0", "same", dict(BASE, threshold="0.5"), {"mia/f1": 0.2})]
    twins.append(RunRecord("r9", "same", dict(BASE, threshold="0.5"), {"mia/f1": 0.1}))
    reference = summary_table(twins)
    rng = random.Random(0)
    for _ in range(20):
        shuffled = twins[:]
        rng.shuffle(shuffled)
        assert summary_table(shuffled) == reference
    # attack order is the first appearance in the canonical order, not in the input order
    flipped = [record("a", "0.3", attack="gmia,mia"), record("b", "0.2", attack="mia")]
    assert [r["attack"] for r in summary_table(flipped)] == ["mia", "mia", "gmia"]
    assert [r["attack"] for r in summary_table(flipped[::-1])] == ["mia", "mia", "gmia"]


def test_missing_metric_is_empty_and_none_attack_is_skipped() -> None:
    a = RunRecord("a", "a", {"attack": "mia", "threshold": "0.5"}, {"mia/auc": 0.75})
    b = RunRecord("b", "b", {"attack": "none", "threshold": "0.4"}, {})
    (row,) = summary_table([a, b])
    assert row["auc"] == "0.75"
    assert row["precision"] == ""
    assert row["threshold"] == "0.5"


def test_csv_keeps_full_repr_and_markdown_rounds(records: list[RunRecord]) -> None:
    table = summary_table(records)
    parsed = list(csv.DictReader(io.StringIO(to_csv(table))))
    assert parsed == table
    assert to_csv(table).splitlines()[0] == "run_name,attack,seed,threshold," + ",".join(
        SUMMARY_METRICS
    )
    lines = to_markdown(table).splitlines()
    assert (
        lines[0] == "| run_name | attack | seed | threshold | " + " | ".join(SUMMARY_METRICS) + " |"
    )
    assert lines[1] == "|---|---|---|---|" + "---:|" * len(SUMMARY_METRICS)
    assert len(lines) == 2 + len(table)
    first = table[0]
    cells = [first["run_name"], "mia", "7", "0.45"]
    cells += [f"{float(first[m]):.3f}" for m in SUMMARY_METRICS]
    assert lines[2] == "| " + " | ".join(cells) + " |"
    assert first["precision"] != f"{float(first['precision']):.3f}"  # CSV is not rounded
    assert to_csv([]) == to_markdown([]) == ""


def test_markdown_escapes_pipes() -> None:
    table = [{"run_name": "a|b", "attack": "mia", "precision": ""}]
    assert to_markdown(table).splitlines()[2] == "| a\\|b | mia |  |"


def test_run_json_round_trips_exactly(tmp_path: Path) -> None:
    rec = RunRecord("id", "name", {"a.b": "1"}, {"m": 0.1 + 0.2, "n": 1e-300, "k": 3.0})
    text = dump_run_json(rec)
    assert sorted(json.loads(text)) == ["metrics", "params", "run_id", "run_name"]
    path = tmp_path / "run.json"
    path.write_text(text)
    back = load_run_json(path)
    assert back == rec
    assert back.metrics["m"] == 0.30000000000000004


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "no such run file"),
        ("{not json", "not a readable run JSON"),
        ('{"run_id": "x"}', "not a run record"),
        ("[1, 2]", "not a run record"),
        ('{"run_id": "x", "run_name": "y", "params": {"a": 1}, "metrics": {}}', "not a run record"),
        (
            '{"run_id": "x", "run_name": "y", "params": {}, "metrics": {"m": "1"}}',
            "not a run record",
        ),
        (
            '{"run_id": "x", "run_name": "y", "params": {}, "metrics": {"m": true}}',
            "not a run record",
        ),
    ],
)
def test_load_run_json_errors_name_the_file(
    tmp_path: Path, content: str | None, message: str
) -> None:
    path = tmp_path / "job" / "run.json"
    if content is not None:
        path.parent.mkdir()
        path.write_text(content)
    with pytest.raises(DataError, match=message) as info:
        load_run_json(path)
    assert str(path) in str(info.value)


def test_radar_across_means_per_attack(records: list[RunRecord]) -> None:
    plot = radar_across(records, "6 runs")
    assert plot.name == "radar"
    assert plot.data["attacks"] == ["mia", "gmia"]
    assert plot.data["n_runs"] == {"mia": 6, "gmia": 6}
    assert "mean over 6 runs" in plot.figure.get_suptitle()
    for i, attack in enumerate(("mia", "gmia")):
        for j, m in enumerate(("precision", "recall", "f1", "auc")):
            expected = np.mean([r.metrics[f"{attack}/{m}"] for r in records])
            assert plot.data["values"][i, j] == pytest.approx(expected, abs=1e-12)


def test_metric_vs_param_data_are_per_attack_means(records: list[RunRecord]) -> None:
    plot = metric_vs_param(records, "threshold", "6 runs")
    assert plot.name == "metrics_vs_threshold"
    assert list(plot.data) == ["mia", "gmia"]
    assert "mean over seed" in plot.figure.get_suptitle()
    for attack, series in plot.data.items():
        np.testing.assert_array_equal(series["x"], [0.45, 0.5, 10.0])
        for m in ("precision", "recall", "f1", "trivial_f1"):
            expected = [
                np.mean(
                    [
                        r.metrics[f"{attack}/{m}"]
                        for r in records
                        if float(r.params["threshold"]) == x
                    ]
                )
                for x in (0.45, 0.5, 10.0)
            ]
            np.testing.assert_allclose(series[m], expected, rtol=0, atol=1e-12)
    f1_axes = plot.figure.axes[2]
    styles = [line.get_linestyle() for line in f1_axes.get_lines()]
    assert styles.count("--") == 2  # one dashed trivial-F1 line per attack
    dotted = metric_vs_param(
        [
            record(f"r{t}", t, **{"federation.num_clients": n})
            for t, n in [("0.1", "2"), ("0.2", "5")]
        ],
        "federation.num_clients",
        "",
    )
    assert dotted.name == "metrics_vs_federation_num_clients"
    with pytest.raises(DataError, match="evaluation"):
        metric_vs_param([record("a", "0.1", evaluation="x"), record("b", "0.2")], "evaluation", "")


def test_html_report_is_self_contained(records: list[RunRecord]) -> None:
    table = summary_table(records)
    plots = [radar_across(records, ""), metric_vs_param(records, "threshold", "")]
    page = html_report("Sweep <1>", table, plots, notes="from a & b")
    assert page.startswith("<!DOCTYPE html>")
    assert "Sweep &lt;1&gt;" in page and "from a &amp; b" in page
    assert not re.search(r"(src|href)=\"(https?:)?//", page)
    assert "<link" not in page and "<script" not in page and "@import" not in page
    images = re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', page)
    assert len(images) == page.count("data:image/png;base64,") == 2
    assert all(base64.b64decode(i).startswith(b"\x89PNG") for i in images)
    body = page[page.index("<tbody>") : page.index("</tbody>")]
    rows = re.findall(r"<tr>(.*?)</tr>", body)
    assert len(rows) == len(table)
    for html_row, row in zip(rows, table, strict=True):
        cells = re.findall(r"<td[^>]*>(.*?)</td>", html_row)
        assert cells[:4] == [row["run_name"], row["attack"], row["seed"], row["threshold"]]
        assert cells[4:] == [f"{float(row[m]):.3f}" for m in SUMMARY_METRICS]


def test_write_summary_writes_every_file_atomically(
    tmp_path: Path, records: list[RunRecord]
) -> None:
    out = tmp_path / "out"
    mixed = [*records, record("x", "0.5", evaluation="balanced")]
    paths = write_summary(out, mixed, "My sweep")
    names = [p.name for p in paths]
    assert names == [
        "summary.csv",
        "summary.md",
        "radar.png",
        "metrics_vs_seed.png",
        "metrics_vs_threshold.png",
        "report.html",
    ]
    assert sorted(p.name for p in out.iterdir()) == sorted(names)  # no temporary files left
    assert list(csv.DictReader(io.StringIO((out / "summary.csv").read_text()))) == summary_table(
        mixed
    )
    assert (out / "summary.md").read_text() == to_markdown(summary_table(mixed))
    assert (out / "radar.png").read_bytes().startswith(b"\x89PNG")
    page = (out / "report.html").read_text()
    assert page.count("data:image/png;base64,") == 3 and "My sweep" in page


def test_write_summary_refuses_empty_input(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="no runs"):
        write_summary(tmp_path, [], "t")
    none = RunRecord("a", "a", {"attack": "none"}, {})
    with pytest.raises(DataError, match="none of the 1 runs has attack results"):
        write_summary(tmp_path, [none], "t")
    assert list(tmp_path.iterdir()) == []
