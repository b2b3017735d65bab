"""Wall time and test error of the quickstart, ``wdlab fit --config configs/quickstart.yaml``, as a user runs it.

Each run is the real command in a fresh process (start-up, data generation, training, the anytime snapshots,
the final test), timed from process start to exit, with its run directory in a temporary folder. For every
run the script prints the wall time, the final test error and the error of each anytime snapshot; with
several seeds, the mean and a 95 % t interval per arm. Arms are variants of the command (``--arm NAME=ARGS``,
ARGS appended to the command): each arm after the first is compared with the first seed by seed (the same
seed gives the same initialization, data and data order in every arm), mean difference with a t interval.

    python benchmarks/quickstart.py                                     # one run, seed 0
    python benchmarks/quickstart.py --seeds 0,1,2 \\
        --arm "decay=" --arm "no decay=--model.optimizer.weight_decay_norm 0"
    python benchmarks/quickstart.py --seeds 0,1,2 --arm "adamwr=" --arm "muonw=--model.optimizer.name muonw"

Run it on an otherwise idle machine: the documented times are this script's output there.
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CONFIG = "configs/quickstart.yaml"


@dataclass
class Run:
    arm: str
    seed: int
    wall_s: float
    test_err: float
    snapshots: list[tuple[int, float]] = field(default_factory=list)  # (epoch, error)


def t_interval(values: list[float]) -> tuple[float, float, float]:
    """mean, and the report's 95 % t interval over seeds (NaN bounds with fewer than two values)."""
    from wdlab.experiments.intervals import t_interval as seed_t_interval

    interval = seed_t_interval("per_seed_t", values)
    return statistics.fmean(values), interval.lo, interval.hi


def run_once(arm: str, extra: list[str], seed: int, workdir: Path, timeout: float) -> Run:
    """One quickstart run in a fresh process; its errors read back from its TensorBoard events."""
    from wdlab.experiments.results import read_scalars

    name = f"{arm.replace(' ', '_')}-seed{seed}"
    command = [sys.executable, "-m", "wdlab", "fit", "--config", str(REPO / CONFIG),
               "--trainer.logger.init_args.save_dir", str(workdir),
               "--trainer.logger.init_args.name", name,
               "--seed_everything", str(seed), *extra]
    start = time.perf_counter()
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, "PYTHONUNBUFFERED": "1"})
    wall = time.perf_counter() - start
    if done.returncode != 0:
        tail = (done.stderr or done.stdout).strip().splitlines()[-5:]
        raise SystemExit(f"quickstart.py: {shlex.join(command)} exited {done.returncode}:\n" + "\n".join(tail))
    scalars = read_scalars(workdir / name)
    if "test/err" not in scalars:
        raise SystemExit(f"quickstart.py: run {name} logged no test/err (was --test_after_fit switched off?)")
    snapshots = [(int(epoch), value) for epoch, value in scalars.get("anytime/err", [])]  # logged at the epoch
    return Run(arm, seed, wall, scalars["test/err"][-1][1], snapshots)


def parse_arm(text: str) -> tuple[str, list[str]]:
    name, sep, args = text.partition("=")
    if not sep or not name.strip():
        raise argparse.ArgumentTypeError(f"--arm {text!r}: write NAME=ARGS, e.g. 'no decay=--model.optimizer."
                                         f"weight_decay_norm 0' (ARGS may be empty: 'decay=')")
    return name.strip(), shlex.split(args)


def parse_seeds(text: str) -> list[int]:
    try:
        seeds = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"--seeds {text!r}: give comma-separated whole numbers") from None
    if not seeds or len(set(seeds)) != len(seeds):
        raise argparse.ArgumentTypeError(f"--seeds {text!r}: give distinct whole numbers, e.g. 0,1,2")
    return seeds


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=parse_seeds, default=[0], help="seeds, comma-separated (default: 0)")
    parser.add_argument("--arm", type=parse_arm, action="append", dest="arms", metavar="NAME=ARGS",
                        help="a variant: arguments appended to the command (repeatable; default: one arm, as is)")
    parser.add_argument("--timeout", type=float, default=3600.0, help="seconds a run may take (default: 3600)")
    args = parser.parse_args(argv)
    arms = args.arms or [("quickstart", [])]
    if len({name for name, _ in arms}) != len(arms):
        parser.error("two --arm share a name: give each arm its own NAME")

    import torch

    print(f"# {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads, CUDA {'yes' if torch.cuda.is_available() else 'no'}")
    print(f"# wdlab fit --config {CONFIG} --seed_everything SEED [ARGS]")
    print(f"{'arm':<14} {'seed':>4} {'wall s':>8} {'test err %':>10}  anytime snapshots (epoch: err %)")
    runs: list[Run] = []
    with tempfile.TemporaryDirectory(prefix="wdlab-quickstart-") as tmp:
        for seed in args.seeds:
            for name, extra in arms:
                run = run_once(name, extra, seed, Path(tmp), args.timeout)
                runs.append(run)
                shots = "  ".join(f"{epoch}: {100 * err:.2f}" for epoch, err in run.snapshots)
                print(f"{name:<14} {seed:>4} {run.wall_s:>8.1f} {100 * run.test_err:>10.2f}  {shots}", flush=True)
    print()
    for name, _ in arms:
        mine = [r for r in runs if r.arm == name]
        wall = statistics.fmean(r.wall_s for r in mine)
        mean, lo, hi = t_interval([100 * r.test_err for r in mine])
        interval = f" [{lo:.2f}, {hi:.2f}]" if math.isfinite(lo) else ""
        print(f"{name:<14} n={len(mine)}  wall {wall:.1f} s ({wall / 60:.2f} min)  test err {mean:.2f} %{interval}")
    base = arms[0][0]
    for name, _ in arms[1:]:
        by_seed = {r.seed: r.test_err for r in runs if r.arm == base}
        diffs = [100 * (r.test_err - by_seed[r.seed]) for r in runs if r.arm == name]
        mean, lo, hi = t_interval(diffs)
        interval = f", 95 % t interval [{lo:+.2f}, {hi:+.2f}]" if math.isfinite(lo) else ""
        print(f"{name} - {base}: {mean:+.2f} points (paired by seed, n={len(diffs)}{interval})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
