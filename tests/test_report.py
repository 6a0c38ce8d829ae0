"""Cross-run summaries: the table's columns and order, CSV/Markdown, plots' data, HTML, files."""

from __future__ import annotations

import base64
import csv
import html
import io
import json
import os
import random
import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

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
    prf_vs_threshold,
    run_figure_names,
    summary_table,
    swept_params,
    to_csv,
    to_markdown,
    write_run_report,
    write_summary,
)
from fedgen.reporting.verdict import caption

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
    assert list(table[0]) == [
        "run_name", "run_id", "sweep_dir", "started", "attack", "seed", "threshold",
        *SUMMARY_METRICS,
    ]  # fmt: skip
    for m in ("member_share", "auc_ci_low", "auc_ci_high", "tpr_at_fpr_0.01", "tpr_at_fpr_0.001"):
        assert m in table[0]
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
    assert row["run_id"] == "a" and row["started"] == row["sweep_dir"] == ""
    # threshold is a column even when it is not swept: P/R/F1 are at it
    (one,) = summary_table([a])
    assert one["threshold"] == "0.5"


def test_csv_keeps_full_repr_and_markdown_rounds(records: list[RunRecord]) -> None:
    table = summary_table(records)
    parsed = list(csv.DictReader(io.StringIO(to_csv(table))))
    assert parsed == table
    head = "run_name,run_id,sweep_dir,started,attack,seed,threshold,"
    assert to_csv(table).splitlines()[0] == head + ",".join(SUMMARY_METRICS)
    lines = to_markdown(table).splitlines()
    assert lines[0] == "| " + " | ".join([*head.split(",")[:-1], *SUMMARY_METRICS]) + " |"
    assert lines[1] == "|---|---|---|---|---|---|---|" + "---:|" * len(SUMMARY_METRICS)
    assert len(lines) == 2 + len(table)
    first = table[0]
    cells = [first["run_name"], first["run_id"], "", "", "mia", "7", "0.45"]
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
    dated = RunRecord("id", "n", {}, {}, started="2026-01-02T03:04:05+00:00", sweep_dir="/s")
    path.write_text(dump_run_json(dated))
    assert load_run_json(path) == dated
    assert json.loads(path.read_text())["started"] == "2026-01-02T03:04:05+00:00"


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
        (
            '{"run_id": "x", "run_name": "y", "params": {}, "metrics": {}, "started": 1}',
            "not a run record",
        ),
        (
            '{"run_id": "x", "run_name": "y", "params": {}, "metrics": {}, "other": ""}',
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


def _with_ci(rec: RunRecord, low: float, high: float) -> RunRecord:
    metrics = dict(rec.metrics)
    for attack in rec.params["attack"].split(","):
        metrics[f"{attack}/auc_ci_low"] = metrics[f"{attack}/auc"] - low
        metrics[f"{attack}/auc_ci_high"] = metrics[f"{attack}/auc"] + high
    return RunRecord(rec.run_id, rec.run_name, rec.params, metrics)


def test_metric_vs_param_draws_one_line_per_threshold_never_averaging() -> None:
    runs = [
        record(f"r{n}{t}{s}", t, seed=s, **{"federation.num_clients": n})
        for n in ("2", "5", "10")
        for t in ("0.3", "0.5")
        for s in ("1", "2", "3")
    ]
    plot = metric_vs_param(runs, "federation.num_clients", "18 runs")
    assert plot.name == "metrics_vs_federation_num_clients"
    # two attacks x two thresholds: four lines; seeds are aggregated, not lines
    assert sorted(plot.data) == [
        "gmia threshold=0.3", "gmia threshold=0.5", "mia threshold=0.3", "mia threshold=0.5",
    ]  # fmt: skip
    for label, s in plot.data.items():
        attack, threshold = s["attack"], s["fixed"]["threshold"]
        assert label == f"{attack} threshold={threshold}"
        np.testing.assert_array_equal(s["x"], [2.0, 5.0, 10.0])
        np.testing.assert_array_equal(s["n"], [3, 3, 3])
        for m in ("auc", "advantage", "tpr_at_fpr_0.01"):
            for k, n in enumerate(("2", "5", "10")):
                values = [
                    r.metrics[f"{attack}/{m}"]
                    for r in runs
                    if r.params["threshold"] == threshold
                    and r.params["federation.num_clients"] == n
                ]
                assert len(values) == 3
                assert s[m][k] == pytest.approx(np.mean(values), abs=1e-12)
                assert s[f"{m}_sd"][k] == pytest.approx(np.std(values, ddof=1), abs=1e-12)
                assert s[f"{m}_bar_high"][k] == pytest.approx(s[m][k] + s[f"{m}_sd"][k])
    # the two thresholds' lines differ (threshold enters the fake metrics): no mean over them
    assert not np.allclose(
        plot.data["mia threshold=0.3"]["auc"], plot.data["mia threshold=0.5"]["auc"]
    )
    assert "n=3" in plot.figure.axes[0].get_legend_handles_labels()[1][0]
    with pytest.raises(DataError, match="evaluation"):
        metric_vs_param([record("a", "0.1", evaluation="x"), record("b", "0.2")], "evaluation", "")
    with pytest.raises(DataError, match="seed is a repeat dimension"):
        metric_vs_param(runs, "seed", "")


def test_metric_vs_param_bars_are_the_bootstrap_interval_of_a_single_run() -> None:
    runs = [_with_ci(record("a", "0.3"), 0.05, 0.07), _with_ci(record("b", "0.5"), 0.01, 0.02)]
    plot = metric_vs_param(runs, "threshold", "")
    assert sorted(plot.data) == ["gmia", "mia"]  # nothing else differs
    s = plot.data["mia"]
    np.testing.assert_array_equal(s["n"], [1, 1])
    assert np.isnan(s["auc_sd"]).all()
    np.testing.assert_allclose(s["auc_bar_low"], s["auc"] - [0.05, 0.01])
    np.testing.assert_allclose(s["auc_bar_high"], s["auc"] + [0.07, 0.02])
    np.testing.assert_allclose(s["auc_ci_low"], s["auc_bar_low"])
    assert np.isnan(s["advantage_bar_low"]).all()  # no interval, no repeats: no bar


def test_prf_vs_threshold_keeps_other_params_apart(records: list[RunRecord]) -> None:
    runs = [*records, *(record(f"e{r.run_id}", r.params["threshold"], seed=r.params["seed"],
                                evaluation="balanced") for r in records)]  # fmt: skip
    plot = prf_vs_threshold(runs, "")
    assert plot.name == "prf_vs_threshold"
    assert sorted(plot.data) == [
        "gmia evaluation=balanced", "gmia evaluation=paper",
        "mia evaluation=balanced", "mia evaluation=paper",
    ]  # fmt: skip
    s = plot.data["mia evaluation=paper"]
    np.testing.assert_array_equal(s["x"], [0.45, 0.5, 10.0])
    np.testing.assert_array_equal(s["n"], [2, 2, 2])  # seeds 7 and 42
    for m in ("precision", "recall", "f1", "trivial_f1"):
        expected = [
            np.mean([r.metrics[f"mia/{m}"] for r in records if float(r.params["threshold"]) == x])
            for x in (0.45, 0.5, 10.0)
        ]
        np.testing.assert_allclose(s[m], expected, rtol=0, atol=1e-12)
    styles = [line.get_linestyle() for line in plot.figure.axes[2].get_lines()]
    assert styles.count("--") == 4  # one dashed trivial-F1 line per line


def test_html_report_is_self_contained(records: list[RunRecord]) -> None:
    plots = [metric_vs_param(records, "threshold", ""), prf_vs_threshold(records, "")]
    page = html_report("Sweep <1>", records, plots, notes="from a & b")
    assert page.startswith("<!DOCTYPE html>")
    assert "Sweep &lt;1&gt;" in page and "from a &amp; b" in page
    assert not re.search(r"(src|href)=\"(https?:)?//", page)
    assert "<link" not in page and "<script" not in page and "@import" not in page
    images = re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', page)
    assert len(images) == page.count("data:image/png;base64,") == 2
    assert all(base64.b64decode(i).startswith(b"\x89PNG") for i in images)
    # Captions are sentences, numbered, never the file names.
    captions = re.findall(r"<figcaption>(.*?)</figcaption>", page)
    assert [c.split("</b> ")[0] for c in captions] == ["<b>Figure 1.", "<b>Figure 2."]
    assert captions[0].endswith(html.escape(caption("metrics_vs_threshold")))
    assert captions[1].endswith(html.escape(caption("prf_vs_threshold")))
    assert all("_" not in c for c in captions)
    # The leakage table: who, the swept params, the threshold, then every number.
    table = summary_table(records)
    body = page[page.index('<table class="runs">') :]
    body = body[body.index("<tbody>") : body.index("</tbody>")]
    rows = re.findall(r"<tr[^>]*>(.*?)</tr>", body)
    assert len(rows) == len(table)
    for html_row, row in zip(rows, table, strict=True):
        cells = re.findall(r"<td[^>]*>(.*?)</td>", html_row)
        assert cells[0] == row["attack"] and cells[1] == ""  # no observer param: unknown
        assert cells[2:4] == [row["seed"], row["threshold"]]
        low, auc, high = (float(row[m]) for m in ("auc_ci_low", "auc", "auc_ci_high"))
        assert cells[4] == f"{auc:.3f} [{low:.3f}, {high:.3f}]"
        shown = ("advantage", "tpr_at_fpr_0.01", "tpr_at_fpr_0.001", "member_share")
        shown += ("trivial_f1", "precision", "recall", "f1")
        assert cells[5:-1] == [f"{float(row[m]):.3f}" for m in shown]
        assert cells[-1] == row["run_id"][:8]  # and its start time, when known


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
        "repeats.csv",  # seeds 7 and 42 of each threshold
        "metrics_vs_threshold.png",
        "prf_vs_threshold.png",
        "report.html",
    ]
    assert sorted(p.name for p in out.iterdir()) == sorted(names)  # no temporary files left
    assert list(csv.DictReader(io.StringIO((out / "summary.csv").read_text()))) == summary_table(
        mixed
    )
    md = (out / "summary.md").read_text()
    assert md.startswith(to_markdown(summary_table(mixed)))
    assert "## Repeats" in md
    assert not (out / "radar.png").exists()
    page = (out / "report.html").read_text()
    assert page.count("data:image/png;base64,") == 2 and "My sweep" in page
    assert '<table class="repeats">' in page


