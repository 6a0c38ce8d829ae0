"""A real `mlflow server` on a store made by a tiny sweep shows the runs, metrics and figures."""

from __future__ import annotations

import json
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

from tests.test_cli import TINY, fedgen


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture()
def sweep_store(tmp_path: Path) -> Path:
    out = fedgen(
        tmp_path, *TINY, "hydra.sweep.dir=s", "attack=gmia", "threshold=0.3,0.5", "--multirun"
    )
    assert out.returncode == 0, out.stderr
    return tmp_path


@pytest.fixture()
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
        assert 0.0 <= metrics["gmia/f1"] <= 1.0 and 0.0 <= metrics["gmia/auc"] <= 1.0
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
    parent_id = parents[0]["info"]["run_id"]
    assert parents[0]["info"]["status"] == "FINISHED"
    listed = _get(server, "/api/2.0/mlflow/artifacts/list", run_id=parent_id, path="summary")
    names = {Path(f["path"]).name for f in listed["files"]}
    assert {"report.html", "summary.csv", "summary.md", "attack_logs.csv"} <= names
