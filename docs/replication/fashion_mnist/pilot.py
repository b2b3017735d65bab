"""Round 2 pilot, stage 1: the pre-registered rule that picks the cell (docs/replication/PREREGISTRATION.md, §3).

Reads ``docs/replication/fashion_mnist/pilot_<candidate>_<optimizer>/results.csv`` and prints, per candidate and
optimizer: the best decay > 0 by mean validation error, its mean final training loss (criterion a: <= 0.15), the
validation-error gain of that decay over decay 0 and the pooled seed SD (criterion b: gain >= 1 point and >= 3 SD),
and the candidate's mean cell time (criterion c: <= 54 s); then the candidate the rule picks. Exit 1 when a part is
missing or incomplete.

    python docs/replication/fashion_mnist/pilot.py [--dir docs/replication/fashion_mnist]
"""

from __future__ import annotations

import argparse
import math
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np

from wdlab.experiments.results import read_results

CANDIDATES = ("A", "B", "C", "D", "E")  # D, E: the deviation of 2026-12-07
OPTIMIZERS = ("sgdw", "adamw")
DECAY = "model.optimizer.weight_decay"
MAX_TRAIN_LOSS = 0.15  # (a)
MIN_GAIN_POINTS = 1.0  # (b)
MIN_GAIN_SDS = 3.0  # (b)
MAX_CELL_SECONDS = 54.0  # (c): 800 Fig. 2 cells, two at a time, in 6 hours


def judge(root: Path, candidate: str) -> dict[str, object]:
    """The criteria of one candidate; raises FileNotFoundError / ValueError for missing or incomplete parts."""
    cells: dict[tuple[str, float], list[dict[str, str]]] = defaultdict(list)
    walls = []
    for optimizer in OPTIMIZERS:
        rows = read_results(root / f"pilot_{candidate}_{optimizer}")
        if any(r["state"] != "complete" for r in rows):
            raise ValueError(f"pilot_{candidate}_{optimizer} has cells that are not complete: run run_pilot.sh")
        for row in rows:
            cells[(optimizer, float(row[DECAY]))].append(row)
            walls.append(float(row["wall_s"]))
    sds = [np.std([float(r["final_val_err"]) for r in rows], ddof=1) for rows in cells.values() if len(rows) > 1]
    pooled = float(math.sqrt(np.mean(np.square(sds)))) * 100 if sds else math.nan
    result: dict[str, object] = {"pooled_sd": pooled, "cell_s": float(np.mean(walls)), "optimizers": {}}
    for optimizer in OPTIMIZERS:
        mean = {d: np.mean([float(r["final_val_err"]) for r in rows]) * 100
                for (o, d), rows in cells.items() if o == optimizer}
        loss = {d: np.mean([float(r["final_train_loss"]) for r in rows]) for (o, d), rows in cells.items()
                if o == optimizer}
        best = min((d for d in mean if d > 0), key=lambda d: mean[d])
        gain = mean[0.0] - mean[best]
        result["optimizers"][optimizer] = {  # type: ignore[index]
            "best_decay": best, "val_err": mean[best], "val_err_no_decay": mean[0.0], "gain": gain,
            "train_loss": loss[best], "a": loss[best] <= MAX_TRAIN_LOSS,
            "b": gain >= MIN_GAIN_POINTS and gain >= MIN_GAIN_SDS * pooled,
        }
    result["c"] = result["cell_s"] <= MAX_CELL_SECONDS  # type: ignore[operator]
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dir", type=Path, default=Path(__file__).resolve().parent)
    args = parser.parse_args(argv)
    judged = {}
    for candidate in CANDIDATES:
        try:
            judged[candidate] = judge(args.dir, candidate)
        except (OSError, ValueError) as error:
            print(f"pilot.py: candidate {candidate}: {error}", file=sys.stderr)
            return 1
    for candidate, result in judged.items():
        print(f"candidate {candidate}: mean cell {result['cell_s']:.1f} s (c: {'pass' if result['c'] else 'fail'}), "
              f"pooled seed SD {result['pooled_sd']:.2f} points")
        for optimizer, o in result["optimizers"].items():  # type: ignore[union-attr]
            print(f"  {optimizer}: best decay 2^{math.log2(o['best_decay']):g}, validation error {o['val_err']:.2f} % "
                  f"(decay 0: {o['val_err_no_decay']:.2f} %, gain {o['gain']:+.2f} points: "
                  f"b {'pass' if o['b'] else 'fail'}), training loss {o['train_loss']:.3f} "
                  f"(a {'pass' if o['a'] else 'fail'})")
    eligible = [c for c, r in judged.items()
                if r["c"] and all(o["b"] for o in r["optimizers"].values())]  # type: ignore[union-attr]
    if not eligible:
        print("rule: no candidate passes (b) and (c): extend the pilot by a deviation (PREREGISTRATION.md, section 3)")
        return 0
    loss = {c: np.mean([o["train_loss"] for o in judged[c]["optimizers"].values()]) for c in eligible}  # type: ignore[union-attr]
    chosen = min(eligible, key=lambda c: loss[c])
    limitation = "" if all(o["a"] for o in judged[chosen]["optimizers"].values()) else (  # type: ignore[union-attr]
        "; criterion (a) fails: a limitation to report")
    print(f"rule: candidate {chosen} (passing b and c: {', '.join(eligible)}; lowest training loss){limitation}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