def test_write_summary_refuses_empty_input(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="no runs"):
        write_summary(tmp_path, [], "t")
    none = RunRecord("a", "a", {"attack": "none"}, {})
    with pytest.raises(DataError, match="none of the 1 runs has attack results"):
        write_summary(tmp_path, [none], "t")
    assert list(tmp_path.iterdir()) == []


def test_an_attack_threshold_that_follows_the_top_level_one_is_not_a_swept_param() -> None:
    def record(t: str, own: str) -> RunRecord:
        params = {"threshold": t, "attack": "gmia", "attack.gmia.threshold": own}
        return RunRecord(f"id{t}{own}", f"t={t}", params, {"gmia/auc": 0.5})

    following = [record("0.3", "0.3"), record("0.5", "0.5")]
    assert swept_params(following) == ["threshold"]
    pinned = [record("0.3", "0.4"), record("0.5", "0.4"), record("0.5", "0.6")]
    assert swept_params(pinned) == ["attack.gmia.threshold", "threshold"]


def test_run_json_keeps_the_fedgen_version_and_commit_and_reads_older_files(
    tmp_path: Path,
) -> None:
    rec = RunRecord("id", "n", {}, {}, version="0.1.0", git_commit="abc123")
    path = tmp_path / "run.json"
    path.write_text(dump_run_json(rec))
    assert load_run_json(path) == rec
    path.write_text('{"run_id": "x", "run_name": "y", "params": {}, "metrics": {}}')
    old = load_run_json(path)
    assert (old.version, old.git_commit) == ("", "")


