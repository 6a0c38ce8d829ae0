"""`fedgen compare` on a real MLflow SQLite store: selection, output files and error messages."""

from __future__ import annotations

import csv
import datetime
import io
import warnings
from dataclasses import dataclass
from pathlib import Path

import pytest
from mlflow.entities import Metric, Param
from mlflow.tracking import MlflowClient

from fedgen.reporting.compare import by_sweep, main
from fedgen.reporting.report import SUMMARY_METRICS, RunRecord, summary_table, to_markdown


@dataclass(frozen=True)
class Store:
    uri: str
    sweep_a: Path
    sweep_b: Path
    jobs: dict[str, RunRecord]  # run name -> what was logged, for FINISHED job runs only


def _metrics(attacks: str, threshold: float, seed: int) -> dict[str, float]:
    out = {"fed/test_accuracy": 0.71}
    for k, attack in enumerate(attacks.split(",")):
        for j, m in enumerate(SUMMARY_METRICS):
            out[f"{attack}/{m}"] = 0.1 * k + threshold / 7 + seed / 1000 + j / 100
        out[f"{attack}/client_0/auc"] = 0.55
    return out


def _params(uri: str, threshold: str, seed: str, attack: str) -> dict[str, str]:
    return {
        "threshold": threshold,
        "seed": seed,
        "federation.num_clients": "5",
        "attack": attack,
        "evaluation": "paper",
        "tracking.uri": uri,
        "cache_dir": "null",
    }


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Store:
    """Two sweeps (each with its parent run), a lone run, a FAILED job and another experiment."""
    root = tmp_path_factory.mktemp("store")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    sweep_a, sweep_b = (root / "multirun" / "a").resolve(), (root / "multirun" / "b").resolve()
    for sweep in (sweep_a, sweep_b):
        sweep.mkdir(parents=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        client = MlflowClient(tracking_uri=uri)
        exp = client.create_experiment("fedgen", (root / "mlruns").as_uri())
        client.create_experiment("other", (root / "mlruns").as_uri())
        jobs: dict[str, RunRecord] = {}

        def log(
            name: str,
            params: dict[str, str],
            metrics: dict[str, float],
            tags: dict[str, str],
            status: str = "FINISHED",
        ) -> None:
            run = client.create_run(exp, tags=tags, run_name=name)
            run_id = run.info.run_id
            client.log_batch(
                run_id,
                metrics=[Metric(k, v + 0.25, 0, 0) for k, v in metrics.items()],
                params=[Param(k, v) for k, v in params.items()],
            )
            # the values at a later step: compare must use the latest value, not the first
            client.log_batch(run_id, metrics=[Metric(k, v, 1, 1) for k, v in metrics.items()])
            client.set_terminated(run_id, status)
            if status == "FINISHED" and tags.get("fedgen.role") != "sweep":
                # What compare reads back: the start time (UTC, seconds) and the sweep tag.
                start = datetime.datetime.fromtimestamp(run.info.start_time / 1000, datetime.UTC)
                started = start.replace(microsecond=0).isoformat()
                sweep_dir = tags.get("fedgen.sweep_dir", "")
                jobs[name] = RunRecord(run_id, name, params, metrics, started, sweep_dir)

        for sweep in (sweep_a, sweep_b):
            parent = {"fedgen.sweep_dir": str(sweep), "fedgen.role": "sweep"}
            log(f"sweep {sweep.name}", {}, {}, parent)
        for threshold in ("0.5", "0.45", "10"):
            params = _params(uri, threshold, "42", "mia,gmia")
            metrics = _metrics("mia,gmia", float(threshold), 42)
            log(f"a threshold={threshold}", params, metrics, {"fedgen.sweep_dir": str(sweep_a)})
        for seed in ("1", "2"):
            params = _params(uri, "0.5", seed, "gmia")
            log(
                f"b seed={seed}",
                params,
                _metrics("gmia", 0.5, int(seed)),
                {"fedgen.sweep_dir": str(sweep_b)},
            )
        params = _params(uri, "0.5", "3", "gmia")
        log("b failed", params, {}, {"fedgen.sweep_dir": str(sweep_b)}, status="FAILED")
        log("lone", _params(uri, "0.3", "42", "lia"), _metrics("lia", 0.3, 42), {})
    return Store(uri, sweep_a, sweep_b, jobs)


def _run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(argv)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def _records(store: Store, prefix: str) -> list[RunRecord]:
    return [r for name, r in store.jobs.items() if name.startswith(prefix)]


def test_sweep_dir_selects_its_finished_jobs(
    store: Store, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    argv = ["--tracking-uri", store.uri, "--sweep-dir", str(store.sweep_a), "--output", str(out)]
    code, stdout, stderr = _run(argv, capsys)
    assert code == 0, stderr
    assert stderr == ""
    expected = summary_table(_records(store, "a "))
    assert len(expected) == 6
    table = list(csv.DictReader(io.StringIO((out / "summary.csv").read_text())))
    assert table == expected
    assert [r["threshold"] for r in table[:3]] == ["0.45", "0.5", "10"]
    assert stdout.startswith(to_markdown(expected))
    written = [line for line in stdout.splitlines() if line.startswith(str(out))]
    assert [Path(p).name for p in written] == [
        "summary.csv",
        "summary.md",
        "metrics_vs_threshold.png",
        "prf_vs_threshold.png",
        "report.html",
    ]
    assert all(Path(p).is_file() for p in written)


def test_sweep_dir_drops_parent_and_failed_runs(
    store: Store, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = [
        "--tracking-uri",
        store.uri,
        "--sweep-dir",
        str(store.sweep_b),
        "--output",
        str(tmp_path),
    ]
    code, _, stderr = _run(argv, capsys)
    assert code == 0, stderr
    table = list(csv.DictReader(io.StringIO((tmp_path / "summary.csv").read_text())))
    assert [r["run_name"] for r in table] == ["b seed=1", "b seed=2"]
    assert table == summary_table(_records(store, "b "))
    # the same config under two seeds: one repeat group of n=2, never silently merged
    (group,) = list(csv.DictReader(io.StringIO((tmp_path / "repeats.csv").read_text())))
    assert (group["attack"], group["n_runs"], group["seeds"]) == ("gmia", "2", "1 2")


def test_relative_sweep_dir_is_resolved(
    store: Store,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.chdir(store.sweep_a.parent)
    code, _, stderr = _run(
        ["--tracking-uri", store.uri, "--sweep-dir", "b", "--output", str(tmp_path)], capsys
    )
    assert code == 0, stderr
    assert (tmp_path / "summary.csv").read_text().count("b seed=") == 2


def test_filter_combines_with_the_sweep(
    store: Store, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["--tracking-uri", store.uri, "--output", str(tmp_path)]
    code, _, stderr = _run([*argv, "--filter", "params.threshold = '0.5'"], capsys)
    assert code == 0, stderr
    table = list(csv.DictReader(io.StringIO((tmp_path / "summary.csv").read_text())))
    selected = [store.jobs[n] for n in ("a threshold=0.5", "b seed=1", "b seed=2")]
    assert table == summary_table(by_sweep(selected))
    assert sorted(r["sweep"] for r in table) == ["multirun/a"] * 2 + ["multirun/b"] * 2
    sweep = ["--sweep-dir", str(store.sweep_a), "--filter", "params.threshold = '0.5'"]
    code, _, stderr = _run([*argv, *sweep, "--force"], capsys)
    assert code == 0, stderr
    table = list(csv.DictReader(io.StringIO((tmp_path / "summary.csv").read_text())))
    assert table == summary_table([store.jobs["a threshold=0.5"]])


def test_whole_experiment_and_default_output(
    store: Store,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", store.uri)  # the default store comes from here
    code, _, stderr = _run([], capsys)
    assert code == 0, stderr
    table = list(csv.DictReader(io.StringIO((tmp_path / "compare" / "summary.csv").read_text())))
    assert table == summary_table(by_sweep(list(store.jobs.values())))
    assert {r["attack"] for r in table} == {"mia", "gmia", "lia"}
    lone = store.jobs["lone"].run_id
    assert {r["sweep"] for r in table} == {"multirun/a", "multirun/b", f"run {lone[:8]}"}
    assert (tmp_path / "compare" / "report.html").is_file()


def test_unknown_experiment_lists_those_there(
    store: Store, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["--tracking-uri", store.uri, "--experiment", "nope", "--output", str(tmp_path / "o")]
    code, stdout, stderr = _run(argv, capsys)
    assert code == 2
    assert stdout == ""
    assert stderr.count("\n") == 1
    assert stderr.startswith("fedgen: error: no experiment 'nope' in " + store.uri)
    assert "'fedgen'" in stderr and "'other'" in stderr
    assert not (tmp_path / "o").exists()


def test_empty_selection_names_the_filters(
    store: Store, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["--tracking-uri", store.uri, "--output", str(tmp_path)]
    sweep = ["--sweep-dir", str(store.sweep_a), "--filter", "params.seed = '1'"]
    code, _, stderr = _run([*argv, *sweep], capsys)
    assert code == 2
    assert stderr.startswith("fedgen: error: no runs to compare")
    assert str(store.sweep_a) in stderr and "params.seed = '1'" in stderr
    code, _, stderr = _run([*argv, "--experiment", "other"], capsys)
    assert code == 2 and "experiment 'other'" in stderr
    code, _, stderr = _run([*argv, "--filter", "params.seed = '3'"], capsys)
    assert code == 2 and "1 job runs matched, none FINISHED" in stderr
    assert list(tmp_path.iterdir()) == []


def test_bad_filter_reports_mlflows_message(
    store: Store, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = [
        "--tracking-uri",
        store.uri,
        "--filter",
        "params.threshold ~ 1",
        "--output",
        str(tmp_path),
    ]
    code, _, stderr = _run(argv, capsys)
    assert code == 2
    assert stderr.startswith("fedgen: error: bad --filter 'params.threshold ~ 1': ")
    assert stderr.count("\n") == 1


def test_missing_default_store_is_not_created(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    code, _, stderr = _run([], capsys)
    assert code == 2
    assert f"no MLflow store at {tmp_path.resolve() / 'mlflow.db'}" in stderr
    assert list(tmp_path.iterdir()) == []


def test_directories_select_the_sweeps_in_them(
    store: Store, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["--tracking-uri", store.uri, "--output", str(tmp_path)]
    code, _, stderr = _run([*argv, str(store.sweep_a.parent)], capsys)  # multirun/: a and b
    assert code == 0, stderr
    table = list(csv.DictReader(io.StringIO((tmp_path / "summary.csv").read_text())))
    jobs = [*_records(store, "a "), *_records(store, "b ")]
    assert table == summary_table(by_sweep(jobs))
    code, _, stderr = _run([*argv, "--force", str(store.sweep_b)], capsys)
    assert code == 0, stderr
    table = list(csv.DictReader(io.StringIO((tmp_path / "summary.csv").read_text())))
    assert table == summary_table(_records(store, "b "))


def test_an_output_directory_with_files_is_never_overwritten_silently(
    store: Store, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "compare"
    argv = ["--tracking-uri", store.uri, "--output", str(out)]
    code, _, stderr = _run([*argv, "--sweep-dir", str(store.sweep_b)], capsys)
    assert code == 0, stderr
    assert (out / "repeats.csv").is_file()  # sweep b repeats its configuration over seeds
    (out / "notes.txt").write_text("mine")
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    code, stdout, stderr = _run([*argv, "--sweep-dir", str(store.sweep_a)], capsys)
    assert code == 2 and stdout == ""
    assert stderr == (
        f"fedgen: error: --output {out} already holds files (an earlier compare?); pass "
        "another --output, or --force to replace them\n"
    )
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    # --force replaces the former compare's files: none outlives the new summary
    code, _, stderr = _run([*argv, "--sweep-dir", str(store.sweep_a), "--force"], capsys)
    assert code == 0, stderr
    assert not (out / "repeats.csv").exists()  # sweep a has no repeats
    assert (out / "notes.txt").read_text() == "mine"  # not a compare's file: kept
    table = list(csv.DictReader(io.StringIO((out / "summary.csv").read_text())))
    assert table == summary_table(_records(store, "a "))
    (tmp_path / "file").write_text("")
    code, _, stderr = _run([*argv[:2], "--output", str(tmp_path / "file"), "--force"], capsys)
    assert code == 2 and "is a file, not a directory" in stderr


@pytest.fixture(scope="module")
def twins(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, list[RunRecord]]:
    """The same two configurations (gmia at thresholds 0.3, 0.5, seed 42) in two sweeps."""
    root = tmp_path_factory.mktemp("twins")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    records = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        client = MlflowClient(tracking_uri=uri)
        exp = client.create_experiment("fedgen", (root / "mlruns").as_uri())
        for k, sweep in enumerate(("14-05-33", "15-10-02")):
            sweep_dir = str(root / "multirun" / "2026-12-02" / sweep)
            for threshold in ("0.3", "0.5"):
                params = _params(uri, threshold, "42", "gmia")
                metrics = _metrics("gmia", float(threshold), 42 + k)  # a rerun differs a bit
                run = client.create_run(exp, tags={"fedgen.sweep_dir": sweep_dir})
                client.log_batch(
                    run.info.run_id,
                    metrics=[Metric(m, v, 0, 0) for m, v in metrics.items()],
                    params=[Param(p, v) for p, v in params.items()],
                )
                client.set_terminated(run.info.run_id, "FINISHED")
                records.append(RunRecord(run.info.run_id, "", params, metrics, "", sweep_dir))
    return uri, records


def test_identical_configurations_of_two_sweeps_are_kept_apart_by_default(
    twins: tuple[str, list[RunRecord]], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    uri, records = twins
    code, _, stderr = _run(["--tracking-uri", uri, "--output", str(tmp_path)], capsys)
    assert code == 0 and stderr == ""
    table = list(csv.DictReader(io.StringIO((tmp_path / "summary.csv").read_text())))
    assert len(table) == 4 and len({r["run_id"] for r in table}) == 4
    assert all(r["started"] and r["sweep_dir"] for r in table)
    assert sorted((r["sweep"], r["threshold"]) for r in table) == [
        (f"2026-12-02/{s}", t) for s in ("14-05-33", "15-10-02") for t in ("0.3", "0.5")
    ]
    assert not (tmp_path / "repeats.csv").exists()  # nothing pooled
    page = (tmp_path / "report.html").read_text()
    assert "<th>sweep</th>" in page and "grouped by sweep" in page
    for record in records:
        assert f'<td class="run">{record.run_id[:8]}<br>' in page


def test_grouping_by_configuration_shows_the_sweeps_runs_as_repeats_and_warns(
    twins: tuple[str, list[RunRecord]], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    uri, records = twins
    argv = ["--tracking-uri", uri, "--output", str(tmp_path), "--group-by", "config"]
    code, _, stderr = _run(argv, capsys)
    assert code == 0
    assert stderr == (
        "fedgen: warning: 2 configuration(s) ran in 2 different sweeps or lone runs; "
        "--group-by config shows their 4 runs as repeats (n_runs, mean ± SD in repeats.csv), "
        "not as one run; --group-by sweep keeps them apart\n"
    )
    table = list(csv.DictReader(io.StringIO((tmp_path / "summary.csv").read_text())))
    assert len(table) == 4 and "sweep" not in table[0]  # every run still its own row
    repeats = list(csv.DictReader(io.StringIO((tmp_path / "repeats.csv").read_text())))
    assert [(r["threshold"], r["n_runs"], r["seeds"]) for r in repeats] == [
        ("0.3", "2", "42 42"),
        ("0.5", "2", "42 42"),
    ]
    for row in repeats:
        ids = {r.run_id for r in records if r.params["threshold"] == row["threshold"]}
        assert set(row["run_ids"].split()) == ids
        assert float(row["auc_sd"]) > 0  # two runs with their spread, not one run
    assert "2 configuration(s) ran in 2 different sweeps" in (tmp_path / "report.html").read_text()
