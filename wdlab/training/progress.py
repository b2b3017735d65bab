"""What ``wdlab fit`` shows on the terminal: one bar for the whole run, or one line per epoch.

:class:`RunProgress` (the CLI's default progress bar; ``--trainer.enable_progress_bar false`` or a
``ProgressBar`` callback of your own replaces it) shows

* on a terminal: one bar over the *whole run* -- ``epoch 30/150`` (1-based, as every wdlab message
  counts epochs: "period 1 ended at epoch 30" is printed while the bar says 30/150), the batches (or
  optimizer steps with ``max_steps``) done of the run's total, the time elapsed and the estimate for
  the rest of the run, and the last epoch's training loss and error and validation error. Validation
  has no bar of its own (the bar says ``validating``; its error appears when it is done).
* when stderr is not a terminal (a log file, a sweep cell, a job scheduler) or the terminal reports
  fewer than :data:`MIN_COLUMNS` columns: one line per epoch, e.g. ::

      epoch 3/150: train loss 1.2345, train err 45.10 %, val err 40.20 % | 0:12 elapsed, 9:48 left

wdlab's own messages (anytime snapshots, the signal messages) go through :func:`write`, which prints
them on lines of their own above the bar; while the bar is shown, Lightning's log lines are routed the
same way. :func:`quiet_startup` removes the start-up lines that are not about the user's run.
"""

from __future__ import annotations

import logging
import math
import os
import sys
import time
import warnings
from typing import Any, TextIO

import lightning as L
from lightning.pytorch.callbacks import ProgressBar
from lightning.pytorch.utilities.rank_zero import rank_zero_only
from tqdm import tqdm

__all__ = ["MIN_COLUMNS", "RunProgress", "format_metrics", "quiet_startup", "say", "terminal_columns", "write"]

#: Narrower terminals (or ones that report 0 columns) get one line per epoch instead of a bar.
MIN_COLUMNS = 40


def write(message: str, file: TextIO | None = None) -> None:
    """Print ``message`` on a line of its own (on stderr by default), above any progress bar being shown."""
    tqdm.write(message, file=sys.stderr if file is None else file)
    (sys.stderr if file is None else file).flush()


@rank_zero_only
def say(message: str) -> None:
    """:func:`write` on the rank-zero process only (what wdlab's ``rank_zero_info`` messages use)."""
    write(message)


def terminal_columns(stream: TextIO) -> int:
    """The width of the terminal ``stream`` writes to; 0 if it is not a terminal or reports no width."""
    try:
        if not stream.isatty():
            return 0
        return os.get_terminal_size(stream.fileno()).columns
    except (AttributeError, OSError, ValueError):
        return 0


# -- start-up noise ----------------------------------------------------------------------------
#: Lightning's start-up lines that say nothing about the user's run (prefixes of the message).
QUIET_PREFIXES = (
    "💡 Tip:",  # the LitLogger advertisement
    "TPU available:",
    "HPU available:",
    "Loading `train_dataloader` to estimate number of stepping batches.",
)
#: torch's deprecation of LeafSpec, raised by Lightning's copy of tree_flatten (lightning/pytorch/utilities/_pytree.py)
PYTREE_WARNING = r"`isinstance\(treespec, LeafSpec\)` is deprecated"


class _DropNoise(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.getMessage()).startswith(QUIET_PREFIXES)


_QUIET = _DropNoise()


def quiet_startup() -> None:
    """Silence what Lightning and torch print at start-up that is not about the run: the LitLogger tip, the
    TPU/HPU lines, the "estimate number of stepping batches" line, "Seed set to N" (wdlab prints the seed in
    its own run-directory line) and the ``_pytree`` deprecation warning. Idempotent. "GPU available: ...,
    used: ..." stays: it says whether the run uses the GPU."""
    for name in ("lightning.pytorch.utilities.rank_zero", "lightning.fabric.utilities.rank_zero"):
        logger = logging.getLogger(name)
        if _QUIET not in logger.filters:
            logger.addFilter(_QUIET)
    logging.getLogger("lightning.fabric.utilities.seed").setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", message=PYTREE_WARNING, category=FutureWarning)


# -- metrics -----------------------------------------------------------------------------------
def _value(value: Any) -> float | None:
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


_FIRST = ("train/loss", "train/err", "val/loss", "val/err")


def format_metrics(metrics: dict[str, Any], compact: bool = False) -> str:
    """``{"train/loss": 1.2, "val/err": 0.4}`` -> ``"train loss 1.2000, val err 40.00 %"`` (errors as percent);
    ``compact``: ``"loss 1.2, val err 40.0%"`` (for the bar)."""
    parts = []
    order = sorted(metrics, key=lambda name: (_FIRST.index(name) if name in _FIRST else len(_FIRST), name))
    for name in order:
        value = _value(metrics[name])
        if value is None or name == "v_num":
            continue
        label = name.replace("/", " ")
        if compact and label.startswith("train "):
            label = label[len("train "):]
        if name.rsplit("/", 1)[-1].startswith("err"):
            parts.append(f"{label} {100 * value:.1f}%" if compact else f"{label} {100 * value:.2f} %")
        else:
            parts.append(f"{label} {value:.4g}" if compact else f"{label} {value:.4f}")
    return ", ".join(parts)