class PageCheck(HTMLParser):
    """Balanced tags, every image loadable offline, every wide table in a scrolling wrapper."""

    VOID = frozenset({"meta", "img", "br", "hr", "link", "input", "source"})

    def __init__(self, folder: Path) -> None:
        super().__init__()
        self.folder = folder
        self.stack: list[tuple[str, str]] = []
        self.errors: list[str] = []
        self.images: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attr = {k: v or "" for k, v in attrs}
        if tag == "img":
            src = attr.get("src", "")
            self.images.append(src)
            if not (src.startswith("data:image/png;base64,") or (self.folder / src).is_file()):
                self.errors.append(f"image {src[:40]!r} neither embedded nor beside the page")
            if not attr.get("alt"):
                self.errors.append(f"image {src[:40]!r} has no alt text")
        wrapped = any(t == "div" and "wide" in c.split() for t, c in self.stack)
        if tag == "table" and attr.get("class") != "settings" and not wrapped:
            self.errors.append(f"table {attr.get('class')!r} outside a div.wide")
        if tag not in self.VOID:
            self.stack.append((tag, attr.get("class", "")))

    def handle_endtag(self, tag: str) -> None:
        if tag in self.VOID:
            return
        if not self.stack or self.stack[-1][0] != tag:
            self.errors.append(f"</{tag}> closes {self.stack[-1:] or 'nothing'}")
            return
        self.stack.pop()


