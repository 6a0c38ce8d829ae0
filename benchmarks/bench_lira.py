"""LiRA's cost (K reference federations trained batched, then scoring) against one federation.

Run: .venv/bin/python benchmarks/bench_lira.py [--repeats N] [--k K] [--workers W]
    [--setting NAME ...]

Settings: ``default`` (20,000 x 100 SNPs, 5 clients), ``leaky`` (``experiment=leaky``: 1,000 x
5,000, 5 clients) and ``big`` (10,000 x 10,000 SNPs, 10 clients; minutes). Each federation is
built from its config (in-process backend, no cache); the cohort and split are built once. Timed
in turn, round-robin so machine noise affects both alike, after one untimed warm-up each (none
for ``big``, whose first calls are timed too and whose median drops the outlier): one
federation's training (``fedgen.experiment.pipeline.train``, what ``python -m fedgen`` runs) and
LiRA with ``k`` reference federations (``observe`` + ``run``: reference training and scoring) on
the paper pool. LiRA trains its reference federations in one forked worker per available core
(``attack.lira.workers``), so the CPU times count this process and its exited children.

Prints, per setting:

- the medians of wall time and of CPU time (less sensitive to other processes on a shared
  machine) and their ratios to one federation (the target, at most 3x, is on wall time);
- the peak RSS of each step in this process (Linux), and the largest peak of a forked worker
  (they share the cohort with this process copy-on-write);
- where LiRA's time goes (median of each part over the same timed calls: observe, the
  candidates' margins on the attacked model, the reference training, the scoring of the
  candidates under the reference models and the Gaussian fit);
- LiRA's AUC and TPR at 1% FPR as a sanity check.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import resource
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from hydra import compose, initialize_config_dir

import fedgen.attacks.lira as lira_module
from fedgen.attacks import Arena
from fedgen.attacks.lira import LiRAMIA
from fedgen.core.logs import quiet_third_party
from fedgen.core.seeding import child_rng
from fedgen.evaluation.metrics import auc, tpr_at_fpr
from fedgen.evaluation.pools import PaperPool
from fedgen.experiment.build import build_training
from fedgen.experiment.pipeline import cohort_and_split, train

CONF = Path(__file__).resolve().parent.parent / "conf"
SETTINGS = {
    "default": [],
    "leaky": ["experiment=leaky"],
    "big": ["dataset.n_individuals=10000", "dataset.n_snps=10000", "federation.num_clients=10"],
}
PARTS = ("observe", "target margins", "reference training", "scoring")


def peak_mib() -> float:
    """Peak resident memory of this process since the last :func:`reset_peak`, in MiB."""
    found = re.search(r"^VmHWM:\s+(\d+) kB", Path("/proc/self/status").read_text(), re.M)
    return int(found.group(1)) / 1024 if found else float("nan")


def reset_peak() -> None:
    """Reset the kernel's peak-RSS mark of this process (Linux ``clear_refs`` 5)."""
    with contextlib.suppress(OSError):
        Path("/proc/self/clear_refs").write_text("5")


def cpu_seconds() -> float:
    """CPU time of this process and of its children that have exited, in seconds."""
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def timed(fn: Callable[..., Any], into: list[float]) -> Callable[..., Any]:
    """``fn``, appending each call's wall time to ``into``."""

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        start = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            into.append(time.perf_counter() - start)

    return wrapper


