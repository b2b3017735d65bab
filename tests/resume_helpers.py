"""Callbacks the resume tests inject with --trainer.callbacks (importable: tests/ is on sys.path)."""

from __future__ import annotations

import os
import signal

import lightning as L
from lightning.pytorch.callbacks import Callback


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
