"""A sweep's seeds (a count, a range of fresh seeds, a list) and its validation column, through real cells."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from wdlab.experiments.grid import parse_seeds
from wdlab.experiments.results import read_results, read_scalars
from wdlab.experiments.sweep import SweepError

# PreActResNet-8 of width 4 on 96 built-in images, 32 of them held out for validation (fixed by split_seed),
# the training order following each cell's seed: two steps, a few seconds a cell.
CONFIG = """\
trainer: {max_epochs: 1, accelerator: cpu, devices: 1, log_every_n_steps: 1, enable_progress_bar: false,
          enable_model_summary: false}
model:
  net: {class_path: wdlab.models.PreActResNet, init_args: {depth: 8, base_width: 4, num_classes: 10}}
  optimizer: {name: sgdw, lr: 0.05, weight_decay: 0.001, schedule: cosine}
data:
  class_path: wdlab.data.BuiltinDataModule
  init_args: {batch_size: 32, num_train: 96, num_test: 64, val_split: 32, split_seed: 0, seed: null}
snapshots: {save: false}
"""


@pytest.mark.parametrize(
    ("given", "seeds"),
    [("3", [0, 1, 2]), ("100-104", [100, 101, 102, 103, 104]), ("7,3,5", [7, 3, 5]), ([200, 201], [200, 201]),
     (2, [0, 1])],
)
def test_seeds_are_a_count_a_range_or_a_list(given, seeds) -> None:
    assert parse_seeds(given) == seeds


@pytest.mark.parametrize("given", ["0", "", "a", "1,1", "5-3", "-2", "1.5"])
def test_bad_seeds_are_refused_with_the_forms_that_work(given) -> None:
    with pytest.raises(SweepError, match="give a count K"):
        parse_seeds(given)


@pytest.mark.trains
@pytest.mark.slow
def test_fresh_seeds_reach_the_cells_and_the_validation_error_is_recorded(tmp_path: Path) -> None:
    (tmp_path / "base.yaml").write_text(CONFIG)
    out = tmp_path / "sweep"
    command = [sys.executable, "-m", "wdlab", "sweep", "--config", "base.yaml", "--grid", "model.optimizer.lr=0.05",
               "--grid", "model.optimizer.weight_decay=0,0.001", "--seeds", "100-101", "--out", str(out), "--no_report"]
    done = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    rows = read_results(out)
    assert sorted({int(r["seed"]) for r in rows}) == [100, 101] and len(rows) == 4
    for row in rows:
        scalars = read_scalars(Path(row["run_dir"]))
        assert float(row["final_val_err"]) == pytest.approx(scalars["val/err"][-1][1], abs=1e-6)
        assert float(row["final_test_err"]) == pytest.approx(scalars["test/err"][-1][1], abs=1e-6)
        assert row["best_test_err"] == ""  # val/err is the held-out split here, not the test set
        config = (Path(row["run_dir"]) / "config.yaml").read_text()
        assert f"seed_everything: {row['seed']}" in config
