"""A run whose config names components (``net: net.yaml``, ``data: data.yaml``) resumes with ``--ckpt_path auto``.

jsonargparse records where it read each component (``__path__``); that is not part of the model or the data, so a
resume must not take it for an option the checkpoint lacks (it did: every interrupted sweep cell of a config with
components failed to resume).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.trains

CONFIG = """\
trainer: {max_epochs: 1, accelerator: cpu, devices: 1, enable_progress_bar: false, enable_model_summary: false,
          logger: {init_args: {name: run}}}
model:
  net: net.yaml
  optimizer: {name: sgdw, lr: 0.05, weight_decay: 0.001, schedule: cosine}
data: data.yaml
snapshots: {save: false}
"""
NET = "class_path: wdlab.models.PreActResNet\ninit_args: {depth: 8, base_width: 4, num_classes: 10}\n"
DATA = "class_path: wdlab.data.BuiltinDataModule\ninit_args: {batch_size: 32, num_train: 64, num_test: 32}\n"


@pytest.mark.slow
def test_a_config_with_components_resumes_from_its_last_checkpoint(tmp_path: Path) -> None:
    for name, text in (("base.yaml", CONFIG), ("net.yaml", NET), ("data.yaml", DATA)):
        (tmp_path / name).write_text(text)
    command = [sys.executable, "-m", "wdlab", "fit", "--config", "base.yaml",
               "--trainer.logger.init_args.save_dir", str(tmp_path / "runs"), "--ckpt_path", "auto"]
    first = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert first.returncode == 0, first.stderr[-2000:]
    assert (tmp_path / "runs" / "run" / "checkpoints" / "last.ckpt").is_file()
    again = subprocess.run([*command, "--trainer.max_epochs", "2"], cwd=tmp_path, capture_output=True, text=True,
                           timeout=600)
    assert again.returncode == 0, again.stderr[-2000:]
    assert "not set in the checkpoint" not in again.stderr
