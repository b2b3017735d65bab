"""The best-cell rule every replication script shares (``wdlab.experiments.results.best_cell``): the mean over
seeds of the cells whose every seed completed, ties to the smaller decay, then the smaller lr; and the
``docs/replication/best_cell.py`` command built on it, on a real results.csv."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from paths import REPO

from wdlab.experiments.results import best_cell, cell_means, complete_rows, read_results, write_results

LR, WD = "model.optimizer.lr", "model.optimizer.weight_decay"


def _rows(tmp_path: Path, cells: dict[tuple[float, float], list[float | None]]) -> list[dict[str, str]]:
    """results.csv with one row per (cell, seed); None is a failed seed."""
    rows = [((lr, wd, seed), {"optimizer": "adamw", "state": "failed" if err is None else "complete",
                              "final_test_err": err, "final_val_err": None if err is None else err + 0.01})
            for (lr, wd), errs in cells.items() for seed, err in enumerate(errs)]
    return read_results(write_results(tmp_path / "results.csv", [LR, WD], rows))


def test_cell_means_leave_out_a_cell_with_a_failed_seed(tmp_path: Path) -> None:
    rows = _rows(tmp_path, {(0.1, 0.0): [0.30, 0.20], (0.1, 0.5): [0.10, None], (0.2, 0.5): [0.25, 0.25]})
    assert cell_means(rows, (LR, WD)) == {(0.1, 0.0): pytest.approx(0.25), (0.2, 0.5): pytest.approx(0.25)}
    assert cell_means(rows, (LR, WD), "final_val_err")[(0.2, 0.5)] == pytest.approx(0.26)
    assert len(complete_rows(rows)) == 5
    # a cell that completed without the metric (e.g. no validation split: final_val_err empty) is not complete
    no_val = [{**rows[0], "final_val_err": ""}, rows[1]]
    assert complete_rows(no_val, "final_val_err") == [rows[1]] and len(complete_rows(no_val)) == 2
    assert cell_means(no_val, (LR, WD), "final_val_err") == {}


def test_the_best_cell_is_the_lowest_mean_and_ties_go_to_the_smaller_decay_then_lr(tmp_path: Path) -> None:
    # (0.1, 0.5) would win with its one complete seed (0.05): it has a failed seed, so it is out
    rows = _rows(tmp_path, {(0.2, 0.25): [0.20, 0.30], (0.1, 0.25): [0.26, 0.24], (0.4, 0.125): [0.25, 0.25],
                            (0.1, 0.5): [0.05, None], (0.3, 0.125): [0.15, 0.35]})
    assert best_cell(rows, LR, WD) == ((0.3, 0.125), pytest.approx(0.25))  # 4 tied at 0.25: decay, then lr
    only_failed = _rows(tmp_path, {(0.1, 0.5): [None, None]})
    assert best_cell(only_failed, LR, WD) is None


def test_best_cell_py_prints_the_cell_and_its_lambda_norm(tmp_path: Path) -> None:
    _rows(tmp_path, {(0.001, 2.0**-8): [0.20, 0.22], (0.001, 2.0**-6): [0.30, 0.31], (0.002, 2.0**-8): [0.19, None]})
    script = REPO / "docs" / "replication" / "best_cell.py"
    done = subprocess.run([sys.executable, str(script), str(tmp_path / "results.csv")], capture_output=True,
                          text=True, check=True)
    assert done.stdout.split() == ["0.001", "0.00390625"]
    assert "skipped 1 cell(s)" in done.stderr and "mean test error 21.00 % over 2 seeds" in done.stderr
    norm = subprocess.run([sys.executable, str(script), str(tmp_path / "results.csv"), "--lambda_norm", "50",
                           "--num_train", "1000", "--batch", "64"], capture_output=True, text=True, check=True)
    assert float(norm.stdout.split()[1]) == pytest.approx(2.0**-8 * (1000 * 50 / 64) ** 0.5)