def check_page(path: Path) -> PageCheck:
    checker = PageCheck(path.parent)
    checker.feed(path.read_text(encoding="utf-8"))
    checker.close()
    if checker.stack:
        checker.errors.append(f"unclosed: {checker.stack}")
    return checker


def wide_sweep() -> list[RunRecord]:
    """Runs swept over a defense with a long name, thresholds and seeds, two observers."""
    out = []
    for sigma in ("0", "0.5", "1"):
        for t in ("0.3", "0.5"):
            for seed in ("1", "2"):
                extra = {
                    "defense.client_dp.noise_multiplier": sigma,
                    "defense.client_dp._target_": "fedgen.defenses.ClientDP",
                    "attack.mia.observer": "server",
                    "attack.gmia.observer": "public",
                    "dataset.n_individuals": "400",
                    "dataset.n_snps": "100",
                    "federation.num_rounds": "3",
                    "model.name": "sgd_logistic",
                }
                rec = record(f"{sigma}{t}{seed}", t, seed=seed, **extra)
                out.append(
                    RunRecord(rec.run_id, rec.run_name, rec.params, rec.metrics, version="0.1.0")
                )
    return out


def test_the_sweep_report_has_header_verdicts_table_and_captions(tmp_path: Path) -> None:
    records = wide_sweep()
    write_summary(tmp_path, records, "A sweep")
    page = (tmp_path / "report.html").read_text()
    for label in ("Cohort (individuals)", "SNPs", "Clients", "Rounds", "Model", "Evaluation pool"):
        assert f"<th>{label}</th>" in page
    for label in ("Defenses", "Seeds", "fedgen version", "git commit"):
        assert f"<th>{label}</th>" in page
    assert "<td>client_dp (noise_multiplier=swept)</td>" in page
    assert "<li>defense.client_dp.noise_multiplier: 0, 0.5, 1</li>" in page
    # 3 sigmas x 2 seeds x 2 thresholds: these synthetic AUCs depend on the threshold
    assert page.count("At 1% false positives the server identifies") == 12
    assert page.count("At 1% false positives the public (anyone") == 12
    assert "<li>defense.client_dp.noise_multiplier=0.5, seed=1, threshold=0.3: At 1%" in page
    assert "<b>Figure 1.</b> AUC, advantage and true-positive rate" in page
    assert html.escape(caption("metrics_vs_threshold")) in page
    assert "<h2>Every setting the runs share</h2>" in page
    check = check_page(tmp_path / "report.html")
    assert check.errors == [] and len(check.images) == 3  # vs sigma, vs threshold, P/R/F1


