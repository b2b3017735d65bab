"""What the resume tests share: the run they stop and resume (:data:`RUN`), the comparison of two checkpoints
(:func:`training_state`, :func:`assert_identical`), and the callbacks they inject with ``--trainer.callbacks
resume_helpers.X`` (importable: ``tests/`` is on ``sys.path`` here and on the subprocesses' ``PYTHONPATH``)."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback
from paths import QUICKSTART
from tiny_runs import QUIET, builtin_data

# Shake-Shake (alpha/beta from the global RNG) + device-side augmentation (global RNG) + adamwr with
# t0 = 1 epoch, t_mult = 2: 256 images / batch 64 = 4 updates per epoch; periods end after update 4
# (epoch 1) and 12 (epoch 3); normalized decay changes at the restart.
RUN = [
    "fit", "--config", QUICKSTART,
    "--model.net", "wdlab.models.ShakeShake", "--model.net.init_args.base_width", "4",
    "--model.optimizer.t0_epochs", "1", "--model.optimizer.t_mult", "2", "--trainer.max_epochs", "3",
    *builtin_data(256, 64, 64), "--trainer.deterministic", "true", *QUIET, "--trainer.log_every_n_steps", "1",
    "--test_after_fit", "false",
]
#: RUN's optimizer updates
STEPS = 12


def fit_run(cwd: Path, *extra: str) -> int:
    """``wdlab fit`` of :data:`RUN` (plus ``extra``) with its run directory under ``cwd/runs``; the exit status."""
    from wdlab.cli import main

    return main([*RUN, "--trainer.logger.init_args.save_dir", str(cwd / "runs"), *extra])


def load_checkpoint(path: Path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=False)


def assert_identical(a: dict, b: dict, where: str = "checkpoint") -> None:
    """Every tensor (and every plain value) of two nested structures is exactly equal."""
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and a.dtype == b.dtype and a.shape == b.shape, where
        assert torch.equal(a, b), f"{where}: max |diff| {(a.double() - b.double()).abs().max().item()}"
    elif isinstance(a, dict):
        assert set(a) == set(b), f"{where}: keys differ: {set(a) ^ set(b)}"
        for key in a:
            assert_identical(a[key], b[key], f"{where}.{key}")
    elif isinstance(a, list | tuple):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            assert_identical(x, y, f"{where}[{i}]")
    else:
        assert a == b, f"{where}: {a!r} != {b!r}"


def training_state(ckpt: dict) -> dict:
    """What must match after a resume: everything that determines the rest of training."""
    callbacks = {k: v for k, v in ckpt["callbacks"].items() if k.startswith("AnytimeSnapshots")}
    for state in callbacks.values():  # paths differ between the two run directories; the records must not
        state["snapshots"] = [{k: v for k, v in s.items() if k != "path"} for s in state["snapshots"]]
    return {
        "global_step": ckpt["global_step"],
        "epoch": ckpt["epoch"],
        "state_dict": ckpt["state_dict"],
        "optimizer_states": ckpt["optimizer_states"],
        "lr_schedulers": ckpt["lr_schedulers"],
        "rng": ckpt["wdlab_rng_states"],
        "snapshots": callbacks,
    }


class SigtermAtStep(Callback):
    """Sends this process a real SIGTERM while the optimizer update number ``step`` (1-based) is computed."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch, batch_idx: int) -> None:
        if trainer.global_step == self.step - 1:
            os.kill(os.getpid(), signal.SIGTERM)


class SignalAtBatch(Callback):
    """Sends this process a real ``signum`` (a name: SIGTERM, SIGINT) while training batch number ``batch``
    (1-based, counted over the whole run) is computed; with ``rank``, only in that process of a DDP group."""

    def __init__(self, batch: int, signum: str = "SIGTERM", rank: int | None = None) -> None:
        self.batch, self.signum, self.rank, self.seen = batch, signum, rank, 0

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch, batch_idx: int) -> None:
        self.seen += 1
        if self.seen == self.batch and (self.rank is None or trainer.global_rank == self.rank):
            os.kill(os.getpid(), getattr(signal, self.signum))


class TraceSteps(Callback):
    """Prints, at every batch start, the step, a weight checksum, the RNG state hash and the batch labels."""

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        import hashlib

        import torch

        w = sum(float(p.double().sum()) for p in pl_module.parameters())
        rng = hashlib.md5(torch.get_rng_state().numpy().tobytes()).hexdigest()[:8]
        print(f"TRACE step={trainer.global_step} w={w:.10f} rng={rng} y={batch[1][:6].tolist()}", flush=True)


class CopyLastAtStep(Callback):
    """Copies last.ckpt to ``dest`` when the update number ``step`` has been made (and saved)."""

    def __init__(self, step: int, dest: str) -> None:
        self.step, self.dest = step, dest

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx: int) -> None:
        import shutil

        if trainer.global_step == self.step:
            shutil.copy(trainer.checkpoint_callback.last_checkpoint_path, self.dest)


class SlowSteps(Callback):
    """Makes every training step last ~0.3 s longer, so that a test can signal the process mid-run."""

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx: int) -> None:
        import time

        time.sleep(0.3)


class RecordStop(Callback):
    """Appends ``<rank> <global step> <exception type>`` to ``path`` when training ends by an exception."""

    def __init__(self, path: str) -> None:
        self.path = path

    def on_exception(self, trainer, pl_module, exception: BaseException) -> None:
        with open(self.path, "a") as record:
            record.write(f"{trainer.global_rank} {trainer.global_step} {type(exception).__name__}\n")
