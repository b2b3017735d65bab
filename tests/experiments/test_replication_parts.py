"""The replication suite's other parts stay working: Figs. 1/3, 4 and B.1 of configs/replication/ as tiny sweeps
with the settings run_suite.sh passes, then docs/replication/summarize.py over them, end to end. (The Fig. 2
panels and ``wdlab report`` are tests/experiments/test_replication.py: two modules, so that pytest's two workers
run them at once.)"""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

import pytest
from paths import REPO
from tiny_runs import builtin_data

pytestmark = [pytest.mark.slow, pytest.mark.trains]


def _sweep(tmp_path: Path, part: str, *args: str, config: str = "") -> list[dict[str, str]]:
    out = tmp_path / part
    done = subprocess.run(
        [sys.executable, "-m", "wdlab", "sweep", "--config", str(REPO / f"configs/replication/{config or part}.yaml"),
         "--out", str(out), "--no_report", "--jobs", "1",  # one cell server: pytest already keeps both cores busy
         *builtin_data(64, 64, 32), *args],
        cwd=tmp_path, env={**os.environ, "OMP_NUM_THREADS": "1"}, capture_output=True, text=True, timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    with (out / "results.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert rows and all(r["state"] == "complete" for r in rows), rows
    return rows


def test_figs_1_3_4_and_b1_run_as_tiny_sweeps_and_summarize_reads_them(tmp_path: Path) -> None:
    """The suite's other parts with the settings run_suite.sh passes (lr, decay on the command line), two cells
    each, then docs/replication/summarize.py over them: every claim gets its line."""
    one = ["--grid", "model.optimizer.lr=0.001"]
    for opt in ("adam", "adamw"):
        _sweep(tmp_path, f"fig13_{opt}", *one, "--grid", "model.optimizer.weight_decay=0.004", "--seeds", "2",
               "--trainer.max_epochs", "2", "--trainer.check_val_every_n_epoch", "1")
    for restarts, cosine in (("adamwr", "adamw"), ("sgdwr", "sgdw")):
        lr = ["--grid", "model.optimizer.lr=0.001" if "adam" in restarts else "model.optimizer.lr=0.1"]
        decay = ["--grid", "model.optimizer.weight_decay_norm=0.1"]
        # periods end at epochs 1 and 3 (t0 1, t_mult 2); the cosine runs are exactly that long
        _sweep(tmp_path, f"fig4_{restarts}", *lr, *decay, "--seeds", "2", "--trainer.max_epochs", "3",
               "--model.optimizer.t0_epochs", "1")
        _sweep(tmp_path, f"fig4_{cosine}_cosine", *lr, *decay, "--seeds", "1", "--grid", "trainer.max_epochs=1,3")
    _sweep(tmp_path, "b1_adamw", *one, "--grid", "trainer.max_epochs=1,2", "--grid",
           "model.optimizer.weight_decay=2**-8,2**-6", "--seeds", "1")
    for part, epochs in (("b1_adamw_t50", "3"), ("b1_adamw_t200", "4")):  # run_suite.sh's T = 50 and 200 parts
        _sweep(tmp_path, part, *one, "--grid", f"trainer.max_epochs={epochs}", "--grid",
               "model.optimizer.weight_decay=2**-8,2**-6", "--seeds", "1", config="b1_adamw")
    summary = subprocess.run(
        [sys.executable, str(REPO / "docs/replication/summarize.py"), "--runs", str(tmp_path), "--out", str(tmp_path)],
        cwd=tmp_path, capture_output=True, text=True, timeout=600,
    )
    assert summary.returncode == 0, summary.stderr[-3000:]
    assert all(f"b1 T = {t}: headroom" in summary.stdout for t in (1, 2, 3, 4)), summary.stdout
    with (tmp_path / "suite_summary.csv").open() as handle:
        measures = [row["measure"] for row in csv.DictReader(handle)]
    assert measures[:2] == ["test error Adam - AdamW", measures[1]] and measures[1].startswith("test error at training")
    assert [m.split(" (")[0] for m in measures[2:6]] == [
        "adamwr snapshot - adamw cosine at epoch 1", "adamwr snapshot - adamw cosine at epoch 3",
        "sgdwr snapshot - sgdw cosine at epoch 1", "sgdwr snapshot - sgdw cosine at epoch 3"]
    assert measures[6:] == ["d log2 lambda* / d log2 T (raw)", "d log2 lambda_norm* / d log2 T"]
    assert (tmp_path / "fig13_adamw" / "curves.csv").is_file() and (tmp_path / "fig4_sgdwr" / "anytime.csv").is_file()