def bench(setting: str, repeats: int, k: int, workers: int | None) -> dict[str, float]:
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose(config_name="config", overrides=[*SETTINGS[setting], "tracking=none"])
    training = build_training(cfg)
    cohort, split = cohort_and_split(training)
    attack = LiRAMIA(k=k, local_epochs=training.federation.local_epochs, workers=workers)
    pool = PaperPool().pool(split, child_rng(training.seed, "evaluation"))
    warm = setting != "big"

    # Where LiRA's time goes, from the timed calls themselves: the parts run() calls are wrapped.
    parts: dict[str, list[float]] = {name: [] for name in PARTS}
    lira_module.signed_margins_target = timed(
        lira_module.signed_margins_target, parts["target margins"]
    )
    attack.train_references = timed(  # type: ignore[method-assign]
        attack.train_references, parts["reference training"]
    )
    runs: list[float] = []

    def federation() -> object:
        return train(training, cohort, split)

    result = train(training, cohort, split)
    arena = Arena(cohort, pool, result, training.seed, training.model, split)

    def lira() -> object:
        start = time.perf_counter()
        view = attack.observe(arena).view
        parts["observe"].append(time.perf_counter() - start)
        return timed(attack.run, runs)(view)

    steps = {"federation": federation, f"lira k={k}": lira}
    times: dict[str, list[float]] = {name: [] for name in steps}
    cpu: dict[str, list[float]] = {name: [] for name in steps}
    peaks: dict[str, float] = dict.fromkeys(steps, 0.0)
    if warm:
        for fn in steps.values():
            fn()
    for name in parts:
        parts[name].clear()
    runs.clear()
    for i in range(repeats):
        for name, fn in steps.items():
            reset_peak()
            start, start_cpu = time.perf_counter(), cpu_seconds()
            fn()
            times[name].append(time.perf_counter() - start)
            cpu[name].append(cpu_seconds() - start_cpu)
            peaks[name] = max(peaks[name], peak_mib())
            print(f"  [{setting} {i + 1}/{repeats}] {name}: {times[name][-1]:.3f} s", flush=True)
    parts["scoring"] = [
        run - phi - ref
        for run, phi, ref in zip(
            runs, parts["target margins"], parts["reference training"], strict=True
        )
    ]
    base = statistics.median(times["federation"])
    lira_name = f"lira k={k}"
    base_cpu = statistics.median(cpu["federation"])
    print(
        f"\n{setting}: {'step':<22} {'median':>9} {'/ federation':>13} {'CPU':>9} "
        f"{'/ federation':>13} {'peak RSS':>10}"
    )
    for name in steps:
        med, med_cpu = statistics.median(times[name]), statistics.median(cpu[name])
        print(
            f"{setting}: {name:<22} {med:8.3f}s {med / base:12.2f}x {med_cpu:8.3f}s "
            f"{med_cpu / base_cpu:12.2f}x {peaks[name]:6.0f} MiB"
        )
    workers = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    print(f"{setting}: largest forked worker's peak RSS {workers:.0f} MiB")
    for name in PARTS:
        med = statistics.median(parts[name])
        print(f"{setting}:   {name:<20} {med:8.3f}s {med / base:12.2f}x")
    scored = attack.run(attack.observe(arena).view)
    truth = pool.is_member
    tpr = tpr_at_fpr(scored.oriented_scores, truth, 0.01)
    ratio = statistics.median(times[lira_name]) / base
    ratio_cpu = statistics.median(cpu[lira_name]) / base_cpu
    verdict = "PASS" if ratio <= 3.0 else "MISS"
    print(
        f"{setting}: ratio lira / federation {ratio:.2f}x wall (target <= 3x: {verdict}), "
        f"{ratio_cpu:.2f}x CPU; "
        f"lira AUC {auc(scored.oriented_scores, truth):.3f}, TPR@1%FPR "
        f"{'n/a' if tpr is None else f'{tpr:.3f}'}, confidence AUC "
        f"{auc(scored.baselines['confidence'], truth):.3f}\n",
        flush=True,
    )
    return {
        "federation": base,
        "lira": statistics.median(times[lira_name]),
        "ratio": ratio,
        "ratio_cpu": ratio_cpu,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--k", type=int, default=16)
    parser.add_argument(
        "--workers", type=int, default=None, help="LiRA's processes (default: one per core)"
    )
    parser.add_argument("--setting", action="append", choices=sorted(SETTINGS))
    args = parser.parse_args()
    quiet_third_party()
    chosen = args.setting or ["default", "leaky"]
    summary = {setting: bench(setting, args.repeats, args.k, args.workers) for setting in chosen}
    print(f"{'setting':<10} {'federation':>11} {'lira':>9} {'ratio':>7}")
    for setting, row in summary.items():
        print(f"{setting:<10} {row['federation']:10.3f}s {row['lira']:8.3f}s {row['ratio']:6.2f}x")


if __name__ == "__main__":
    main()
