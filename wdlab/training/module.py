"""The LightningModule: a classifier trained with any registry optimizer, logged to TensorBoard."""

from __future__ import annotations

from typing import Any

import lightning as L
import torch
import torch.nn.functional as F
from lightning.pytorch.loggers import TensorBoardLogger
from lightning.pytorch.utilities import rank_zero_only
from torch import nn

from wdlab.optim import DecoupledWeightDecayMixin, OptimizerConfig
from wdlab.optim.registry import resolve_hyperparameters
from wdlab.training._lightning import given_by_cli, logs_this_step, tensorboard_file_writer
from wdlab.training.angular import AngularUpdateTracker
from wdlab.training.checkpoints import ResumableCheckpoint
from wdlab.training.exact import RUN_SHAPE, RUN_SHAPE_KEY, ExactResume
from wdlab.training.fastpaths import (
    check_channels_last_on_cpu,
    compile_options,
    resolve_channels_last,
    resolve_fused,
)
from wdlab.training.metrics import ErrorRate
from wdlab.training.optimizers import configure_optimizers

#: Metric tags shown in TensorBoard's hparams tab (their last logged values).
HPARAM_METRICS = ("val/err", "val/err5", "test/err", "test/err5")

__all__ = ["HPARAM_METRICS", "RUN_SHAPE", "RUN_SHAPE_KEY", "ImageClassifier"]  # RUN_SHAPE*: wdlab.training.exact


