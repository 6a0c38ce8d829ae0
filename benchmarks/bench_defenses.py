"""The training cost of each defense on the default experiment, as a ratio to no defense.

Run: .venv/bin/python benchmarks/bench_defenses.py [--repeats N] [--defense NAME ...]

Each defense is built from its config (``defense=<name>``, default settings) and trains the
default federation (20,000 x 100 SNPs, 5 clients, 10 rounds, in-process backend) in this
process; the cohort and split are built once. Defenses are timed in turn, round-robin, so
machine noise affects all alike; one untimed warm-up each. Prints medians and the ratio of
each median to ``none``'s.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

from hydra import compose, initialize_config_dir

from fedgen.core.logs import quiet_third_party
from fedgen.experiment.build import build_training
from fedgen.experiment.pipeline import Training, cohort_and_split, train

CONF = Path(__file__).resolve().parent.parent / "conf"
DEFENSES = (
    "none",
    "clip",
    "sparsify",
    "snp_suppression",
    "client_dp",
    "central_dp",
    "dp_sgd",
    "secagg",
)


def training(defense: str) -> Training:
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose(config_name="config", overrides=[f"defense={defense}", "tracking=none"])
    return build_training(cfg)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--defense", action="append", help="defense option (repeatable)")
    args = parser.parse_args()
    names = args.defense or list(DEFENSES)
    if "none" not in names:
        names.insert(0, "none")
    quiet_third_party()
    built = {name: training(name) for name in names}
    cohort, split = cohort_and_split(built["none"])
    times: dict[str, list[float]] = {name: [] for name in names}
    for name in names:
        train(built[name], cohort, split)  # warm-up
    for i in range(args.repeats):
        for name in names:
            start = time.perf_counter()
            train(built[name], cohort, split)
            times[name].append(time.perf_counter() - start)
            print(f"  [{i + 1}/{args.repeats}] {name}: {times[name][-1]:.3f} s", flush=True)
    base = statistics.median(times["none"])
    print(f"\n{'defense':<16} {'median':>9} {'ratio to none':>14}")
    for name in names:
        med = statistics.median(times[name])
        print(f"{name:<16} {med:8.3f}s {med / base:13.2f}x")


if __name__ == "__main__":
    main()
