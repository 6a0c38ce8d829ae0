"""Peak resident memory and wall time of a biobank-scale run (issue 11: memory that fits).

Run: .venv/bin/python benchmarks/bench_memory.py [--repeats N] [--snps P ...] [--server]
[--big] [--python PATH] [--cwd CHECKOUT] [--extra OVERRIDE ...]

Each setting is one ``python -m fedgen`` in a subprocess: 20 clients x 2,000 individuals (40,000) x
``--snps`` SNPs (50,000 by default), 2,000 reference individuals, 10 FedAvg rounds,
``attack=[mia,gmia]`` (with ``--server`` also the server's update attacks ``lrt`` and
``alignment``), no tracking, no figures, no training cache. Each run is measured twice: GNU
``/usr/bin/time -v``'s maximum resident set size (the largest process; fedgen with
``tracking=none`` is one process) and the peak of the summed resident memory of the whole process
tree, polled from ``/proc`` every 0.1 s; and its wall and CPU time (user + system: on a machine
shared with other work, wall time says little and CPU time / 2 is what 2 free cores would need at
least), with the 1-minute load average at its end. Prints each run and the medians over
``--repeats`` runs; ``--big`` adds one run at 100,000 SNPs. ``--cwd`` runs another checkout's
``fedgen`` (e.g. a ``git worktree`` of an older commit, for the before figure).
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import subprocess
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BASE = (
    "dataset.n_individuals=40000",
    "dataset.n_reference=2000",
    "federation.num_clients=20",
    "federation.num_rounds=10",
    "tracking=none",
    "figures=false",
    "cache=false",
)
GIB = 2**30


def tree_rss(root: int) -> int:
    """Summed resident bytes of ``root`` and all its descendants (0 once it is gone)."""
    children: dict[int, list[int]] = {}
    rss: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        pid, ppid = int(entry), int(fields[1])
        children.setdefault(ppid, []).append(pid)
        rss[pid] = int(fields[21]) * os.sysconf("SC_PAGE_SIZE")
    total, stack = 0, [root]
    while stack:
        pid = stack.pop()
        total += rss.get(pid, 0)
        stack += children.get(pid, [])
    return total


def run_once(
    python: str, overrides: list[str], cwd: Path
) -> tuple[float, float, float, float, float]:
    """One run: wall s, CPU s (user + system), /usr/bin/time max RSS GiB, tree peak GiB, load."""
    with tempfile.TemporaryDirectory(prefix="fedgen-bench-mem-") as out:
        cmd = [python, "-m", "fedgen", *overrides, f"hydra.run.dir={out}"]
        timer = shutil.which("time") and Path("/usr/bin/time").exists()
        full = ["/usr/bin/time", "-v", *cmd] if timer else cmd
        start = time.perf_counter()
        proc = subprocess.Popen(full, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        peak = [0]

        def poll() -> None:
            while proc.poll() is None:
                peak[0] = max(peak[0], tree_rss(proc.pid))
                time.sleep(0.1)

        poller = threading.Thread(target=poll, daemon=True)
        poller.start()
        _, err = proc.communicate()
        wall = time.perf_counter() - start
        poller.join()
        text = err.decode(errors="replace")
        if proc.returncode != 0:
            raise SystemExit(f"run failed ({proc.returncode}): {' '.join(cmd)}\n{text[-3000:]}")
        found = re.search(r"Maximum resident set size \(kbytes\): (\d+)", text)
        max_rss = int(found.group(1)) * 1024 / GIB if found else float("nan")
        times = re.findall(r"(?:User|System) time \(seconds\): ([\d.]+)", text)
        cpu = sum(map(float, times)) if times else float("nan")
        return wall, cpu, max_rss, peak[0] / GIB, os.getloadavg()[0]


def setting(
    python: str, cwd: Path, snps: int, attacks: str, repeats: int, extra: list[str]
) -> None:
    """Run one setting ``repeats`` times and print each run and the medians."""
    overrides = [*BASE, f"dataset.n_snps={snps}", f"attack=[{attacks}]", *extra]
    print(f"\n40,000 x {snps:,} SNPs, 20 clients, 10 rounds, attack=[{attacks}]", flush=True)
    runs = []
    for i in range(repeats):
        run = run_once(python, overrides, cwd)
        runs.append(run)
        print(f"  run {i + 1}: {_row(run)}", flush=True)
    medians = tuple(statistics.median(column) for column in zip(*runs, strict=True))
    print(f"  median of {repeats}: {_row(medians)}", flush=True)


def _row(run: tuple[float, ...]) -> str:
    wall, cpu, max_rss, tree, load = run
    return (
        f"{wall:6.1f} s wall, {cpu:6.1f} s CPU, max RSS {max_rss:5.2f} GiB (/usr/bin/time), "
        f"process tree peak {tree:5.2f} GiB, load {load:4.1f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--snps", type=int, nargs="+", default=[50000])
    parser.add_argument("--server", action="store_true", help="also run lrt and alignment")
    parser.add_argument("--big", action="store_true", help="one more run at 100,000 SNPs")
    parser.add_argument("--python", default=str(ROOT / ".venv" / "bin" / "python"))
    parser.add_argument("--cwd", type=Path, default=ROOT, help="checkout whose fedgen runs")
    parser.add_argument("--extra", nargs="*", default=[], help="more Hydra overrides")
    args = parser.parse_args()
    for snps in args.snps:
        setting(args.python, args.cwd, snps, "mia,gmia", args.repeats, args.extra)
        if args.server:
            setting(args.python, args.cwd, snps, "mia,gmia,lrt,alignment", args.repeats, args.extra)
    if args.big:
        setting(args.python, args.cwd, 100_000, "mia,gmia", 1, args.extra)


if __name__ == "__main__":
    main()
