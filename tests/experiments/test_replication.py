"""The replication suite's commands stay working: each Fig. 2 panel of configs/replication/ as a tiny sweep
(two cells, one seed, one short epoch), then ``wdlab report`` over the four panels, end to end. (The suite's other
parts are tests/experiments/test_replication_parts.py.)"""

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

PANELS = {"sgd": "0.125", "sgdw": "0.125", "adam": "0.001", "adamw": "0.001"}  # lr of the two cells
TINY = ["--seeds", "1", "--trainer.max_epochs", "1", *builtin_data(64, 64, 32)]


def test_each_fig2_panel_runs_as_a_tiny_sweep_and_the_report_reads_them(tmp_path: Path) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    for panel, lr in PANELS.items():
        out = tmp_path / f"fig2_{panel}"
        done = subprocess.run(
            [sys.executable, "-m", "wdlab", "sweep", "--config", str(REPO / f"configs/replication/fig2_{panel}.yaml"),
             "--grid", f"model.optimizer.lr={lr}", "--grid", "model.optimizer.weight_decay=0,2**-8",
             "--out", str(out), "--no_report", "--jobs", "1", *TINY],  # one cell server: pytest keeps both cores busy
            cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600,
        )
        assert done.returncode == 0, done.stderr[-3000:]
        with (out / "results.csv").open() as handle:
            rows = list(csv.DictReader(handle))
        assert [(r["model.optimizer.weight_decay"], r["state"], r["optimizer"]) for r in rows] == [
            ("0", "complete", panel), ("0.00390625", "complete", panel)]
    report = subprocess.run(
        [sys.executable, "-m", "wdlab", "report", *(str(tmp_path / f"fig2_{p}") for p in PANELS),
         "--out", str(tmp_path / "report")],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600,
    )
    assert report.returncode == 0, report.stderr[-3000:]
    for panel in PANELS:
        assert f"{panel}: coupling slope" in report.stdout
    assert (tmp_path / "report" / "heatmap.png").is_file() and (tmp_path / "report" / "coupling.csv").is_file()
