"""`fedgen compare`: the finished runs of an MLflow experiment (a sweep, a filter) side by side."""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime
import logging
import sys
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from fedgen.core.errors import FedgenError
from fedgen.reporting.repeats import RepeatGroup, repeat_groups
from fedgen.reporting.report import RunRecord, summary_table, to_markdown, write_summary
from fedgen.tracking.liveness import reap_dead_runs
from fedgen.tracking.trackers import resolve_uri, sqlite_path

SWEEP_TAG = "fedgen.sweep_dir"
ROLE_TAG = "fedgen.role"
PAGE_SIZE = 1000
GROUP_BY = ("sweep", "config")
SWEEP_PARAM = "sweep"
# What write_summary writes: what --force removes first, so no former file outlives it.
OUTPUT_FILES = (
    "summary.csv",
    "summary.md",
    "repeats.csv",
    "frontier.csv",
    "report.html",
    "metrics_vs_*.png",
    "prf_vs_threshold.png",
    "privacy_utility_frontier.png",
)


class CompareError(FedgenError):
    """The runs to compare could not be selected."""


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """The command line of ``fedgen compare``."""
    parser = argparse.ArgumentParser(
        prog="fedgen compare",
        description="Compare the finished runs of an MLflow experiment: a table, plots and "
        "one self-contained HTML report.",
    )
    parser.add_argument("--experiment", default="fedgen", help="MLflow experiment (fedgen)")
    parser.add_argument(
        "--tracking-uri",
        help="MLflow store (default: $MLFLOW_TRACKING_URI, else ./mlflow.db as fedgen uses)",
    )
    parser.add_argument(
        "sweeps",
        nargs="*",
        type=Path,
        metavar="DIR",
        help="only the jobs of the sweeps in these directories (a sweep's directory, or one "
        "above several, e.g. multirun/)",
    )
    parser.add_argument("--sweep-dir", type=Path, help="only the jobs of this --multirun sweep")
    parser.add_argument("--filter", help="MLflow search filter, e.g. \"params.threshold = '0.5'\"")
    parser.add_argument(
        "--group-by",
        choices=GROUP_BY,
        default="sweep",
        help="sweep (default): runs of different sweeps (or lone runs) are never pooled, a "
        "'sweep' column tells them apart; config: runs of the same configuration are one "
        "group whatever their sweep, shown as repeats (n, mean ± SD), with a warning when "
        "that merges sweeps",
    )
    parser.add_argument(
        "--output",
        type=Path,
        default=Path("compare"),
        help="output directory (./compare); one that holds files already is an error, "
        "never overwritten, unless --force",
    )
    parser.add_argument(
        "--force",
        action="store_true",
        help="write into an --output directory that holds files, replacing a former "
        "compare's files there",
    )
    return parser.parse_args(argv)


def check_output(directory: Path, force: bool) -> None:
    """Refuse an output directory that holds files, unless ``force``; then remove the files
    an earlier ``fedgen compare`` wrote there (none of them can outlive the new summary).

    Raises
    ------
    CompareError
        If ``directory`` is a file, or holds files and ``force`` is false.
    """
    if directory.exists() and not directory.is_dir():
        raise CompareError(f"--output {directory} is a file, not a directory")
    if not directory.is_dir() or not any(directory.iterdir()):
        return
    if not force:
        raise CompareError(
            f"--output {directory} already holds files (an earlier compare?); pass another "
            "--output, or --force to replace them"
        )
    for pattern in OUTPUT_FILES:
        for path in directory.glob(pattern):
            if path.is_file():
                path.unlink()


def sweep_label(record: RunRecord) -> str:
    """Which sweep a run belongs to: its sweep directory, or ``run <id>`` for a lone run."""
    return record.sweep_dir or f"run {record.run_id[:8]}"


def by_sweep(records: Sequence[RunRecord]) -> list[RunRecord]:
    """``records`` with a ``sweep`` param naming each run's sweep, when they span several.

    The param makes every run of one sweep a configuration of its own: the summary's table,
    repeat groups and lines then never pool runs of different sweeps. A sweep is named by the
    last two parts of its directory (``2026-12-02/14-05-33``), in full if those clash.
    """
    labels = {sweep_label(r) for r in records}
    if len(labels) < 2:
        return list(records)
    short = {
        lab: lab if lab.startswith("run ") else "/".join(Path(lab).parts[-2:]) for lab in labels
    }
    if len(set(short.values())) < len(short):
        short = {lab: lab for lab in labels}
    return [
        dataclasses.replace(r, params={**r.params, SWEEP_PARAM: short[sweep_label(r)]})
        for r in records
    ]


