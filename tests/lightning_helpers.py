"""Lightning pieces several test modules share: a small LightningModule that is not an image classifier
(:class:`Regression`, with its plain :func:`loaders`), a logger that keeps every record in memory
(:class:`MemoryLogger`), :class:`FreezeBatchNorm`, which the DDP tests inject into ``wdlab fit`` subprocesses
with ``--trainer.callbacks lightning_helpers.FreezeBatchNorm`` (``tests/`` is on their ``PYTHONPATH``), and
:class:`SlowToPrepare`, built-in data whose ``prepare_data()`` takes minutes (a sweep's check that is still running).
"""

from __future__ import annotations

import time

import lightning as L
import torch
import torch.nn.functional as F
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.loggers.logger import Logger
from torch.nn.modules.batchnorm import _BatchNorm
from torch.utils.data import DataLoader, TensorDataset

import wdlab.training
from wdlab.data import BuiltinDataModule

# 32 points / batch 8 = 4 updates per epoch; adamwr with t0 = 1 epoch, t_mult = 2: periods end after
# epochs 1 and 3 (updates 4 and 12), where AnytimeSnapshots evaluates and saves.
OPTIMIZER = {"name": "adamwr", "lr": 1e-2, "t0_epochs": 1, "t_mult": 2}


class Regression(L.LightningModule):
    def __init__(self, optimizer: dict = OPTIMIZER) -> None:  # never mutated
        super().__init__()
        self.net = torch.nn.Sequential(torch.nn.Linear(4, 16), torch.nn.ReLU(), torch.nn.Dropout(0.2),
                                       torch.nn.Linear(16, 1))
        self.optimizer = optimizer

    def training_step(self, batch, batch_idx):
        x, y = batch
        loss = F.mse_loss(self.net(x).squeeze(1), y)
        self.log("train_loss", loss)
        return loss

    def validation_step(self, batch, batch_idx):
        x, y = batch
        self.log("val_loss", F.mse_loss(self.net(x).squeeze(1), y))

    def configure_optimizers(self):
        return wdlab.training.configure_optimizers(self, self.optimizer)


class MemoryLogger(Logger):
    """Keeps every ``log_metrics`` call: (step, metrics)."""

    def __init__(self) -> None:
        super().__init__()
        self.records: list[tuple[int, dict[str, float]]] = []

    @property
    def name(self) -> str:
        return "memory"

    @property
    def version(self) -> int:
        return 0

    def log_hyperparams(self, params, *args, **kwargs) -> None:
        pass

    def log_metrics(self, metrics, step=None) -> None:
        self.records.append((step, dict(metrics)))

    def anytime(self) -> list[tuple[int, dict[str, float]]]:
        return [(s, {k: v for k, v in m.items() if k.startswith("anytime/")})
                for s, m in self.records if any(k.startswith("anytime/") for k in m)]


def loaders() -> tuple[DataLoader, DataLoader]:
    g = torch.Generator().manual_seed(1)
    x = torch.randn(48, 4, generator=g)
    y = x @ torch.tensor([1.0, -2.0, 0.5, 3.0]) + 0.1 * torch.randn(48, generator=g)
    train = DataLoader(TensorDataset(x[:32], y[:32]), batch_size=8, shuffle=True)
    val = DataLoader(TensorDataset(x[32:], y[32:]), batch_size=8)
    return train, val


class FreezeBatchNorm(Callback):
    """BatchNorm layers in eval mode while training: they normalize with their (initial, never updated)
    running statistics, so the result no longer depends on how a batch is split over devices."""

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx: int) -> None:
        for module in pl_module.modules():
            if isinstance(module, _BatchNorm):
                module.eval()


class SlowToPrepare(BuiltinDataModule):
    """The built-in data, with a ``prepare_data()`` that sleeps for ``seconds`` (like a dataset cache being built)."""

    def __init__(self, *args, seconds: float = 300.0, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.seconds = seconds

    def prepare_data(self) -> None:
        time.sleep(self.seconds)
