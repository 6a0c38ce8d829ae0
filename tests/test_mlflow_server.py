"""A real `mlflow server` on a store made by a tiny sweep shows the runs, metrics and figures."""

from __future__ import annotations

import html
import json
import os
import re
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from fedgen.tracking.trackers import UI_ADDRESS, ui_url
from tests.test_cli import TINY, fedgen
from tests.test_report import browser


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def sweep_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A store made by a tiny sweep (two jobs and their parent); its console in sweep.out."""
    tmp_path = tmp_path_factory.mktemp("store")
    out = fedgen(
        tmp_path, *TINY, "hydra.sweep.dir=s", "attack=gmia", "threshold=0.3,0.5", "--multirun"
    )
    assert out.returncode == 0, out.stderr
    (tmp_path / "sweep.out").write_text(out.stdout + out.stderr)
    return tmp_path


@pytest.fixture(scope="module")
def server(sweep_store: Path) -> Iterator[str]:
    port = _free_port()
    proc = subprocess.Popen(
        [
            sys.executable, "-m", "mlflow", "server",
            "--backend-store-uri", f"sqlite:///{sweep_store / 'mlflow.db'}",
            "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
        ],
        cwd=sweep_store,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                with urllib.request.urlopen(f"{url}/health", timeout=2) as reply:
                    if reply.status == 200:
                        break
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            assert proc.poll() is None, "mlflow server exited"
            assert time.monotonic() < deadline, "mlflow server did not start"
            time.sleep(0.5)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=30)


def _get(url: str, endpoint: str, **query: str) -> Any:
    with urllib.request.urlopen(
        f"{url}{endpoint}?{urllib.parse.urlencode(query)}", timeout=30
    ) as r:
        return json.load(r)


def _post(url: str, path: str, body: dict[str, Any]) -> Any:
    request = urllib.request.Request(
        f"{url}{path}",
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=30) as r:
        return json.load(r)


@pytest.mark.slow
def test_runs_metrics_and_figures_are_visible_through_the_rest_api(server: str) -> None:
    experiment = _get(server, "/api/2.0/mlflow/experiments/get-by-name", experiment_name="fedgen")
    exp_id = experiment["experiment"]["experiment_id"]
    runs = _post(server, "/api/2.0/mlflow/runs/search", {"experiment_ids": [exp_id]})["runs"]
    tags = [{t["key"]: t["value"] for t in r["data"].get("tags", [])} for r in runs]
    children = [r for r, t in zip(runs, tags, strict=True) if t.get("fedgen.role") != "sweep"]
    parents = [r for r, t in zip(runs, tags, strict=True) if t.get("fedgen.role") == "sweep"]
    assert len(children) == 2 and len(parents) == 1
    thresholds = set()
    for run in children:
        assert run["info"]["status"] == "FINISHED"
        params = {p["key"]: p["value"] for p in run["data"]["params"]}
        metrics = {m["key"]: m["value"] for m in run["data"]["metrics"]}
        thresholds.add(params["threshold"])
        assert params["attack"] == "gmia"
        (dataset,) = run["inputs"]["dataset_inputs"]  # the cohort, in the UI's Datasets column
        assert dataset["dataset"]["name"] == "synthetic" and len(dataset["dataset"]["digest"]) == 16
        assert 0.0 <= metrics["gmia/f1"] <= 1.0 and 0.0 <= metrics["gmia/auc"] <= 1.0
        assert not [k for k in metrics if "/client_" in k]  # in run.json, not in the UI's way
        run_id = run["info"]["run_id"]
        history = _get(
            server, "/api/2.0/mlflow/metrics/get-history", run_id=run_id, metric_key="fed/test_loss"
        )
        assert [m["step"] for m in history["metrics"]] == [1, 2]
        listed = _get(server, "/api/2.0/mlflow/artifacts/list", run_id=run_id, path="figures")
        names = {Path(f["path"]).name for f in listed["files"]}
        assert {"roc.png", "gradient_norm_histogram.png", "snp_pca.png"} <= names
        assert all(int(f["file_size"]) > 1000 for f in listed["files"])
    assert thresholds == {"0.3", "0.5"}
    # Each run's Description is its verdict; the parent names what the sweep varied, its best
    # AUC (a metric name of its own), and the sweep's verdicts.
    child_tags = [t for t in tags if t.get("fedgen.role") != "sweep"]
    assert all(t["mlflow.note.content"].startswith("- **gmia**: ") for t in child_tags)
    parent_params = {p["key"]: p["value"] for p in parents[0]["data"]["params"]}
    assert parent_params["threshold"] == "0.3,0.5"
    parent_metrics = {m["key"]: m["value"] for m in parents[0]["data"]["metrics"]}
    aucs = [{m["key"]: m["value"] for m in run["data"]["metrics"]}["gmia/auc"] for run in children]
    assert parent_metrics["sweep/gmia/auc_max"] == max(aucs)
    assert "gmia/auc" not in parent_metrics
    parent_tags = {t["key"]: t["value"] for t in parents[0]["data"]["tags"]}
    assert "**gmia**" in parent_tags["mlflow.note.content"]
    parent_id = parents[0]["info"]["run_id"]
    assert parents[0]["info"]["status"] == "FINISHED"
    listed = _get(server, "/api/2.0/mlflow/artifacts/list", run_id=parent_id, path="summary")
    names = {Path(f["path"]).name for f in listed["files"]}
    assert {"report.html", "summary.csv", "summary.md", "attack_logs.csv"} <= names


# Only on MLflow 3's GenAI landing page (an LLM-traces overview), never on the run list.
GENAI_LANDING = ("Token Usage", "Tokens per Trace", "Detect Issues")


def _visible_text(dom: str) -> str:
    dom = re.sub(r"<(script|style)\b.*?</\1>", " ", dom, flags=re.S)
    text = re.sub(r"<[^>]+>", " ", dom)
    return re.sub(r"\s+", " ", html.unescape(text))


def _render(url: str, found: str, screenshot: Path | None = None, size: str = "1400,800") -> str:
    """The text headless Chromium shows at ``url`` once the UI (a React app) has loaded."""
    flags = [found, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars"]
    flags += ["--virtual-time-budget=20000", f"--window-size={size}"]
    dom = subprocess.run(
        [*flags, "--dump-dom", url], capture_output=True, text=True, timeout=120, check=True
    ).stdout
    if screenshot is not None:
        screenshot.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            [*flags, f"--screenshot={screenshot}", url],
            capture_output=True,
            timeout=120,
            check=True,
        )
    return _visible_text(dom)


@pytest.mark.slow
def test_the_printed_ui_pages_list_the_runs_in_a_real_browser(
    sweep_store: Path, server: str
) -> None:
    found = browser()
    if found is None:
        pytest.skip("no headless Chromium (apt-get install chromium-headless-shell)")
    # FEDGEN_UI_CHECK_DIR keeps screenshots of the run list and the sweep's report (make ui-check).
    keep = os.environ.get("FEDGEN_UI_CHECK_DIR")
    shots = Path(keep).resolve() if keep else None
    experiment = _get(server, "/api/2.0/mlflow/experiments/get-by-name", experiment_name="fedgen")
    exp_id = experiment["experiment"]["experiment_id"]
    runs = _post(server, "/api/2.0/mlflow/runs/search", {"experiment_ids": [exp_id]})["runs"]
    names = {r["info"]["run_name"] for r in runs}
    parent = [r["info"]["run_name"] for r in runs if r["info"]["run_name"].startswith("sweep ")]
    jobs = names - set(parent)
    assert len(jobs) == 2 and len(parent) == 1
    assert all(n.startswith("gmia t=0.") or "· gmia t=0." in n for n in jobs)
    # The sweep's console names the page of its runs: every job one row, in model-training mode.
    console = (sweep_store / "sweep.out").read_text()
    printed = re.search(r"see its runs: .* then open (\S+)", console)
    assert printed is not None, console[-2000:]
    url = printed.group(1).replace(UI_ADDRESS, server)
    assert url.startswith(f"{server}/#/experiments/{exp_id}/runs?workflowType=machine_learning&")
    shown = _render(url, found, shots / "mlflow_runs.png" if shots else None)
    assert "Run Name" in shown and "3 matching runs" in shown, shown[:3000]
    for name in names:
        assert name in shown, (name, shown[:3000])
    assert "synthetic" in shown, shown[:3000]  # the Datasets column names the cohort
    assert not [w for w in GENAI_LANDING if w in shown], shown[:3000]
    # The README's run-list URL: the sweep's parent run, not the GenAI traces overview.
    shown = _render(ui_url(exp_id, address=server), found)
    assert "Run Name" in shown and parent[0] in shown, shown[:3000]
    assert not [w for w in GENAI_LANDING if w in shown], shown[:3000]
    # ...which is where the experiment opens without the URL's workflowType: the check can fail.
    shown = _render(f"{server}/#/experiments/{exp_id}", found)
    assert [w for w in GENAI_LANDING if w in shown] and parent[0] not in shown
    if shots is not None:  # the sweep's leakage report, as a colleague opens it
        _render(
            (sweep_store / "s" / "report.html").as_uri(), found, shots / "report.png", "1100,1700"
        )
