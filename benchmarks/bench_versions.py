"""Compare two fedgen installations on the same commands, interleaved in one run.

Run: .venv/bin/python benchmarks/bench_versions.py --baseline /path/to/other/.venv/bin/python
     [--repeats N] [--command "-m fedgen figures=false"] ...

Each command runs with both interpreters in turn (baseline, this one, baseline, ...), each in
a fresh temporary working directory with its own MLflow store and an empty training cache, so
machine noise affects both alike. Prints the medians and the ratio this / baseline.
"""

from __future__ import annotations

import argparse
import os
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

COMMANDS = ("-m fedgen", "-m fedgen figures=false", "-m fedgen tracking=none figures=false")


def run(python: str, args: list[str], cwd: Path) -> float:
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    with tempfile.TemporaryDirectory(prefix="fedgen-cache-") as cache:
        env["FEDGEN_CACHE_DIR"] = cache
        start = time.perf_counter()
        proc = subprocess.run([python, *args], cwd=cwd, env=env, capture_output=True, check=False)
        elapsed = time.perf_counter() - start
    if proc.returncode != 0:
        sys.exit(f"failed: {python} {shlex.join(args)}\n{proc.stderr.decode()[-2000:]}")
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline", required=True, help="the other installation's python")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--command", action="append", help="python arguments (repeatable)")
    args = parser.parse_args()
    commands = args.command or list(COMMANDS)
    pythons = {"baseline": args.baseline, "this": sys.executable}
    times: dict[tuple[str, str], list[float]] = {}
    for command in commands:
        argv = shlex.split(command)
        with tempfile.TemporaryDirectory(prefix="fedgen-bench-") as tmp:
            dirs = {who: Path(tmp) / who for who in pythons}
            for who, python in pythons.items():
                dirs[who].mkdir()
                run(python, argv, dirs[who])  # warm-up: creates the store; not timed
            for i in range(args.repeats):
                for who, python in pythons.items():
                    elapsed = run(python, argv, dirs[who])
                    times.setdefault((command, who), []).append(elapsed)
                    print(f"  [{i + 1}/{args.repeats}] {who:8} python {command}: {elapsed:.2f} s")
    print(f"\n{'command':<45} {'baseline':>9} {'this':>9} {'this/baseline':>14}")
    for command in commands:
        base = statistics.median(times[(command, "baseline")])
        this = statistics.median(times[(command, "this")])
        print(f"python {command:<38} {base:8.2f}s {this:8.2f}s {this / base:13.2f}x")


if __name__ == "__main__":
    main()
