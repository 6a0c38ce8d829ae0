"""Time an 8-job sweep on Hydra's basic launcher against the joblib launcher with 2 workers.

The sweep is over seeds (``seed=0,...,7``, the default experiment, ``attack=gmia``): 8 distinct
federations to train, so that jobs can run side by side (a threshold sweep trains once and
its jobs are short). Commands run interleaved, each with an empty training cache; the table
gives medians and the speed-up (basic / joblib), and the peak resident memory of the command
and the processes it waited for (``wait4``: the largest one, not their sum).

Run: .venv/bin/python benchmarks/bench_launchers.py [--repeats N] [--jobs N]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

TARGET_SPEEDUP = 1.3  # on 2 cores shared with other work; 2.0 is the ceiling


def sweep(jobs: int, extra: Sequence[str] = ()) -> list[str]:
    seeds = ",".join(str(s) for s in range(jobs))
    return ["-m", "fedgen", "--multirun", "attack=gmia", f"seed={seeds}", *extra]


def run(args: Sequence[str], cwd: Path) -> tuple[float, float]:
    """Wall time (s) and peak RSS (MiB) of ``python <args>`` in ``cwd``; exit on failure."""
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    with tempfile.TemporaryDirectory(prefix="fedgen-cache-") as cache:
        env["FEDGEN_CACHE_DIR"] = cache
        start = time.perf_counter()
        proc = subprocess.Popen(
            [sys.executable, *args],
            cwd=cwd,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        _, status, usage = os.wait4(proc.pid, 0)
        elapsed = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)
        stderr = proc.stderr.read().decode() if proc.stderr is not None else ""
    if proc.returncode != 0:
        sys.exit(f"benchmark command failed (exit {proc.returncode}): {args}\n{stderr}")
    return elapsed, usage.ru_maxrss / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3, help="repeats of each command")
    parser.add_argument("--jobs", type=int, default=8, help="jobs in the sweep (seeds)")
    parser.add_argument(
        "overrides",
        nargs="*",
        help="extra overrides for every job, e.g. experiment=leaky (longer jobs)",
    )
    args = parser.parse_args()
    commands = {
        "basic launcher": sweep(args.jobs, args.overrides),
        "joblib launcher, n_jobs=2": [
            *sweep(args.jobs, args.overrides),
            "hydra/launcher=joblib",
            "hydra.launcher.n_jobs=2",
        ],
    }
    times: dict[str, list[float]] = {k: [] for k in commands}
    peaks: dict[str, list[float]] = {k: [] for k in commands}
    with tempfile.TemporaryDirectory(prefix="fedgen-bench-") as tmp:
        cwd = Path(tmp)
        what = " ".join(["attack=gmia", *args.overrides])
        print(f"{args.jobs}-job seed sweep ({what}), {os.cpu_count()} CPUs")
        print("warm-up: python -m fedgen attack=gmia (creates <tmpdir>/mlflow.db, not timed)")
        run(["-m", "fedgen", "attack=gmia"], cwd)
        for i in range(args.repeats):  # interleaved, so machine noise hits both alike
            for name, cmd in commands.items():
                elapsed, peak = run(cmd, cwd)
                times[name].append(elapsed)
                peaks[name].append(peak)
                print(f"  [{i + 1}/{args.repeats}] {name}: {elapsed:.1f} s", flush=True)
    width = max(len(k) for k in times)
    print(f"\n{'command':<{width}}  runs  median      min      max   peak RSS")
    for name, ts in times.items():
        print(
            f"{name:<{width}}  {len(ts):>4}  {statistics.median(ts):6.1f} s "
            f"{min(ts):6.1f} s {max(ts):6.1f} s  {max(peaks[name]):5.0f} MiB"
        )
    basic, parallel = (statistics.median(ts) for ts in times.values())
    speedup = basic / parallel
    verdict = "PASS" if speedup >= TARGET_SPEEDUP else "MISS"
    print(f"\nspeed-up of joblib (medians): {speedup:.2f}x  target >= {TARGET_SPEEDUP}x  {verdict}")


if __name__ == "__main__":
    main()
