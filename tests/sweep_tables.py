"""Synthetic sweeps whose answer is known, written as real ``results.csv`` files, and the report run on them.

Shared by the report's tests (``test_report_stats.py``, ``test_report_rules.py``) and round 2's summary and
figure tests (:func:`write_part`).
"""

from __future__ import annotations

import csv
from collections.abc import Callable
from pathlib import Path

import numpy as np

from wdlab.cli import main
from wdlab.experiments.results import write_results

GRID = ["model.optimizer.lr", "model.optimizer.weight_decay"]
LOG2_LRS = tuple(range(-7, -2))  # 5 rows
LOG2_DECAYS = tuple(range(-12, -5))  # 7 columns: 2^-12 .. 2^-6
ORIGINAL_COLUMNS = ["panel", "metric", "slope", "top_k_correlation", "rows", "top_k", "best", "best_lr", "best_decay"]

Error = Callable[[float, float], float]  # (log2 lr, log2 decay or None for decay 0) -> mean test error


def write_sweep(
    path: Path,
    optimizer: str,
    error: Error,
    spread: Callable[[int, int, int], float] | float = 0.0,
    seeds: int = 3,
    log2_lrs: tuple[int, ...] = LOG2_LRS,
    log2_decays: tuple[float | None, ...] = LOG2_DECAYS,
    failed: tuple[tuple[int, float | None], ...] = (),
    train_loss: Callable[[float, float | None, int], float] | float = 0.1,
    seed_ids: tuple[int, ...] | None = None,
) -> Path:
    """A sweep's results.csv: each cell's seeds are its mean plus offsets that sum to 0 over the seeds.

    ``spread``: the offsets' size (seeds get -s, ..., +s symmetrically), or a function (row, column,
    seed) -> offset. ``failed``: cells (log2 lr, log2 decay) whose every seed failed. ``train_loss``: each
    cell's final training loss, or a function (log2 lr, log2 decay, seed) -> loss. ``seed_ids``: the
    seeds' numbers in results.csv (default 0..seeds-1).
    """
    rows = []
    for i, a in enumerate(log2_lrs):
        for j, d in enumerate(log2_decays):
            decay = 0.0 if d is None else 2.0 ** float(d)
            for seed in range(seeds):
                if callable(spread):
                    offset = spread(i, j, seed)
                else:
                    offset = spread * (np.linspace(-1.0, 1.0, seeds)[seed] if seeds > 1 else 0.0)
                record = {
                    "optimizer": optimizer,
                    "state": "failed" if (a, d) in failed else "complete",
                    "final_test_err": None if (a, d) in failed else error(a, d) + offset,
                    "best_test_err": None,
                    "final_train_loss": train_loss(a, d, seed) if callable(train_loss) else train_loss,
                    "epochs": 10,
                    "wall_s": 1.0,
                    "run_dir": f"runs/{optimizer}/{i}_{j}_{seed}",
                }
                seed_id = seed_ids[seed] if seed_ids is not None else seed
                rows.append(((2.0 ** float(a), decay, seed_id), record))
    path.mkdir(parents=True, exist_ok=True)
    return write_results(path / "results.csv", GRID, rows)


def report(paths: list[Path], out: Path, capsys, *extra: str) -> tuple[list[dict[str, str]], list[dict[str, str]], str]:
    """Run ``wdlab report``; returns coupling.csv's rows, optima.csv's rows and stdout."""
    assert main(["report", *map(str, paths), "--out", str(out), *extra]) == 0
    printed = capsys.readouterr().out
    with (out / "coupling.csv").open(newline="") as handle:
        coupling_rows = list(csv.DictReader(handle))
    with (out / "optima.csv").open(newline="") as handle:
        optima_rows = list(csv.DictReader(handle))
    return coupling_rows, optima_rows, printed


def diagonal(a: float, d: float | None) -> float:
    """L2-like: the best decay is 2^(-14 - log2 lr), only the product matters."""
    return 0.30 if d is None else 0.20 + 0.01 * (a + d + 14) ** 2 + 0.002 * (a + 5) ** 2


def vertical(a: float, d: float | None) -> float:
    """Decoupled: the best decay is 2^-9 at every lr."""
    return 0.30 if d is None else 0.20 + 0.01 * (d + 9) ** 2 + 0.002 * (a + 5) ** 2


def write_part(docs: Path, part: str, keys: list[str], cells: list[tuple[tuple, int, dict]]) -> None:
    """``<docs>/<part>/results.csv`` of a round-2 part whose cells all completed: (grid, seed, {column: value})."""
    rows = [((*grid, seed), {"optimizer": part, "state": "complete", "epochs": 10, "wall_s": 1.0,
                             "run_dir": f"runs/replication/fashion_mnist/{part}/cell_{i}_seed_{seed}", **values})
            for i, (grid, seed, values) in enumerate(cells)]
    (docs / part).mkdir(parents=True, exist_ok=True)
    write_results(docs / part / "results.csv", keys, rows)