def test_the_run_report_links_its_figures_and_dates_itself(tmp_path: Path) -> None:
    rec = wide_sweep()[0]
    params = {**rec.params, "attack.gmia._target_": "fedgen.attacks.GradientNormMIA"}
    rec = RunRecord(
        "r", "one run", params, rec.metrics, "2026-01-02T03:04:05+00:00", "", "0.1.0", "abc"
    )
    path = write_run_report(tmp_path, rec)
    page = path.read_text()
    assert "<td>abc</td>" in page and "<td>2026-01-02T03:04:05+00:00</td>" in page
    linked = re.findall(r'src="(figures/[^"]+)"', page)
    assert linked == [f"figures/{n}.png" for n in run_figure_names(rec)]
    assert "figures/gradient_norm_histogram.png" in linked
    assert "<b>Figure 1.</b> ROC curves" in page
    assert "figures/" not in write_run_report(tmp_path, rec, figures=False).read_text()
    assert check_page(path).errors == []  # no figures linked any more


BROWSERS = ("chromium-headless-shell", "chromium", "chromium-browser", "google-chrome")
PROBE = """<script>
addEventListener("load", () => {
  const root = document.documentElement;
  const broken = [...document.images].filter(i => !(i.complete && i.naturalWidth > 0));
  const wide = [...document.querySelectorAll("table, figure, img, pre, ul")]
    .filter(e => e.getBoundingClientRect().right > root.clientWidth + 1);
  const probe = document.createElement("pre");
  probe.id = "probe";
  probe.textContent = JSON.stringify({
    images: document.images.length,
    broken: broken.map(i => i.getAttribute("src").slice(0, 40)),
    overflow: root.scrollWidth - root.clientWidth,
    wide: wide.map(e => e.tagName + "." + e.className),
  });
  document.body.append(probe);
});
</script>"""


def browser() -> str | None:
    return next((found for b in BROWSERS if (found := shutil.which(b))), None)


def render_check(page: Path, out: Path, width: int = 700) -> dict[str, Any]:
    """Render ``page`` in headless Chromium: what a probe saw at ``width`` px (A4's printable
    width is ~690 px), a screenshot and a PDF (print media) in ``out``."""
    found = browser()
    if found is None:
        pytest.skip("no headless Chromium (apt-get install chromium-headless-shell)")
    out.mkdir(parents=True, exist_ok=True)
    probe = page.with_name(f".probe-{page.name}")  # beside the page: its relative links hold
    probe.write_text(page.read_text().replace("</body>", PROBE + "</body>"))
    flags = [found, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars"]
    flags += ["--virtual-time-budget=10000", f"--window-size={width},1000"]
    try:
        dom = subprocess.run(
            [*flags, "--dump-dom", probe.as_uri()],
            capture_output=True, text=True, timeout=120, check=True,
        ).stdout  # fmt: skip
    finally:
        probe.unlink()
    stem = page.stem if page.parent.name == "" else f"{page.parent.name}-{page.stem}"
    for extra in (f"--screenshot={out / stem}.png", f"--print-to-pdf={out / stem}.pdf"):
        subprocess.run(
            [*flags, "--no-pdf-header-footer", extra, page.as_uri()],
            capture_output=True, timeout=120, check=True,
        )  # fmt: skip
    found_probe = re.search(r'<pre id="probe">(.*?)</pre>', dom, re.S)
    assert found_probe is not None, dom[-2000:]
    result: dict[str, Any] = json.loads(html.unescape(found_probe.group(1)))
    pdf = (out / f"{stem}.pdf").read_bytes()
    result["pdf_pages"] = len(re.findall(rb"/Type\s*/Page\b", pdf))
    result["screenshot"] = (out / f"{stem}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    return result


def test_the_sweep_report_renders_and_prints_in_a_real_browser(tmp_path: Path) -> None:
    # FEDGEN_REPORT_CHECK_DIR keeps the screenshot and PDF (make report-check).
    out = Path(os.environ.get("FEDGEN_REPORT_CHECK_DIR") or tmp_path / "rendered")
    write_summary(tmp_path / "sweep", wide_sweep(), "A sweep")
    seen = render_check(tmp_path / "sweep" / "report.html", out)
    assert seen["images"] == 3 and seen["broken"] == []
    assert seen["overflow"] <= 0 and seen["wide"] == []  # nothing wider than the paper
    assert seen["pdf_pages"] >= 2 and seen["screenshot"]
