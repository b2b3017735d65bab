"""wdlab's optimizers, anytime snapshots and exact resume for a LightningModule that is not an image classifier:
a regression MLP (with dropout: it draws from the global RNG) on random tensors, trained from plain shuffled
DataLoaders with a plain ``lightning.Trainer`` and the callbacks ResumableCheckpoint + AnytimeSnapshots."""

from __future__ import annotations

import math
from pathlib import Path

import lightning as L
import pytest
from lightning_helpers import MemoryLogger, Regression, loaders
from resume_helpers import SignalAtBatch, assert_identical, load_checkpoint, training_state

from wdlab.training import AnytimeSnapshots, CheckpointError, Preempted, ResumableCheckpoint

pytestmark = pytest.mark.trains

EPOCHS, STEPS = 3, 12  # 32 points / batch 8 = 4 updates per epoch (lightning_helpers.OPTIMIZER's periods)


def _fit(run_dir: Path, *callbacks, ckpt_path=None, **trainer_kwargs):
    L.seed_everything(0, verbose=False)
    model = Regression()
    train, val = loaders()
    logger = MemoryLogger()
    settings = {"max_epochs": EPOCHS, "accelerator": "cpu", "devices": 1, "deterministic": True, "logger": logger,
                "log_every_n_steps": 1, "enable_progress_bar": False, "enable_model_summary": False,
                "default_root_dir": str(run_dir)}
    settings.update(trainer_kwargs)
    trainer = L.Trainer(callbacks=[ResumableCheckpoint(dirpath=run_dir / "checkpoints"),
                                   AnytimeSnapshots(dirpath=run_dir / "snapshots"), *callbacks], **settings)
    trainer.fit(model, train, val, ckpt_path=ckpt_path)
    return model, trainer, logger


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("uninterrupted")
    _, trainer, logger = _fit(run_dir)
    return run_dir, trainer, logger


def test_configure_optimizers_fits_any_module_to_its_plain_loaders(tmp_path):
    """Global batch = loader batch x devices x accumulation, training-set size = the loader's dataset length,
    the normalized decay from them, the schedule stepped per update; a resume that changes them is refused."""
    model, trainer, _ = _fit(tmp_path, max_epochs=1, accumulate_grad_batches=2, num_sanity_val_steps=0)
    assert model.run_facts == {"steps_per_epoch": 2, "max_epochs": 1, "global_batch_size": 16, "num_train": 32,
                               "world_size": 1}
    group = trainer.optimizers[0].param_groups[0]
    # lambda_norm sqrt(b / (B T)) of the period after the first (T = 2 epochs), where the run ended
    assert group["weight_decay"] == pytest.approx(0.025 * math.sqrt(16 / (32 * 2)))
    config = trainer.lr_scheduler_configs[0]
    assert config.interval == "step" and config.scheduler.last_epoch == trainer.global_step == 2
    assert load_checkpoint(tmp_path / "checkpoints" / "last.ckpt")["wdlab_run_shape"] == {
        "global_batch_size": 16, "steps_per_epoch": 2, "num_train": 32}
    with pytest.raises(CheckpointError, match="trained with 16 images per step"):
        _fit(tmp_path, max_epochs=2, num_sanity_val_steps=0, ckpt_path=str(tmp_path / "checkpoints" / "last.ckpt"))


def test_period_end_snapshots_of_any_module_log_its_validation_metrics(uninterrupted):
    run_dir, trainer, logger = uninterrupted
    names = sorted(p.name for p in (run_dir / "snapshots").glob("*.ckpt"))
    assert names == ["period-0-epoch-1.ckpt", "period-1-epoch-3.ckpt"]
    anytime = logger.anytime()
    assert [step for step, _ in anytime] == [1, 3]  # logged against the epoch at which the period ends
    assert all(set(m) == {"anytime/val_loss", "anytime/next_lambda"} or set(m) == {"anytime/val_loss"}
               for _, m in anytime), anytime
    # the snapshot's value is the model's validation loss at that step: the final one equals a fresh evaluation
    last = trainer.validate(trainer.lightning_module, loaders()[1], verbose=False)[0]["val_loss"]
    assert anytime[-1][1]["anytime/val_loss"] == pytest.approx(last, rel=1e-6)
    snap = load_checkpoint(run_dir / "snapshots" / "period-0-epoch-1.ckpt")["wdlab_snapshot"]
    assert snap["step"] == 4 and set(snap["metrics"]) == {"val_loss"}


@pytest.mark.parametrize("stop_at_batch", [2, 4, 6])  # mid first epoch; its last batch (a period end); mid epoch 2
def test_sigterm_then_resume_of_any_module_is_bit_identical(uninterrupted, tmp_path, stop_at_batch):
    run_dir, _, logger = uninterrupted
    with pytest.raises(Preempted):
        _fit(tmp_path, SignalAtBatch(stop_at_batch))
    assert load_checkpoint(tmp_path / "checkpoints" / "last.ckpt")["global_step"] == stop_at_batch
    _, _, resumed_logger = _fit(tmp_path, ckpt_path=str(tmp_path / "checkpoints" / "last.ckpt"))
    assert_identical(training_state(load_checkpoint(run_dir / "checkpoints" / "last.ckpt")),
                     training_state(load_checkpoint(tmp_path / "checkpoints" / "last.ckpt")))
    assert resumed_logger.anytime() == [a for a in logger.anytime() if a[0] * 4 > stop_at_batch]
    for snapshot in ("period-0-epoch-1.ckpt", "period-1-epoch-3.ckpt"):
        assert_identical(load_checkpoint(run_dir / "snapshots" / snapshot)["state_dict"],
                         load_checkpoint(tmp_path / "snapshots" / snapshot)["state_dict"], snapshot)