def merged_sweeps(records: Sequence[RunRecord]) -> list[RepeatGroup]:
    """The repeat groups (attack and configuration) whose runs come from several sweeps."""
    return [g for g in repeat_groups(records) if len({sweep_label(r) for r in g.records}) > 1]


def merge_warning(records: Sequence[RunRecord]) -> str | None:
    """One line saying which identical configurations of different sweeps were merged."""
    merged = merged_sweeps(records)
    if not merged:
        return None
    configs = {g.params for g in merged}
    sweeps = {sweep_label(r) for g in merged for r in g.records}
    runs = {r.run_id for g in merged for r in g.records}
    return (
        f"fedgen: warning: {len(configs)} configuration(s) ran in {len(sweeps)} different "
        f"sweeps or lone runs; --group-by config shows their {len(runs)} runs as repeats "
        "(n_runs, mean ± SD in repeats.csv), not as one run; --group-by sweep keeps them apart"
    )


@contextmanager
def _quiet() -> Iterator[None]:
    """Hide MLflow's and Alembic's log lines and Python warnings while MLflow is in use."""
    loggers = [logging.getLogger(name) for name in ("mlflow", "alembic")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        for lg, level in zip(loggers, levels, strict=True):
            lg.setLevel(level)


def _experiment_id(client: Any, name: str, uri: str) -> str:
    found = client.get_experiment_by_name(name)
    if found is not None:
        return str(found.experiment_id)
    names = sorted(e.name for e in client.search_experiments())
    there = ", ".join(repr(n) for n in names) if names else "none"
    raise CompareError(f"no experiment {name!r} in {uri} (experiments there: {there})")


def _search(client: Any, experiment_id: str, filter_string: str, user: str | None) -> list[Any]:
    """Every run matching ``filter_string``, page by page."""
    from mlflow.exceptions import MlflowException

    runs: list[Any] = []
    token = None
    while True:
        try:
            page = client.search_runs(
                [experiment_id],
                filter_string=filter_string,
                max_results=PAGE_SIZE,
                order_by=["attributes.start_time ASC"],
                page_token=token,
            )
        except MlflowException as exc:
            if user and exc.error_code == "INVALID_PARAMETER_VALUE":
                raise CompareError(f"bad --filter {user!r}: {exc.message}") from None
            raise CompareError(f"cannot search the runs: {exc.message}") from None
        runs.extend(page)
        token = page.token
        if not token:
            return runs


def select_runs(
    uri: str,
    experiment: str,
    sweep_dir: Path | None,
    user_filter: str | None,
    under: Sequence[Path] = (),
) -> list[RunRecord]:
    """The FINISHED job runs (no sweep parents) of ``experiment`` matching the selection.

    Parameters
    ----------
    uri : str
        MLflow tracking URI; a ``sqlite:///`` store must exist (it is never created here).
    experiment : str
        Experiment name.
    sweep_dir : Path, optional
        Keep runs whose ``fedgen.sweep_dir`` tag is this directory (resolved).
    user_filter : str, optional
        An MLflow search filter string, ANDed with the sweep selection.
    under : sequence of Path
        If given, keep runs of the sweeps in (or below) one of these directories.

    Returns
    -------
    list of RunRecord
        Params and latest metrics of each run, in start-time order.

    Raises
    ------
    CompareError
        Unknown experiment, a bad filter, an unreadable store or an empty selection.
    """
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    db = sqlite_path(uri)
    if db is not None and not db.is_file():
        raise CompareError(f"no MLflow store at {db}; run fedgen first or pass --tracking-uri")
    try:
        client = MlflowClient(tracking_uri=uri)
        experiment_id = _experiment_id(client, experiment, uri)
    except MlflowException as exc:
        raise CompareError(f"cannot read the MLflow store {uri}: {exc.message}") from None
    # Runs of this host whose process died (killed) are closed as FAILED, not left RUNNING.
    with contextlib.suppress(MlflowException):  # a read-only store can still be compared
        reap_dead_runs(client)
    sweep = str(sweep_dir.resolve()) if sweep_dir is not None else None
    clauses = [user_filter.strip()] if user_filter and user_filter.strip() else []
    if sweep is not None and "'" not in sweep:
        clauses.append(f"tags.`{SWEEP_TAG}` = '{sweep}'")
    runs = _search(client, experiment_id, " and ".join(clauses), user_filter)
    if sweep is not None:
        runs = [r for r in runs if r.data.tags.get(SWEEP_TAG) == sweep]
    if under:
        tops = [str(d.resolve()) for d in under]
        runs = [r for r in runs if _inside(r.data.tags.get(SWEEP_TAG, ""), tops)]
    jobs = [r for r in runs if r.data.tags.get(ROLE_TAG) != "sweep"]
    finished = [r for r in jobs if r.info.status == "FINISHED"]
    if not finished:
        applied = [f"experiment {experiment!r} in {uri}"]
        applied += [f"--sweep-dir {sweep}"] if sweep is not None else []
        applied += [f"sweeps in {', '.join(str(d.resolve()) for d in under)}"] if under else []
        applied += [f"--filter {user_filter!r}"] if user_filter else []
        skipped = f"{len(jobs)} job runs matched, none FINISHED" if jobs else "no job runs matched"
        raise CompareError(f"no runs to compare ({skipped}); selection: {', '.join(applied)}")
    return [
        RunRecord(
            run_id=str(r.info.run_id),
            run_name=str(r.info.run_name or r.data.tags.get("mlflow.runName", "")),
            params={str(k): str(v) for k, v in r.data.params.items()},
            metrics={str(k): float(v) for k, v in r.data.metrics.items()},
            started=_iso(r.info.start_time),
            sweep_dir=str(r.data.tags.get("fedgen.sweep_dir", "")),
            version=str(r.data.tags.get("fedgen.version", "")),
            git_commit=str(r.data.tags.get("fedgen.git_commit", "")),
        )
        for r in finished
    ]


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``fedgen compare``: select runs, write the summary files, print the table and paths.

    Parameters
    ----------
    argv : sequence of str, optional
        The arguments after ``compare`` (default: ``sys.argv[1:]``).

    Returns
    -------
    int
        0 on success; 2 after printing one ``fedgen: error: ...`` line to stderr.
    """
    args = parse_args(argv)
    uri = args.tracking_uri or resolve_uri(None, Path.cwd())
    title = f"fedgen: experiment {args.experiment!r}"
    if args.sweep_dir is not None:
        title += f", sweep {args.sweep_dir.resolve()}"
    if args.sweeps:
        title += f", sweeps in {', '.join(str(d.resolve()) for d in args.sweeps)}"
    try:
        if not args.force:
            check_output(args.output, force=False)  # before any work: fail fast
        with _quiet():
            records = select_runs(uri, args.experiment, args.sweep_dir, args.filter, args.sweeps)
        notes = f"{len(records)} finished runs from {uri}, grouped by {args.group_by}"
        notes += f"\nfilter: {args.filter}" if args.filter else ""
        if args.group_by == "sweep":
            records = by_sweep(records)
        else:
            warning = merge_warning(records)
            if warning is not None:
                print(warning, file=sys.stderr)
                notes += "\n" + warning.removeprefix("fedgen: warning: ")
        check_output(args.output, args.force)
        paths = write_summary(args.output, records, title, notes=notes)
    except FedgenError as exc:
        print(f"fedgen: error: {exc}", file=sys.stderr)
        return 2
    print(to_markdown(summary_table(records)), end="")
    print()
    for path in paths:
        print(path)
    return 0


def _inside(sweep_dir: str, tops: Sequence[str]) -> bool:
    """Whether ``sweep_dir`` is one of ``tops`` or below one of them."""
    return bool(sweep_dir) and any(
        sweep_dir == top or sweep_dir.startswith(top.rstrip("/") + "/") for top in tops
    )


def _iso(millis: int | None) -> str:
    """An MLflow start time (ms since the epoch) as the pipeline writes it: UTC, seconds."""
    if millis is None:
        return ""
    moment = datetime.datetime.fromtimestamp(millis / 1000, tz=datetime.UTC)
    return moment.replace(microsecond=0).isoformat()


if __name__ == "__main__":
    raise SystemExit(main())
