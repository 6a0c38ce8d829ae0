"""LiRA's cost (K reference federations trained batched, then scoring) against one federation.

Run: .venv/bin/python benchmarks/bench_lira.py [--repeats N] [--k K] [--setting NAME ...]

For each setting (``default``: 20,000 x 100 SNPs; ``leaky``: ``experiment=leaky``, 1,000 x
5,000) the federation is built from its config (in-process backend, no cache); the cohort and
split are built once. Timed in turn, round-robin so machine noise affects both alike, after one
untimed warm-up each: one federation's training (``fedgen.experiment.pipeline.train``) and
LiRA with ``k`` reference federations (``observe`` + ``run``: reference training and scoring)
on the paper pool. Prints medians, their ratio (target: at most 3x), the peak RSS of each step
(Linux), and LiRA's AUC and TPR at 1% FPR.
"""

from __future__ import annotations

import argparse
import contextlib
import re
import statistics
import time
from pathlib import Path

from hydra import compose, initialize_config_dir

from fedgen.attacks import Arena
from fedgen.attacks.lira import LiRAMIA
from fedgen.core.logs import quiet_third_party
from fedgen.core.seeding import child_rng
from fedgen.evaluation.metrics import auc, tpr_at_fpr
from fedgen.evaluation.pools import PaperPool
from fedgen.experiment.build import build_training
from fedgen.experiment.pipeline import cohort_and_split, train

CONF = Path(__file__).resolve().parent.parent / "conf"
SETTINGS = {"default": [], "leaky": ["experiment=leaky"]}


def peak_mib() -> float:
    """Peak resident memory of this process since the last :func:`reset_peak`, in MiB."""
    found = re.search(r"^VmHWM:\s+(\d+) kB", Path("/proc/self/status").read_text(), re.M)
    return int(found.group(1)) / 1024 if found else float("nan")


def reset_peak() -> None:
    """Reset the kernel's peak-RSS mark of this process (Linux ``clear_refs`` 5)."""
    with contextlib.suppress(OSError):
        Path("/proc/self/clear_refs").write_text("5")


def bench(setting: str, repeats: int, k: int) -> None:
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose(config_name="config", overrides=[*SETTINGS[setting], "tracking=none"])
    training = build_training(cfg)
    cohort, split = cohort_and_split(training)
    attack = LiRAMIA(k=k, local_epochs=training.federation.local_epochs)
    pool = PaperPool().pool(split, child_rng(training.seed, "evaluation"))

    def federation() -> object:
        return train(training, cohort, split)

    result = train(training, cohort, split)
    arena = Arena(cohort, pool, result, training.seed, training.model, split)

    def lira() -> object:
        return attack.run(attack.observe(arena).view)

    steps = {"federation": federation, f"lira k={k}": lira}
    times: dict[str, list[float]] = {name: [] for name in steps}
    peaks: dict[str, float] = dict.fromkeys(steps, 0.0)
    for fn in steps.values():
        fn()  # warm-up
    for i in range(repeats):
        for name, fn in steps.items():
            reset_peak()
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
            peaks[name] = max(peaks[name], peak_mib())
            print(f"  [{setting} {i + 1}/{repeats}] {name}: {times[name][-1]:.3f} s", flush=True)
    base = statistics.median(times["federation"])
    print(f"\n{setting}: {'step':<12} {'median':>9} {'ratio':>7} {'peak RSS':>10}")
    for name in steps:
        med = statistics.median(times[name])
        print(f"{setting}: {name:<12} {med:8.3f}s {med / base:6.2f}x {peaks[name]:8.0f} MiB")
    scored = attack.run(attack.observe(arena).view)
    truth = pool.is_member
    tpr = tpr_at_fpr(scored.oriented_scores, truth, 0.01)
    print(
        f"{setting}: lira AUC {auc(scored.oriented_scores, truth):.3f}, TPR@1%FPR "
        f"{'n/a' if tpr is None else f'{tpr:.3f}'}, confidence AUC "
        f"{auc(scored.baselines['confidence'], truth):.3f}\n",
        flush=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--k", type=int, default=16)
    parser.add_argument("--setting", action="append", choices=sorted(SETTINGS))
    args = parser.parse_args()
    quiet_third_party()
    for setting in args.setting or list(SETTINGS):
        bench(setting, args.repeats, args.k)


if __name__ == "__main__":
    main()