class ImageClassifier(L.LightningModule):
    """Cross-entropy image classification with the paper's optimizers.

    Args:
        net: the network (any ``nn.Module`` mapping images to logits, e.g. ``wdlab.models.ShakeShake``).
        optimizer: a registry entry ``name`` (``adam``, ``adamw``, ``adamwr``, ``sgd``, ``sgdw``,
            ``sgdwr``) and any hyperparameter overrides (``lr``, ``weight_decay`` or
            ``weight_decay_norm``, ``schedule``, ``t0_epochs``, ...; see :func:`wdlab.optim.build_optimizer`).
        label_smoothing: cross-entropy label smoothing (0 = the paper).
        decay_bias_and_norm: decay biases and normalization weights too (True = the paper).
        compile: ``torch.compile`` the network before training (``true``, or a mapping of
            ``torch.compile`` options such as ``{mode: max-autotune}``). Off by default: it costs
            compile time at the start. Only the network is compiled, so the per-step learning rate
            causes no recompiles, and checkpoints keep their keys (``nn.Module.compile``).
        fused_optimizer: run the optimizer's fused kernel (one launch per step for all parameters).
            ``None`` (default): fused on CUDA, the optimizer's own default elsewhere. A resumed run
            keeps the kernel choice stored in its checkpoint's parameter groups.

    Steps per epoch, the global batch (per-device batch x devices x gradient accumulation), the
    training-set size and the memory layout (the datamodule's ``channels_last``: the network is
    converted to the layout of its batches) are read from the trainer and the datamodule.
    The LR scheduler is stepped after every optimizer update. The training step makes no host
    synchronisation: losses and error counts stay on the device until an epoch ends, and the
    ``opt/*`` values are computed only on the steps that Lightning logs (``log_every_n_steps``), among
    them ``opt/angular_update`` (the mean angle the decayed matrices turn by in that step),
    ``opt/angular_update_predicted`` (its rotational-equilibrium value, :mod:`wdlab.training.angular`) and, under
    ``decay_mask: cautious``, ``opt/decayed_fraction`` (the fraction of coordinates that step decayed).
    """

    #: Logs opt/angular_update itself (an AngularUpdateMonitor callback leaves it alone).
    logs_angular_update = True

    def __init__(
        self,
        net: nn.Module,
        optimizer: OptimizerConfig = {"name": "adamwr"},  # noqa: B006 (copied below, never mutated)
        label_smoothing: float = 0.0,
        decay_bias_and_norm: bool = True,
        compile: bool | dict[str, Any] = False,
        fused_optimizer: bool | None = None,
    ) -> None:
        super().__init__()
        optimizer = dict(optimizer)
        if "name" not in optimizer:
            raise ValueError("model.optimizer needs a 'name': one of adam, adamw, adamwr, sgd, sgdw, sgdwr")
        overrides = {k: v for k, v in optimizer.items() if k != "name"}
        # fail at construction, not after data loading; the name as the registry spells it (AdamW -> adamw)
        optimizer["name"] = resolve_hyperparameters(optimizer["name"], overrides)[0].name
        if not 0.0 <= label_smoothing < 1.0:
            raise ValueError(f"label_smoothing must be in [0, 1), got {label_smoothing!r}")
        # Under LightningCLI the net arrives as its class_path config and is saved as such; a net
        # passed in Python is saved with the weights only (it cannot be re-created from hparams).
        self.save_hyperparameters(ignore=[] if given_by_cli() else ["net"])
        self.net = net
        self.optimizer_config = optimizer
        self.label_smoothing = label_smoothing
        self.decay_bias_and_norm = decay_bias_and_norm
        self.compile_options = compile_options(compile)  # validated here, applied in setup()
        self.fused_optimizer = fused_optimizer
        #: The settings in use, resolved for the training device in setup() / configure_optimizers().
        self.uses_channels_last = False
        self.uses_fused_optimizer: bool | None = None
        self.num_classes: int | None = None
        self.exact_resume = ExactResume()  # used when trained without a ResumableCheckpoint
        self.angular_update = AngularUpdateTracker()  # opt/angular_update on logging steps

    # -- set-up ----------------------------------------------------------------------------
    def setup(self, stage: str) -> None:
        if self.num_classes is not None:
            return
        datamodule = getattr(self.trainer, "datamodule", None)
        num_classes = getattr(datamodule, "num_classes", None)
        if num_classes is None:
            raise ValueError("ImageClassifier needs a datamodule with a num_classes attribute (e.g. wdlab.data.*)")
        self.num_classes = int(num_classes)
        self._check_head(getattr(datamodule, "image_shape", None))
        device = self.trainer.strategy.root_device  # the model is moved there after setup()
        # The network follows the layout of its batches (data.channels_last; automatic: NHWC on CUDA).
        self.uses_channels_last = resolve_channels_last(getattr(datamodule, "channels_last", None), device)
        if self.uses_channels_last:
            if stage == "fit":
                check_channels_last_on_cpu(self.net, device)
            self.net.to(memory_format=torch.channels_last)
        if self.compile_options is not None:
            # In place (nn.Module.compile): state_dict keys stay "net.*", so checkpoints of compiled and
            # uncompiled runs are interchangeable. Lazy: the first batch triggers the compilation.
            self.net.compile(**self.compile_options)
        for split in ("train", "val", "test"):
            setattr(self, f"{split}_err", ErrorRate(self.num_classes, top_k=1))
            setattr(self, f"{split}_err5", ErrorRate(self.num_classes, top_k=5))

    def _check_head(self, image_shape: tuple[int, ...] | None) -> None:
        """Refuse a network whose output does not match the dataset's classes before training starts, not
        at the first batch: one forward pass of two blank images in eval mode (no running statistics
        change, no random numbers drawn). Skipped when the datamodule does not say its image shape."""
        if image_shape is None:
            return
        was_training = self.net.training
        parameter = next(self.net.parameters(), None)
        probe = torch.zeros(2, *image_shape, device=parameter.device if parameter is not None else "cpu")
        try:
            with torch.no_grad(), torch.random.fork_rng(devices=[]):
                self.net.eval()
                logits = self.net(probe)
        finally:
            self.net.train(was_training)
        self._check_logits(logits)

    def _check_logits(self, logits: torch.Tensor) -> None:
        if logits.ndim != 2 or logits.shape[1] != self.num_classes:
            raise ValueError(
                f"the network outputs shape {tuple(logits.shape)} but the dataset has {self.num_classes} classes: "
                f"set the net's num_classes to {self.num_classes} (e.g. --model.net.init_args.num_classes)"
            )

    def configure_optimizers(self) -> dict[str, Any]:
        # The one home of "a registry optimizer fitted to the run" (also for any other module).
        self.uses_fused_optimizer = resolve_fused(self.fused_optimizer, self.device)  # parameters are there now
        return configure_optimizers(
            self, self.optimizer_config, params=self.net, decay_bias_and_norm=self.decay_bias_and_norm,
            fused=self.uses_fused_optimizer,
        )

    # -- steps -----------------------------------------------------------------------------
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def _logits(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim == 4:  # a no-op when the batch is already in the network's layout
            x = x.contiguous(memory_format=torch.channels_last if self.uses_channels_last else torch.contiguous_format)
        logits = self.net(x)
        self._check_logits(logits)
        return logits

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        x, y = batch
        logits = self._logits(x)
        loss = F.cross_entropy(logits, y, label_smoothing=self.label_smoothing)
        self.train_err.update(logits.detach(), y)  # update only: the epoch value is computed once, at the end
        self.log("train/loss", loss.detach(), on_step=False, on_epoch=True, prog_bar=True, sync_dist=True)
        self.log("train/err", self.train_err, on_step=False, on_epoch=True, prog_bar=True)
        self._log_optimizer_state()
        return loss

    def _evaluation_step(self, batch: tuple[torch.Tensor, torch.Tensor], split: str) -> None:
        x, y = batch
        logits = self._logits(x)
        loss = F.cross_entropy(logits, y)
        getattr(self, f"{split}_err").update(logits, y)
        getattr(self, f"{split}_err5").update(logits, y)
        self.log(f"{split}/loss", loss, on_step=False, on_epoch=True, sync_dist=True)
        self.log(f"{split}/err", getattr(self, f"{split}_err"), on_step=False, on_epoch=True, prog_bar=True)
        self.log(f"{split}/err5", getattr(self, f"{split}_err5"), on_step=False, on_epoch=True)

    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        self._evaluation_step(batch, "val")

    def test_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        self._evaluation_step(batch, "test")

    # -- logging ---------------------------------------------------------------------------
    def _log_optimizer_state(self) -> None:
        """opt/lr, opt/eta, opt/lambda, opt/decay and opt/weight_norm of the update about to be made."""
        if not logs_this_step(self.trainer):
            return  # Lightning would drop the values; skip the weight-norm pass
        optimizer = self.optimizers(use_pl_optimizer=False)
        group = optimizer.param_groups[0]  # the decayed group
        lr, lam = group["lr"], group["weight_decay"]
        eta = lr / group["initial_lr"]
        if isinstance(optimizer, DecoupledWeightDecayMixin):
            decay = optimizer.decay_coefficient(group)
        else:  # L2 baselines: the coefficient of theta in the update, lr_t * lambda'
            decay = lr * lam
        params = [p.detach() for p in self.net.parameters()]
        weight_norm = torch.linalg.vector_norm(torch.stack(torch._foreach_norm(params)))
        for tag, value in (("opt/lr", lr), ("opt/eta", eta), ("opt/lambda", lam), ("opt/decay", decay)):
            self.log(tag, float(value), on_step=True, on_epoch=False)
        self.log("opt/weight_norm", weight_norm, on_step=True, on_epoch=False)

    def on_before_optimizer_step(self, optimizer: torch.optim.Optimizer) -> None:
        if logs_this_step(self.trainer):  # copy the decayed matrices; the angle is taken after the update
            self.angular_update.arm(optimizer)
            if isinstance(optimizer, DecoupledWeightDecayMixin):  # cautious decay counts what it decays
                optimizer.arm_decayed_fraction()

    def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
        self.angular_update.log(self)  # opt/angular_update(_predicted), if this step measured them
        optimizer = self.optimizers(use_pl_optimizer=False)
        if isinstance(optimizer, DecoupledWeightDecayMixin):
            fraction = optimizer.pop_decayed_fraction()  # None unless this step counted (cautious, logged)
            if fraction is not None:
                self.log("opt/decayed_fraction", fraction, on_step=True, on_epoch=False)

    def hparams_for_logging(self) -> dict[str, Any]:
        """The run's hyperparameters, flattened for TensorBoard's hparams tab."""
        name = self.optimizer_config["name"]
        _, resolved = resolve_hyperparameters(name, {k: v for k, v in self.optimizer_config.items() if k != "name"})
        flat: dict[str, Any] = {"optimizer/name": name}
        flat.update({f"optimizer/{k}": v for k, v in resolved.items()})
        flat["net"] = type(self.net).__name__
        flat["label_smoothing"] = self.label_smoothing
        flat["decay_bias_and_norm"] = self.decay_bias_and_norm
        datamodule = getattr(self.trainer, "datamodule", None)
        if datamodule is not None:
            flat["data"] = type(datamodule).__name__
        flat.update(getattr(self, "run_facts", {}))
        return {k: (v if isinstance(v, int | float | str | bool) else str(v)) for k, v in flat.items()}

    def on_fit_start(self) -> None:
        self._write_hparams_session()

    # -- exact resume (wdlab.training.exact) ------------------------------------------------
    # ResumableCheckpoint does it for any module (``wdlab fit`` always has one); without that callback the
    # classifier does it itself, with the same code and checkpoint keys.
    def _resumes_itself(self) -> bool:
        return not any(isinstance(c, ResumableCheckpoint) for c in self.trainer.callbacks)

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        if self._resumes_itself():
            self.exact_resume.save(self.trainer, self, checkpoint)

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        if self._resumes_itself():
            self.exact_resume.load(self, checkpoint)

    def on_train_start(self) -> None:
        if self._resumes_itself():
            self.exact_resume.train_start(self.trainer, self)

    def on_train_epoch_start(self) -> None:
        if self._resumes_itself():
            self.exact_resume.train_epoch_start(self.trainer)

    @rank_zero_only
    def _write_hparams_session(self) -> None:
        """Register the hyperparameters with the metric tags whose final values the hparams tab shows."""
        from torch.utils.tensorboard.summary import hparams

        for logger in self.loggers:
            if isinstance(logger, TensorBoardLogger):
                experiment, start, end = hparams(self.hparams_for_logging(), dict.fromkeys(HPARAM_METRICS, 0.0))
                writer = tensorboard_file_writer(logger)
                for summary in (experiment, start, end):
                    writer.add_summary(summary)
