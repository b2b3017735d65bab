"""Round 2 on Fashion-MNIST: every part of docs/replication/PREREGISTRATION.md, section 4, as resumable sweeps.

    mkdir -p runs/replication/fashion_mnist && nohup python docs/replication/fashion_mnist/run_round2.py --jobs 2 \\
        > runs/replication/fashion_mnist/round2.log 2>&1 &

Every cell starts from ``configs/replication/fashion_mnist/round2_cell.yaml`` (the cell the pilot chose); the grids
are placed by the rules of the pre-registration from ``placement.csv`` (``pilot.py --stage 2``: alpha* and lambda*
per optimizer) and, for the parts after Fig. 2, from Fig. 2's own results by validation error:

* **Fig. 2** (``fig2_<optimizer>``): rows alpha* 2^k, k = -2..2; columns lambda = 0 and lambda* 2^j, j = -3..2
  (decoupled) or j = -4..3 (L2); seeds 100-104.
* **Figs. 1/3** (``fig13_<optimizer>``, Adam and AdamW): each at its best Fig. 2 cell (lowest mean validation error
  over the seeds, every cell of the panel a candidate, lambda = 0 included), seeds 200-207, validation and test
  error every epoch.
* **Fig. 4** (``fig4_<restarts>_<arm>`` and ``fig4_<restarts>_<arm>_cosine``, restarts adamwr and sgdwr): lr alpha*
  of AdamW / SGDW; lambda* = the best decay > 0 of the Fig. 2 decoupled panel's alpha* row (validation); T_0 =
  round(E / 7) epochs, T_mult 2, periods ending at T_0, 3 T_0, 7 T_0 (a snapshot at each end); cosine runs of
  exactly 3 T_0 and 7 T_0 epochs; seeds 300-307. Arm ``norm``: the paper's normalized decay, lambda_norm such that
  the last period's lambda is lambda* (the cosine runs keep that lambda_norm: lambda from their own length); arm
  ``raw``: lambda* in every period and in the cosine runs (AdamW / SGDW with the warm-restarts schedule).
* **Appendix B.1** (``b1_adamw``): AdamW at alpha*, run lengths T, 2T, 4T with T = E / 2, raw lambda = lambda* 2^(j/2),
  j = -6..6, with lambda* as for Fig. 4; seeds 400-402.

Each part's ``results.csv`` and study are copied to ``--docs`` as it completes (a fresh checkout resumes from the
study). ``--save_only`` copies what is done so far and runs nothing. ``--tiny`` runs the same code on a few cells
(CI's end-to-end check: one seed, the central row and column, Fig. 2 for Adam and AdamW, Fig. 4 for AdamWR);
other options (``--trainer.max_epochs 2``) go to every cell.
"""

from __future__ import annotations

import argparse
import csv
import shutil
import sqlite3
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import yaml

from wdlab.experiments.results import best_cell, cell_means, read_results
from wdlab.optim.decay import normalized_weight_decay

REPO = Path(__file__).resolve().parents[3]
CELL = REPO / "configs" / "replication" / "fashion_mnist" / "round2_cell.yaml"
HERE = Path(__file__).resolve().parent
LR, WD, WDN, EPOCHS = ("model.optimizer.lr", "model.optimizer.weight_decay", "model.optimizer.weight_decay_norm",
                       "trainer.max_epochs")
L2 = ("sgd", "adam")
FIG2 = ("sgd", "sgdw", "adam", "adamw")
PARTS = ("fig2", "fig13", "fig4", "b1")


@dataclass(frozen=True)
class Design:
    """The grid offsets and seeds of each part (the pre-registered ones, or ``--tiny``'s)."""

    fig2_panels: Sequence[str] = FIG2
    rows: Sequence[int] = (-2, -1, 0, 1, 2)
    decoupled_columns: Sequence[int] = (-3, -2, -1, 0, 1, 2)
    l2_columns: Sequence[int] = (-4, -3, -2, -1, 0, 1, 2, 3)
    b1_half_octaves: Sequence[int] = tuple(range(-6, 7))
    fig4_pairs: Sequence[tuple[str, str]] = (("adamwr", "adamw"), ("sgdwr", "sgdw"))  # (restarts, its cosine twin)
    fig2_seeds: str = "100-104"
    fig13_seeds: str = "200-207"
    fig4_seeds: str = "300-307"
    b1_seeds: str = "400-402"


# Fig. 2 for Adam and AdamW only: the parts after it read those two panels, and they cover both column rules (L2 and
# decoupled); SGD's and SGDW's panels run the same code
TINY = Design(fig2_panels=("adam", "adamw"), rows=(0,), decoupled_columns=(0,), l2_columns=(0,), b1_half_octaves=(0,),
              fig4_pairs=(("adamwr", "adamw"),), fig2_seeds="100-100", fig13_seeds="200-200", fig4_seeds="300-300",
              b1_seeds="400-400")


