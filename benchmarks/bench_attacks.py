"""What each attack costs (observe, attack and metrics), against one federation's training time.

Run: .venv/bin/python benchmarks/bench_attacks.py [--quick] [--repeats N] [--big-repeats M]
[--attack NAME ...]

Two settings: the default experiment (20,000 x 100 SNPs, 5 clients) and a genomic-scale one
(10,000 individuals x 10,000 SNPs, 10 clients); both 10 FedAvg rounds of the default model, the
paper evaluation pool, in-process backend. Each setting's cohort is made once and its
federation trained, and timed, in this process (no cache): ``--repeats`` times for the default,
once for the big one. Each attack is built from its own Hydra YAML (``attack=<name>``) by fedgen's
builder, as ``python -m fedgen`` builds it; an attack without a YAML yet, or whose config does
not build, is skipped with a note. Then ``assess(attack, arena, n_bootstrap)`` (the pool's own
``n_bootstrap``) is timed for each attack in turn, round-robin, so machine noise affects all
alike: one untimed warm-up each and ``--repeats`` runs on the default setting,
``--big-repeats`` runs and no warm-up on the big one. Prints the median time, its ratio to the
setting's training time (median), and the process's peak resident memory during the attack
(the kernel's high-water mark, reset before each call) with its rise above the resident memory
just before.
``--quick`` runs the default setting only.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import gc
import re
import statistics
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hydra import compose, initialize_config_dir

from fedgen.attacks import Arena
from fedgen.core.errors import FedgenError
from fedgen.core.logs import quiet_third_party
from fedgen.core.seeding import child_rng
from fedgen.evaluation.assess import assess
from fedgen.experiment.build import build_experiment
from fedgen.experiment.pipeline import Experiment, cohort_and_split, train

CONF = Path(__file__).resolve().parent.parent / "conf"
ATTACKS = ("mia", "gmia", "lia", "lrt", "alignment", "label_counts", "phenotype", "lira")
SETTINGS: dict[str, tuple[str, ...]] = {
    "default": (),
    "10k x 10k": (
        "dataset.n_individuals=10000",
        "dataset.n_snps=10000",
        "federation.num_clients=10",
    ),
}


@dataclass
class Timing:
    """One attack's runs in one setting."""

    seconds: list[float] = field(default_factory=list)
    peak_mib: float = 0.0
    rise_mib: float = 0.0
    auc: float | None = None


def memory_mib(key: str) -> float:
    """``VmRSS`` (resident now) or ``VmHWM`` (peak resident) of this process, in MiB."""
    status = Path("/proc/self/status").read_text()
    found = re.search(rf"^{key}:\s+(\d+) kB", status, re.MULTILINE)
    return int(found.group(1)) / 1024 if found else float("nan")


def reset_peak() -> None:
    """Hand freed heap back to the system, then reset the kernel's peak-RSS mark of this
    process (Linux: ``clear_refs`` 5), so that the next peak is the next call's own."""
    with contextlib.suppress(OSError, AttributeError):  # glibc only
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    with contextlib.suppress(OSError):  # then the peak is the process's since it started
        Path("/proc/self/clear_refs").write_text("5")


def experiment(overrides: Sequence[str], tmp: Path) -> Experiment:
    """The experiment ``python -m fedgen <overrides> tracking=none figures=false`` would run."""
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose(
            config_name="config",
            overrides=[*overrides, "tracking=none", "figures=false", "cache=false"],
        )
    return build_experiment(cfg, launch_dir=tmp, output_dir=tmp)


def attacks(names: Sequence[str], setting: Sequence[str], tmp: Path) -> dict[str, Any]:
    """Each attack built from its YAML for ``setting``; a note for those that cannot be."""
    built: dict[str, Any] = {}
    for name in names:
        if not (CONF / "attack" / f"{name}.yaml").exists():
            print(f"  skipped {name}: conf/attack/{name}.yaml does not exist (yet)", flush=True)
            continue
        try:
            (built[name],) = experiment([*setting, f"attack={name}"], tmp).attacks
        except (FedgenError, ValueError, ImportError) as exc:
            print(f"  skipped {name}: its config does not build: {exc}", flush=True)
    return built


