"""Time threshold sweeps against one single run: a sweep should train once and attack cheaply.

Run: .venv/bin/python benchmarks/bench_sweep.py [--repeats N]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from pathlib import Path

from bench_default import run_command

SINGLE = ["-m", "fedgen", "attack=gmia"]
SWEEP_3 = ["-m", "fedgen", "attack=gmia", "threshold=0.3,0.45,0.5", "--multirun"]
THRESHOLDS_20 = ",".join(f"{t / 20:g}" for t in range(1, 21))
SWEEP_20 = ["-m", "fedgen", "attack=gmia", f"threshold={THRESHOLDS_20}", "--multirun"]
TARGETS = {"3-threshold sweep": (SWEEP_3, 1.3), "20-threshold sweep": (SWEEP_20, 3.0)}
NO_FIGURES = "figures=false"
MARGINAL_TARGET_S = 0.25  # seconds a threshold job adds to a sweep, with figures off


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3, help="repeats of each command")
    parser.add_argument(
        "--no-figures", action="store_true", help="time every command with figures=false"
    )
    args = parser.parse_args()
    extra = [NO_FIGURES] if args.no_figures else []
    commands = {"single run (attack=gmia)": SINGLE + extra} | {
        k: v[0][:-1] + extra + v[0][-1:] for k, v in TARGETS.items()
    }
    times: dict[str, list[float]] = {k: [] for k in commands}
    with tempfile.TemporaryDirectory(prefix="fedgen-bench-") as tmp:
        cwd = Path(tmp)
        print("warm-up: python -m fedgen attack=gmia (creates <tmpdir>/mlflow.db, not timed)")
        run_command(SINGLE, cwd)
        for i in range(args.repeats):  # interleaved, so machine noise hits every command alike
            for name, cmd in commands.items():
                times[name].append(run_command(cmd, cwd))  # each with an empty training cache
                print(f"  [{i + 1}/{args.repeats}] {name}: {times[name][-1]:.2f} s", flush=True)
    width = max(len(k) for k in times)
    print(f"\n{'command':<{width}}  runs  median      min      max")
    for name, ts in times.items():
        print(
            f"{name:<{width}}  {len(ts):>4}  {statistics.median(ts):6.2f} s "
            f"{min(ts):6.2f} s {max(ts):6.2f} s"
        )
    single = statistics.median(times["single run (attack=gmia)"])
    print(f"\n{'ratio to the single run (medians)':<{width}}  {'value':>7}   target")
    for name, (_, target) in TARGETS.items():
        value = statistics.median(times[name]) / single
        verdict = "PASS" if value <= target else "MISS"
        print(f"{name:<{width}}  {value:6.2f}x   <= {target:g}x  {verdict}")
    # What one more job costs: the 17 jobs the 20-threshold sweep has beyond the 3-threshold one.
    extra = statistics.median(times["20-threshold sweep"]) - statistics.median(
        times["3-threshold sweep"]
    )
    marginal = extra / (20 - 3)
    label = "marginal job: (20-sweep - 3-sweep) / 17"
    if args.no_figures:
        verdict = "PASS" if marginal <= MARGINAL_TARGET_S else "MISS"
        print(f"{label:<{width}}  {marginal:6.3f} s  <= {MARGINAL_TARGET_S:g} s  {verdict}")
    else:
        print(f"{label:<{width}}  {marginal:6.3f} s  (figures on; the target is for --no-figures)")


if __name__ == "__main__":
    main()