def read_placement(path: Path) -> dict[str, tuple[float, float]]:
    """``{optimizer: (alpha*, lambda*)}`` from pilot.py's placement.csv."""
    with path.open(newline="") as handle:
        return {row["optimizer"]: (float(row["lr"]), float(row["weight_decay"])) for row in csv.DictReader(handle)}


def values(numbers: Sequence[float]) -> str:
    """``--grid`` values: exact reprs (a power of two stays one, bit for bit)."""
    return ",".join(repr(float(x)) for x in numbers)


def best_val_cell(rows: list[dict[str, str]]) -> tuple[float, float]:
    """Figs. 1/3: the panel's cell of lowest mean validation error (ties: smaller decay, then smaller lr)."""
    best = best_cell(rows, LR, WD, metric="final_val_err")
    if best is None:
        raise SystemExit("run_round2: no Fig. 2 cell has all its seeds complete: finish Fig. 2 first")
    return best[0]


def best_decay_at(rows: list[dict[str, str]], lr: float) -> float:
    """Figs. 4 and B.1: the best decay > 0 (lowest mean validation error) of the row at ``lr``."""
    means = {wd: err for (row_lr, wd), err in cell_means(rows, (LR, WD), "final_val_err").items()
             if row_lr == lr and wd > 0}
    if not means:
        raise SystemExit(f"run_round2: the Fig. 2 row at lr {lr!r} has no complete cell with decay > 0")
    return min(means, key=lambda wd: (means[wd], wd))


class Runner:
    def __init__(self, args: argparse.Namespace, extra: list[str]) -> None:
        self.runs: Path = args.runs
        self.docs: Path = args.docs
        self.jobs: int = args.jobs
        self.save_only: bool = args.save_only
        self.design = TINY if args.tiny else Design()
        self.extra = extra
        cell = yaml.safe_load(CELL.read_text())
        self.epochs = int(_option(extra, f"--{EPOCHS}", cell["trainer"]["max_epochs"]))
        data = cell["data"]["init_args"]
        self.batch = int(_option(extra, "--data.init_args.batch_size", data["batch_size"]))
        self.num_train = int(_option(extra, "--data.init_args.train_subset", data["train_subset"]))
        self.placement = read_placement(args.placement)

    def sweep(self, part: str, *options: str) -> list[dict[str, str]]:
        """One resumable sweep into ``runs/part``; its results.csv and study copied to ``docs/part``."""
        out, saved = self.runs / part, self.docs / part
        if not (out / "sweep.db").is_file() and (saved / "sweep.db").is_file():
            out.mkdir(parents=True, exist_ok=True)
            shutil.copy(saved / "sweep.db", out / "sweep.db")
        if self.save_only and not (out / "sweep.db").is_file():
            return []
        # the options every cell gets first: a part's own (e.g. Fig. 4's run length) come after and win
        command = [sys.executable, "-m", "wdlab", "sweep", "--config", str(CELL), "--out", str(out),
                   "--jobs", str(self.jobs), "--no_report", *(["--results_only"] if self.save_only else []),
                   *self.extra, *options]
        print(f"== {part}: {' '.join(command)}", flush=True)
        done = subprocess.run(command, check=False)
        saved.mkdir(parents=True, exist_ok=True)
        if (out / "results.csv").is_file():
            shutil.copy(out / "results.csv", saved / "results.csv")
        if (out / "sweep.db").is_file():  # SQLite's online backup: consistent even while a worker writes
            with sqlite3.connect(out / "sweep.db") as source, sqlite3.connect(saved / "sweep.db") as target:
                source.backup(target)
        if done.returncode != 0:
            raise SystemExit(f"run_round2: {part}: wdlab sweep exited {done.returncode}; re-run to resume")
        rows = read_results(out)
        if any(row["state"] != "complete" for row in rows) and not self.save_only:
            raise SystemExit(f"run_round2: {part} has cells that did not complete; re-run to resume them")
        return rows

    def fig2(self) -> dict[str, list[dict[str, str]]]:
        results = {}
        for optimizer in self.design.fig2_panels:
            alpha, decay = self.placement[optimizer]
            columns = self.design.l2_columns if optimizer in L2 else self.design.decoupled_columns
            results[optimizer] = self.sweep(
                f"fig2_{optimizer}", f"--model.optimizer.name={optimizer}", "--seeds", self.design.fig2_seeds,
                f"--trainer.check_val_every_n_epoch={self.epochs}",  # one validation pass, at the end
                "--grid", f"{LR}={values([alpha * 2.0**k for k in self.design.rows])}",
                "--grid", f"{WD}={values([0.0] + [decay * 2.0**j for j in columns])}")
        return results

    def fig13(self, fig2: dict[str, list[dict[str, str]]]) -> None:
        for optimizer in ("adam", "adamw"):
            lr, decay = best_val_cell(fig2[optimizer])
            self.sweep(f"fig13_{optimizer}", f"--model.optimizer.name={optimizer}", "--seeds",
                       self.design.fig13_seeds, "--grid", f"{LR}={values([lr])}", "--grid", f"{WD}={values([decay])}",
                       "--trainer.check_val_every_n_epoch=1",
                       "--trainer.callbacks+=wdlab.training.TestCurve")  # test error every epoch too (Fig. 3)

    def fig4(self, fig2: dict[str, list[dict[str, str]]]) -> None:
        t0 = max(1, round(self.epochs / 7))
        last_period, ends = 4 * t0, (3 * t0, 7 * t0)
        for restarts, decoupled in self.design.fig4_pairs:
            alpha = self.placement[decoupled][0]
            decay = best_decay_at(fig2[decoupled], alpha)
            # lambda_norm whose last period (4 T_0 epochs) has lambda = lambda*
            decay_norm = decay / normalized_weight_decay(1.0, self.batch, self.num_train, last_period)
            restart = ["--model.optimizer.schedule=warm_restarts", f"--model.optimizer.t0_epochs={t0}",
                       "--model.optimizer.t_mult=2", "--snapshots.save=true"]
            arms = {
                "norm": (restarts, [f"--grid={WDN}={values([decay_norm])}"]),
                "raw": (decoupled, [f"--grid={WD}={values([decay])}"]),
            }
            for arm, (name, decay_grid) in arms.items():
                common = ["--seeds", self.design.fig4_seeds, f"--grid={LR}={values([alpha])}", *decay_grid]
                self.sweep(f"fig4_{restarts}_{arm}", f"--model.optimizer.name={name}", *restart,
                           f"--{EPOCHS}={7 * t0}", f"--trainer.check_val_every_n_epoch={7 * t0}", *common)
                self.sweep(f"fig4_{restarts}_{arm}_cosine", f"--model.optimizer.name={decoupled}",
                           "--model.optimizer.schedule=cosine", f"--grid={EPOCHS}={','.join(map(str, ends))}",
                           f"--trainer.check_val_every_n_epoch={t0}", *common)

    def b1(self, fig2: dict[str, list[dict[str, str]]]) -> None:
        alpha = self.placement["adamw"][0]
        decay = best_decay_at(fig2["adamw"], alpha)
        half = max(1, round(self.epochs / 2))
        self.sweep("b1_adamw", "--model.optimizer.name=adamw", "--seeds", self.design.b1_seeds,
                   f"--grid={LR}={values([alpha])}",
                   f"--grid={WD}={values([decay * 2.0 ** (j / 2) for j in self.design.b1_half_octaves])}",
                   f"--grid={EPOCHS}={half},{2 * half},{4 * half}",
                   f"--trainer.check_val_every_n_epoch={half}")  # a validation pass at the end of every length


