"""Time fedgen's default experiment against its targets (see benchmarks/README.md).

Run: .venv/bin/python benchmarks/bench_default.py [--repeats N] [--ray-repeats M] [--no-ray]
"""

from __future__ import annotations

import argparse
import functools
import os
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

IMPORTS = "import flwr, sklearn, mlflow, hydra, matplotlib"
DEFAULT = ["-m", "fedgen"]
NO_FIGURES = ["-m", "fedgen", "figures=false"]
INPROC_NONE = ["-m", "fedgen", "tracking=none"]
RAY_NONE = ["-m", "fedgen", "federation/backend=ray", "tracking=none"]
SPEEDUP_TARGET = 10.0  # in-process training at least this many times faster than Ray
OVERHEAD_TARGET = 1.5  # whole default run at most this many times a bare import


def run_command(args: Sequence[str], cwd: Path) -> float:
    """Wall time of ``python <args>`` in ``cwd``; exit on failure.

    ``MLFLOW_TRACKING_URI`` is unset, and every call gets an empty training cache, so no run
    reuses a federation trained by an earlier one.
    """
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    cmd = [sys.executable, *args]
    with tempfile.TemporaryDirectory(prefix="fedgen-cache-") as cache:
        env["FEDGEN_CACHE_DIR"] = cache
        start = time.perf_counter()
        proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, check=False)
        elapsed = time.perf_counter() - start
    if proc.returncode != 0:
        sys.exit(
            f"benchmark command failed (exit {proc.returncode}): {' '.join(cmd)}\n"
            f"--- stdout ---\n{proc.stdout}\n--- stderr ---\n{proc.stderr}"
        )
    return elapsed


def interleaved(repeats: int, *commands: Sequence[str], cwd: Path) -> list[list[float]]:
    """Run the commands in turn (A, B, A, B, ...) ``repeats`` times; one list of times each."""
    times: list[list[float]] = [[] for _ in commands]
    for i in range(repeats):
        for cmd, out in zip(commands, times, strict=True):
            out.append(run_command(cmd, cwd))
            print(
                f"  [{i + 1}/{repeats}] python {shlex.join(cmd)[:60]}: {out[-1]:.2f} s", flush=True
            )
    return times


def training_timer(backend: str) -> Callable[[], float]:
    """A function that trains the default federation once on ``backend`` and returns its time."""
    from flwr.serverapp.strategy import FedAvg

    from fedgen.core.logs import quiet_third_party
    from fedgen.core.seeding import child_rng
    from fedgen.data import SyntheticCohort, partition
    from fedgen.federation import FederationSettings, train_federation
    from fedgen.federation.runners import InProcessRunner, RayRunner
    from fedgen.models import SGDLogistic

    quiet_third_party()
    cohort = SyntheticCohort().load(child_rng(42, "cohort"))
    split = partition(cohort.labels, 5, 0.2, child_rng(42, "partition"))
    settings = FederationSettings(
        backend=RayRunner() if backend == "ray" else InProcessRunner(),
        strategy=functools.partial(FedAvg, fraction_train=1.0, fraction_evaluate=1.0),
    )

    def once() -> float:
        start = time.perf_counter()
        result = train_federation(cohort, split, settings, SGDLogistic(), 42)
        elapsed = time.perf_counter() - start
        assert len(result.rounds) == settings.num_rounds
        return elapsed

    return once


def timed(label: str, fn: Callable[[], float], repeats: int) -> list[float]:
    times = []
    for i in range(repeats):
        times.append(fn())
        print(f"  [{i + 1}/{repeats}] {label}: {times[-1]:.2f} s", flush=True)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5, help="repeats of the fast timings")
    parser.add_argument("--ray-repeats", type=int, default=3, help="repeats of the Ray timings")
    parser.add_argument("--no-ray", action="store_true", help="skip the Ray backend")
    args = parser.parse_args()
    rows: dict[str, list[float]] = {}

    with tempfile.TemporaryDirectory(prefix="fedgen-bench-") as tmp:
        cwd = Path(tmp)
        print("warm-up: python -m fedgen (creates <tmpdir>/mlflow.db, not timed)", flush=True)
        run_command(DEFAULT, cwd)
        print("whole default run vs bare import vs no figures (interleaved):", flush=True)
        default, bare, no_figures = interleaved(
            args.repeats, DEFAULT, ["-c", IMPORTS], NO_FIGURES, cwd=cwd
        )
        rows["python -m fedgen (default, MLflow SQLite)"] = default
        rows[f'python -c "{IMPORTS}"'] = bare
        rows["python -m fedgen figures=false"] = no_figures
        if not args.no_ray:
            print("whole run, Ray vs in-process backend, tracking=none (interleaved):", flush=True)
            ray_cmd, inproc_cmd = interleaved(args.ray_repeats, RAY_NONE, INPROC_NONE, cwd=cwd)
            rows["python -m fedgen tracking=none"] = inproc_cmd
            rows["python -m fedgen federation/backend=ray tracking=none"] = ray_cmd

    print("train_federation in this process (cohort and split built beforehand):", flush=True)
    inproc = training_timer("inprocess")
    inproc()  # warm-up: first-call imports and caches
    rows["train_federation, in-process backend"] = timed("in-process", inproc, args.repeats)
    if not args.no_ray:
        import flwr.simulation  # noqa: F401  (imported up front: not part of a run's time)
        import ray  # noqa: F401

        ray_train = timed("Ray", training_timer("ray"), args.ray_repeats)
        rows["train_federation, Ray backend"] = ray_train

    width = max(len(k) for k in rows)
    print(f"\n{'measurement':<{width}}  runs  median      min      max")
    for name, times in rows.items():
        med, lo, hi = statistics.median(times), min(times), max(times)
        print(f"{name:<{width}}  {len(times):>4}  {med:6.2f} s {lo:6.2f} s {hi:6.2f} s")

    def ratio(
        label: str, num: str, den: str, target: str = "", ok: Callable[[float], bool] | None = None
    ) -> None:
        value = statistics.median(rows[num]) / statistics.median(rows[den])
        verdict = "" if ok is None else ("PASS" if ok(value) else "MISS")
        print(f"{label:<{width}}  {value:6.2f}x   {target:<8} {verdict}".rstrip())

    print(f"\n{'ratio (of medians)':<{width}}  {'value':>7}   target")
    ratio(
        "default run / bare import",
        "python -m fedgen (default, MLflow SQLite)",
        f'python -c "{IMPORTS}"',
        f"<= {OVERHEAD_TARGET:g}x",
        lambda v: v <= OVERHEAD_TARGET,
    )
    ratio(
        "figures cost: default run / figures=false",
        "python -m fedgen (default, MLflow SQLite)",
        "python -m fedgen figures=false",
        "(info)",
    )
    ratio(
        "default run, figures=false / bare import",
        "python -m fedgen figures=false",
        f'python -c "{IMPORTS}"',
        "(info)",
    )
    if not args.no_ray:
        ratio(
            "training: Ray / in-process (speed-up)",
            "train_federation, Ray backend",
            "train_federation, in-process backend",
            f">= {SPEEDUP_TARGET:g}x",
            lambda v: v >= SPEEDUP_TARGET,
        )
        ratio(
            "whole run (tracking=none): Ray / in-process",
            "python -m fedgen federation/backend=ray tracking=none",
            "python -m fedgen tracking=none",
            "(info)",
        )


if __name__ == "__main__":
    main()
