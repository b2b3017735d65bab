"""What makes a re-run the same sweep: the configs' content (not their comments), grid, seeds, options."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest

from wdlab.experiments.grid import SweepSpec
from wdlab.experiments.sweep import SPEC_ATTR, Sweep, SweepError

CONFIG = """\
# A header that may be corrected later.
trainer: {max_epochs: 1}
model: {optimizer: {name: sgdw, lr: 0.05}}
sweep:
  seeds: 2
  grid:
    model.optimizer.lr: [0.1]
"""


def _spec(tmp_path: Path, text: str) -> SweepSpec:
    config = tmp_path / "base.yaml"
    config.write_text(text)
    return SweepSpec(configs=[config], grid={"model.optimizer.weight_decay": [0.0, 0.001]}, seeds=[0, 1],
                     passthrough=[], out=tmp_path / "out")


def test_comments_and_the_sweep_preset_do_not_change_the_fingerprint_the_content_does(tmp_path: Path) -> None:
    first = _spec(tmp_path, CONFIG).fingerprint()
    assert _spec(tmp_path, CONFIG.replace("may be corrected later", "was corrected")).fingerprint() == first
    assert _spec(tmp_path, CONFIG.replace("[0.1]", "[0.2]")).fingerprint() == first  # the grid is its own entry
    assert _spec(tmp_path, CONFIG.replace("lr: 0.05", "lr: 0.06")).fingerprint() != first
    assert _spec(tmp_path, CONFIG.replace("max_epochs: 1", "max_epochs: 2")).fingerprint() != first


def test_a_study_recorded_by_config_bytes_is_accepted_once_and_upgraded(tmp_path: Path) -> None:
    spec = _spec(tmp_path, CONFIG)
    spec.out.mkdir()
    storage = f"sqlite:///{spec.out / 'sweep.db'}"
    study = optuna.create_study(study_name="out", storage=storage)
    study.set_user_attr(SPEC_ATTR, spec.legacy_fingerprint())  # what an older wdlab recorded
    Sweep(spec, None, None, 1, 120)
    assert optuna.load_study(study_name="out", storage=storage).user_attrs[SPEC_ATTR] == spec.fingerprint()
    # the header corrected afterwards: still the same sweep
    Sweep(_spec(tmp_path, CONFIG.replace("may be corrected later", "was corrected")), None, None, 1, 120)
    with pytest.raises(SweepError, match="different config, grid, seeds or options"):
        Sweep(_spec(tmp_path, CONFIG.replace("lr: 0.05", "lr: 0.06")), None, None, 1, 120)


def test_a_legacy_record_of_other_bytes_is_still_refused(tmp_path: Path) -> None:
    spec = _spec(tmp_path, CONFIG)
    spec.out.mkdir()
    storage = f"sqlite:///{spec.out / 'sweep.db'}"
    study = optuna.create_study(study_name="out", storage=storage)
    other = tmp_path / "other"
    other.mkdir()
    study.set_user_attr(SPEC_ATTR, _spec(other, CONFIG.replace("lr: 0.05", "lr: 0.07")).legacy_fingerprint())
    with pytest.raises(SweepError, match="different config"):
        Sweep(_spec(tmp_path, CONFIG), None, None, 1, 120)