class RunProgress(ProgressBar):
    """The whole run's progress on one bar, or one line per epoch (see the module's docstring).

    Args:
        lines: ``True``: one line per epoch; ``False``: a bar; ``None`` (default): a bar if stderr is a
            terminal at least :data:`MIN_COLUMNS` wide, else lines.
    """

    def __init__(self, lines: bool | None = None) -> None:
        super().__init__()
        self.lines = lines
        self._enabled = True
        self._bar: tqdm | None = None
        self._eval_bar: tqdm | None = None
        self._streams: list[tuple[logging.StreamHandler, Any]] = []
        self._started: float | None = None
        self._base: int | None = None  # units done when this process started training
        self._metrics = ""
        self._shown = 0.0

    # -- ProgressBar's interface -------------------------------------------------------------
    def disable(self) -> None:
        self._enabled = False

    def enable(self) -> None:
        self._enabled = True

    @property
    def is_enabled(self) -> bool:
        return self._enabled

    def print(self, *args: Any, sep: str = " ", **kwargs: Any) -> None:  # LightningModule.print: above the bar
        write(sep.join(map(str, args)))

    def _lines(self) -> bool:
        return self.lines if self.lines is not None else terminal_columns(sys.stderr) < MIN_COLUMNS

    # -- the run's size ----------------------------------------------------------------------
    def _plan(self, trainer: L.Trainer) -> tuple[int | None, str, int | None]:
        """(epochs in the run or None, the unit counted, the run's total of them or None)."""
        batches = trainer.num_training_batches
        epochs = trainer.max_epochs if trainer.max_epochs is not None and trainer.max_epochs >= 0 else None
        max_steps = trainer.max_steps if trainer.max_steps is not None and trainer.max_steps > 0 else None
        finite = isinstance(batches, int) or (isinstance(batches, float) and math.isfinite(batches))
        if max_steps is not None and finite and batches > 0:
            steps_per_epoch = math.ceil(int(batches) / max(1, trainer.accumulate_grad_batches))
            step_epochs = math.ceil(max_steps / steps_per_epoch)
            if epochs is None or step_epochs < epochs:
                return step_epochs, "step", max_steps
        if epochs is not None and finite and batches > 0:
            return epochs, "batch", epochs * int(batches)
        return epochs, "epoch", epochs

    def _done(self, trainer: L.Trainer, unit: str, batch_idx: int | None) -> int:
        if unit == "step":
            return trainer.global_step
        if unit == "batch":
            batches = int(trainer.num_training_batches)
            return trainer.current_epoch * batches + (0 if batch_idx is None else batch_idx + 1)
        return trainer.current_epoch

    def _epoch_text(self, trainer: L.Trainer, epoch: int | None = None) -> str:
        epochs = self._plan(trainer)[0]
        shown = trainer.current_epoch + 1 if epoch is None else epoch
        return f"epoch {shown}/{epochs}" if epochs is not None else f"epoch {shown}"

    def _time_text(self, done: int, total: int | None, compact: bool = False) -> str:
        """The time since training started and the estimate for the rest of the run (at the rate so far)."""
        elapsed = 0.0 if self._started is None else time.monotonic() - self._started
        made = done - (self._base or 0)
        left = None
        if total is not None and made > 0 and elapsed > 0:
            left = tqdm.format_interval(max(0, total - done) * elapsed / made)
        if compact:
            return f"{tqdm.format_interval(elapsed)}<{left or '?'}"
        return f"{tqdm.format_interval(elapsed)} elapsed" + (f", {left} left" if left else "")

    def _read_metrics(self, trainer: L.Trainer) -> None:
        self._metrics = format_metrics(dict(trainer.progress_bar_metrics), compact=self._bar is not None)

    # -- training ----------------------------------------------------------------------------
    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not self._enabled:
            return
        self._started = time.monotonic()
        self._base = None
        self._metrics = ""
        if self._lines():
            return
        _, unit, total = self._plan(trainer)
        done = self._done(trainer, unit, None)
        self._bar = tqdm(total=total, initial=done, desc=self._epoch_text(trainer), file=sys.stderr,
                         dynamic_ncols=True, leave=True, unit=unit + ("es" if unit == "batch" else "s"),
                         bar_format="{desc} {percentage:3.0f}%|{bar}| {n_fmt}/{total_fmt} {unit}{postfix}")
        self._route_logs()

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self._bar is not None:
            self._bar.set_description_str(self._epoch_text(trainer), refresh=False)

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        if not self._enabled:
            return
        _, unit, total = self._plan(trainer)
        done = self._done(trainer, unit, batch_idx)
        if self._base is None:  # the units done before this process's first batch (a resumed run's)
            self._base = done - 1 if unit != "epoch" else done
        if self._bar is None:
            return
        now = time.monotonic()
        if now - self._shown >= 0.5 or done == total:
            self._shown = now
            self._bar.set_postfix_str(self._postfix(done, total), refresh=False)
        self._bar.update(done - self._bar.n)

    def _postfix(self, done: int, total: int | None, state: str = "") -> str:
        parts = [self._time_text(done, total, compact=True), *([state] if state else []),
                 *([self._metrics] if self._metrics else [])]
        return " [" + ", ".join(parts) + "]"

    def on_validation_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking:  # a few batches before training: no bar
            return
        if trainer.state.fn != "fit":  # wdlab validate
            self._start_evaluation(trainer, "validating", trainer.num_val_batches)
        elif self._bar is not None:  # during fit: no bar of its own, the run's bar says so
            self._bar.set_postfix_str(self._postfix(self._bar.n, self._plan(trainer)[2], "validating"))

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._close_evaluation()
        if trainer.sanity_checking or not self._enabled:
            return
        self._read_metrics(trainer)
        if self._bar is not None:
            self._bar.set_postfix_str(self._postfix(self._bar.n, self._plan(trainer)[2]))

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not self._enabled:
            return
        self._read_metrics(trainer)
        _, unit, total = self._plan(trainer)
        if self._bar is not None:
            self._bar.set_postfix_str(self._postfix(self._bar.n, total))
            return
        if self._base is None:
            return  # an epoch without batches
        # the units done once this epoch (current_epoch, 0-based, is the one ending) is complete
        done = {"step": trainer.global_step, "epoch": trainer.current_epoch + 1}.get(unit)
        if done is None:
            done = (trainer.current_epoch + 1) * int(trainer.num_training_batches)
        step = f", step {trainer.global_step}/{total}" if unit == "step" else ""
        metrics = f": {self._metrics}" if self._metrics else ""
        write(f"{self._epoch_text(trainer)}{step}{metrics} | {self._time_text(done, total)}")

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._close_bar()

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException) -> None:
        self._close_evaluation()
        self._close_bar()

    def teardown(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        self._close_evaluation()
        self._close_bar()

    def _close_bar(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None
        self._restore_logs()

    # -- evaluation (validate, test, predict, the sanity check): a short-lived bar on a terminal ---
    def _start_evaluation(self, trainer: L.Trainer, what: str, batches: Any) -> None:
        if not self._enabled or self._lines() or self._bar is not None:
            return
        self._close_evaluation()
        total = sum(batches) if isinstance(batches, list | tuple) else batches
        total = int(total) if isinstance(total, int | float) and math.isfinite(total) else None
        self._eval_bar = tqdm(desc=what, total=total, file=sys.stderr, dynamic_ncols=True, leave=False,
                              unit="batch")

    def _advance_evaluation(self) -> None:
        if self._eval_bar is not None:
            self._eval_bar.update(1)

    def _close_evaluation(self) -> None:
        if self._eval_bar is not None:
            self._eval_bar.close()
            self._eval_bar = None

    def on_validation_batch_end(self, trainer: L.Trainer, *args: Any, **kwargs: Any) -> None:
        self._advance_evaluation()

    def on_test_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._start_evaluation(trainer, "testing", trainer.num_test_batches)

    def on_test_batch_end(self, trainer: L.Trainer, *args: Any, **kwargs: Any) -> None:
        self._advance_evaluation()

    def on_test_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._close_evaluation()

    def on_predict_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._start_evaluation(trainer, "predicting", trainer.num_predict_batches)

    def on_predict_batch_end(self, trainer: L.Trainer, *args: Any, **kwargs: Any) -> None:
        self._advance_evaluation()

    def on_predict_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._close_evaluation()

    # -- Lightning's log lines above the bar -------------------------------------------------
    def _route_logs(self) -> None:
        for name in ("lightning.pytorch", "lightning.fabric"):
            for handler in logging.getLogger(name).handlers:
                if type(handler) is logging.StreamHandler and not isinstance(handler.stream, _AboveBar):
                    self._streams.append((handler, handler.stream))
                    handler.setStream(_AboveBar(handler.stream))

    def _restore_logs(self) -> None:
        for handler, stream in self._streams:
            handler.setStream(stream)
        self._streams = []


class _AboveBar:
    """A stream whose lines are printed above the progress bars (a logging handler's, while a bar is shown)."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream

    def write(self, text: str) -> int:
        for line in text.rstrip("\n").split("\n") if text.strip() else []:
            tqdm.write(line, file=self.stream)
        return len(text)

    def flush(self) -> None:
        self.stream.flush()