def _option(extra: Sequence[str], name: str, default: object) -> object:
    """The value of ``name`` among the pass-through options (``--name V`` or ``--name=V``), else ``default``."""
    for i, arg in enumerate(extra):
        if arg == name and i + 1 < len(extra):
            return extra[i + 1]
        if arg.startswith(name + "="):
            return arg.split("=", 1)[1]
    return default


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     epilog="Other --key value options go to every cell.")
    parser.add_argument("--parts", default=",".join(PARTS),
                        help=f"comma-separated, of {', '.join(PARTS)} (fig2 always runs first: it places the others)")
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--runs", type=Path, default=Path("runs/replication/fashion_mnist"))
    parser.add_argument("--docs", type=Path, default=HERE)
    parser.add_argument("--placement", type=Path, default=HERE / "placement.csv")
    parser.add_argument("--save_only", action="store_true")
    parser.add_argument("--tiny", action="store_true")
    args, extra = parser.parse_known_args(argv)
    parts = [p.strip() for p in args.parts.split(",") if p.strip()]
    unknown = sorted(set(parts) - set(PARTS))
    if unknown:
        parser.error(f"--parts {','.join(unknown)}: not a part; use a comma-separated list of {', '.join(PARTS)}")
    if not args.placement.is_file():
        parser.error(f"--placement {args.placement}: no such file; run pilot.py --stage 2 first (it writes it)")
    runner = Runner(args, extra)
    fig2 = runner.fig2()  # every later part is placed from Fig. 2's results: it runs (or resumes) first
    if not all(fig2.values()):
        if args.save_only:
            return 0
        print("run_round2: Fig. 2 is not complete; the later parts wait for it", file=sys.stderr)
        return 1
    for part in PARTS[1:]:
        if part in parts:
            getattr(runner, part)(fig2)
    print(f"round 2: {', '.join(parts)} {'saved' if args.save_only else 'done'}")
    return 0

if __name__ == "__main__":
    raise SystemExit(main())