def bench_setting(
    label: str, setting: Sequence[str], names: Sequence[str], trainings: int, repeats: int
) -> tuple[list[float], dict[str, Timing]]:
    """Train the setting's federation ``trainings`` times, then time each attack on it
    ``repeats`` times, round-robin (after one warm-up each if ``trainings`` > 1)."""
    warm_up = trainings > 1
    with tempfile.TemporaryDirectory(prefix="fedgen-bench-") as tmp:
        exp = experiment([*setting, "attack=mia"], Path(tmp))
        start = time.perf_counter()
        cohort, split = cohort_and_split(exp.training)
        print(
            f"{label}: cohort {cohort.n_individuals:,} x {cohort.n_snps:,} SNPs, "
            f"{split.num_clients} clients, {exp.federation.num_rounds} rounds "
            f"(made in {time.perf_counter() - start:.1f} s)",
            flush=True,
        )
        built = attacks(names, setting, Path(tmp))
    assert exp.evaluation is not None
    training: list[float] = []
    for i in range(trainings):
        start = time.perf_counter()
        result = train(exp.training, cohort, split)
        training.append(time.perf_counter() - start)
        print(f"  [{i + 1}/{trainings}] training: {training[-1]:.2f} s", flush=True)
    pool = exp.evaluation.pool(split, child_rng(exp.seed, "evaluation"))
    arena = Arena(cohort, pool, result, exp.seed, exp.training.model, split)
    n_bootstrap = exp.evaluation.n_bootstrap
    print(f"  pool of {pool.size:,} candidates, n_bootstrap={n_bootstrap}", flush=True)
    timings = {name: Timing() for name in built}
    if warm_up:
        for attack in built.values():
            assess(attack, arena, n_bootstrap)
    for i in range(repeats):
        for name, attack in built.items():
            gc.collect()
            reset_peak()
            before = memory_mib("VmRSS")
            start = time.perf_counter()
            assessment = assess(attack, arena, n_bootstrap)
            elapsed = time.perf_counter() - start
            peak = memory_mib("VmHWM")
            t = timings[name]
            t.seconds.append(elapsed)
            t.peak_mib, t.rise_mib = max(t.peak_mib, peak), max(t.rise_mib, peak - before)
            t.auc = assessment.metrics.get("auc")
            del assessment
            print(f"  [{i + 1}] {name}: {elapsed:.2f} s, peak RSS {peak:,.0f} MiB", flush=True)
    return training, timings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="the default experiment only")
    parser.add_argument("--repeats", type=int, default=3, help="runs on the default setting")
    parser.add_argument("--big-repeats", type=int, default=3, help="runs on 10k x 10k")
    parser.add_argument("--attack", action="append", help="attack option (repeatable)")
    args = parser.parse_args()
    names = args.attack or list(ATTACKS)
    quiet_third_party()
    rows: list[tuple[str, float, str, Timing]] = []
    for label, setting in SETTINGS.items():
        if args.quick and label != "default":
            continue
        if label == "default":
            training, timings = bench_setting(label, setting, names, args.repeats, args.repeats)
        else:  # trains once, the most expensive step, and no warm-up
            training, timings = bench_setting(label, setting, names, 1, args.big_repeats)
        train_time = statistics.median(training)
        rows += [(label, train_time, name, t) for name, t in timings.items()]
        gc.collect()

    print(
        f"\n{'setting':<10} {'attack':<13} {'runs':>4} {'median':>9} {'/ training':>11} "
        f"{'peak RSS':>10} {'rise':>9} {'AUC':>6}"
    )
    for label, train_time, name, t in rows:
        med = statistics.median(t.seconds)
        auc = f"{t.auc:.3f}" if t.auc is not None else "-"
        print(
            f"{label:<10} {name:<13} {len(t.seconds):>4} {med:8.2f}s {med / train_time:10.2f}x "
            f"{t.peak_mib:7,.0f} MiB {t.rise_mib:5,.0f} MiB {auc:>6}"
        )
    for label in dict.fromkeys(r[0] for r in rows):
        train_time = next(r[1] for r in rows if r[0] == label)
        print(f"training, {label}: {train_time:.2f} s (one federation, median)")


if __name__ == "__main__":
    main()
