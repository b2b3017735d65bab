"""Training throughput of ``wdlab fit`` against a plain PyTorch loop doing the same work.

Both sides train the same network on the same synthetic CIFAR-shaped data (uint8 32x32 RGB,
10 classes, held where ``data.on_device`` puts it: on the GPU under CUDA) with the same batched
augmentation (4-pixel pad-crop + flip) and normalization, the same optimizer and per-step schedule
(``build_optimizer``, fused kernels where wdlab uses them), the same precision (what ``wdlab fit``
resolves: bf16-mixed on Ampere or newer GPUs) and the same memory layout (channels-last on CUDA).

* wdlab: the Trainer and ImageClassifier exactly as ``wdlab fit`` builds them (``build_cli``, with the
  run directory, TensorBoard logging, last.ckpt at every epoch end, anytime snapshots, progress bar),
  fed the benchmark's synthetic datamodule; validation is off on both sides.
* plain: a ``for`` loop over a device-side permutation: gather, augment, forward under autocast,
  backward, ``optimizer.step()``, ``scheduler.step()``. No logging, no checkpoints.

The timed window starts after ``--warmup-steps`` optimizer steps (allocator, cuDNN autotuning,
compilation) and ends when training ends, so it includes wdlab's epoch-end work (the last.ckpt
write). The two sides alternate ``--repeats`` times; the medians and the ratio wdlab/plain are
printed (target: >= 0.97). Run it on an otherwise idle machine.

    python benchmarks/throughput.py                              # CPU: the quickstart ResNet
    python benchmarks/throughput.py --model shake26-2x64d        # CUDA: Fig. 2's network
    python benchmarks/throughput.py --model gpu                  # CUDA: 26 2x64d, 26 2x96d, WRN-28-10
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import math
import os
import statistics
import tempfile
import time
import warnings
from typing import Any

import lightning as L
import torch
import torch.nn.functional as F
from lightning.pytorch.callbacks import Callback

import wdlab
from wdlab.cli import build_cli
from wdlab.data import ImageDataModule, normalize, random_crop_flip
from wdlab.optim import build_optimizer, param_groups
from wdlab.training.fastpaths import cuda_trainer_defaults, resolve_channels_last, resolve_fused

#: name -> (class path, init args): the quickstart ResNet and the paper's CIFAR-10 / ImageNet32x32 networks
MODELS: dict[str, tuple[str, dict[str, int]]] = {
    "quickstart": ("wdlab.models.PreActResNet", {"depth": 8, "base_width": 16, "num_classes": 10}),
    "shake26-2x64d": ("wdlab.models.ShakeShake", {"depth": 26, "base_width": 64, "num_classes": 10}),
    "shake26-2x96d": ("wdlab.models.ShakeShake", {"depth": 26, "base_width": 96, "num_classes": 10}),
    "wrn28-10": ("wdlab.models.WideResNet", {"depth": 28, "widen_factor": 10, "num_classes": 10}),
}
GPU_MODELS = ("shake26-2x64d", "shake26-2x96d", "wrn28-10")


class SyntheticCIFAR(ImageDataModule):
    """Random uint8 CIFAR-shaped images and labels (no files, generated in a blink)."""

    num_classes = 10

    def __init__(self, num_train: int, batch_size: int, channels_last: bool | None, on_device: bool | None) -> None:
        super().__init__(batch_size=batch_size, channels_last=channels_last, on_device=on_device)
        self.num_train_total = num_train

    def _load(self) -> tuple[Any, ...]:
        gen = torch.Generator().manual_seed(0)
        images = torch.randint(0, 256, (self.num_train_total, 3, 32, 32), dtype=torch.uint8, generator=gen)
        labels = torch.randint(0, 10, (self.num_train_total,), generator=gen)
        test_images, test_labels = images[:256].clone(), labels[:256].clone()
        return images, labels, test_images, test_labels, (0.49, 0.48, 0.45), (0.25, 0.24, 0.26)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class _Timer(Callback):
    """Wall time from the start of optimizer step ``warmup`` to the end of training (device synced)."""

    def __init__(self, warmup: int) -> None:
        self.warmup = warmup
        self.start = self.end = 0.0
        self.steps = 0

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if trainer.global_step == self.warmup:
            _sync(pl_module.device)
            self.start = time.perf_counter()

    def on_train_end(self, trainer, pl_module):
        _sync(pl_module.device)
        self.end = time.perf_counter()
        self.steps = trainer.global_step - self.warmup


def _cli_args(model: str, args: argparse.Namespace, epochs: int, run_dir: str) -> list[str]:
    class_path, init_args = MODELS[model]
    cli = ["--model.net.class_path", class_path]
    for key, value in init_args.items():
        cli += [f"--model.net.init_args.{key}", str(value)]
    cli += [
        "--model.optimizer.name", args.optimizer,
        "--trainer.max_epochs", str(epochs),
        "--trainer.accelerator", "gpu" if args.device == "cuda" else "cpu",
        "--trainer.devices", "1",
        "--trainer.limit_val_batches", "0",
        "--trainer.num_sanity_val_steps", "0",
        "--trainer.logger.init_args.save_dir", run_dir,
        "--trainer.logger.init_args.name", "throughput",
        "--test_after_fit", "false",
        "--data.num_train", "10", "--data.num_test", "10",  # the config's dataset, unused (replaced below)
    ]
    if args.precision != "auto":
        cli += ["--trainer.precision", args.precision]
    if args.compile:
        cli += ["--model.compile", "true"]
    if not args.progress_bar:
        cli += ["--trainer.enable_progress_bar", "false"]
    return cli


def run_wdlab(model: str, args: argparse.Namespace, epochs: int) -> tuple[float, str]:
    """Images per second of the CLI-built Trainer + ImageClassifier; and the precision it ran with."""
    L.seed_everything(0, verbose=False)
    with tempfile.TemporaryDirectory(prefix="wdlab-throughput-") as run_dir:
        cli = build_cli(_cli_args(model, args, epochs, run_dir), run=False)
        cli.trainer.callbacks.append(timer := _Timer(args.warmup_steps))
        data = SyntheticCIFAR(args.images, args.batch_size, args.channels_last, None)
        # the progress bar still does its work, but its output does not mix with the table
        with open(os.devnull, "w") as devnull, contextlib.redirect_stdout(devnull):
            cli.trainer.fit(cli.model, datamodule=data)
        precision = str(cli.trainer.precision)
    return timer.steps * args.batch_size / (timer.end - timer.start), precision


def run_plain(model: str, args: argparse.Namespace, epochs: int, precision: str) -> float:
    """Images per second of a hand-written loop doing the same work as :func:`run_wdlab`."""
    L.seed_everything(0, verbose=False)
    device = torch.device(args.device)
    class_path, init_args = MODELS[model]
    module_name, class_name = class_path.rsplit(".", 1)
    net_class = getattr(__import__(module_name, fromlist=[class_name]), class_name)
    net = net_class(**init_args).to(device)
    channels_last = resolve_channels_last(args.channels_last, device)
    if channels_last:
        net = net.to(memory_format=torch.channels_last)
    if args.compile:
        net.compile()
    data = SyntheticCIFAR(args.images, args.batch_size, args.channels_last, None)
    data.setup("fit")
    images, labels = data.train_dataset.images.to(device), data.train_dataset.labels.to(device)
    mean = torch.tensor(data.mean, device=device)
    std = torch.tensor(data.std, device=device)
    n, b = images.shape[0], args.batch_size
    steps_per_epoch = math.ceil(n / b)
    optimizer, scheduler = build_optimizer(
        args.optimizer, param_groups(net), steps_per_epoch=steps_per_epoch, max_epochs=epochs, batch_size=b,
        num_train=n, fused=resolve_fused(None, device),
    )
    autocast = (
        torch.autocast(device.type, dtype=torch.bfloat16) if precision == "bf16-mixed" else contextlib.nullcontext()
    )
    net.train()
    step, start = 0, 0.0
    for _epoch in range(epochs):
        order = torch.randperm(n, device=device)
        for i in range(0, n, b):
            if step == args.warmup_steps:
                _sync(device)
                start = time.perf_counter()
            idx = order[i : i + b]
            x = normalize(random_crop_flip(images[idx]), mean, std, channels_last=channels_last)
            with autocast:
                loss = F.cross_entropy(net(x), labels[idx])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            step += 1
    _sync(device)
    return (step - args.warmup_steps) * b / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    cuda = torch.cuda.is_available()
    parser.add_argument("--device", default="cuda" if cuda else "cpu", choices=("cpu", "cuda"))
    parser.add_argument("--model", default=None,
                        help=f"{', '.join(MODELS)}, or 'gpu' for {', '.join(GPU_MODELS)} "
                             "(default: quickstart on CPU, shake26-2x64d on CUDA)")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--images", type=int, default=None,
                        help="training images per epoch (default: 5120 on CPU, 50000 = CIFAR-10 on CUDA)")
    parser.add_argument("--epochs", type=int, default=None, help="epochs per run (default: 4 on CPU, 2 on CUDA)")
    parser.add_argument("--warmup-steps", type=int, default=None,
                        help="optimizer steps excluded from the timing (default: one epoch on CPU, 50 on CUDA)")
    parser.add_argument("--repeats", type=int, default=3, help="alternating runs of each side (medians taken)")
    parser.add_argument("--optimizer", default="adamwr", help="registry entry (default adamwr)")
    parser.add_argument("--precision", default="auto",
                        help="auto: what 'wdlab fit' resolves (bf16-mixed on CUDA with compute capability >= 8)")
    parser.add_argument("--channels-last", default=None, type=lambda s: {"true": True, "false": False}[s.lower()],
                        help="true/false (default: automatic = on CUDA only; the quickstart config sets true)")
    parser.add_argument("--compile", action="store_true", help="torch.compile the network on both sides")
    parser.add_argument("--no-progress-bar", dest="progress_bar", action="store_false",
                        help="turn wdlab's progress bar off (it is on by default in 'wdlab fit')")
    args = parser.parse_args()
    warnings.filterwarnings("ignore")  # Lightning's tips and "the run ends inside a schedule period"
    for logger in ("lightning.pytorch", "lightning.fabric", "lightning"):
        logging.getLogger(logger).setLevel(logging.ERROR)

    device = torch.device(args.device)
    gpu = device.type == "cuda"
    models = [args.model or ("shake26-2x64d" if gpu else "quickstart")]
    if models == ["gpu"]:
        models = list(GPU_MODELS)
    for m in models:
        if m not in MODELS:
            parser.error(f"unknown model {m!r}")
    if args.images is None:
        args.images = 50_000 if gpu else 5120
    epochs = args.epochs or (2 if gpu else 4)
    if args.warmup_steps is None:
        args.warmup_steps = 50 if gpu else math.ceil(args.images / args.batch_size)
    if args.channels_last is None and models == ["quickstart"] and not gpu:
        args.channels_last = True  # as configs/quickstart.yaml
    if args.precision == "auto":
        resolved = cuda_trainer_defaults({"accelerator": "gpu" if gpu else "cpu"}).get("precision", "32-true")
    else:
        resolved = args.precision

    name = torch.cuda.get_device_name(device) if gpu else f"CPU, {torch.get_num_threads()} threads"
    print(f"wdlab {wdlab.__version__}, torch {torch.__version__}, lightning {L.__version__}; device: {name}")
    print(f"batch {args.batch_size}, {args.images} synthetic images/epoch, {epochs} epochs, warm-up "
          f"{args.warmup_steps} steps excluded, optimizer {args.optimizer}, precision {resolved}, channels_last "
          f"{resolve_channels_last(args.channels_last, device)}, compile {args.compile}, {args.repeats} repeats\n")
    print(f"{'model':<16}{'wdlab img/s':>14}{'plain img/s':>14}{'ratio':>8}   per-repeat ratios")
    for model in models:
        ours, plain, ratios = [], [], []
        for _ in range(args.repeats):
            w, precision = run_wdlab(model, args, epochs)
            p = run_plain(model, args, epochs, precision)
            ours.append(w)
            plain.append(p)
            ratios.append(w / p)
        ratio = statistics.median(ours) / statistics.median(plain)
        print(f"{model:<16}{statistics.median(ours):>14.1f}{statistics.median(plain):>14.1f}{ratio:>8.3f}   "
              + " ".join(f"{r:.3f}" for r in ratios), flush=True)


if __name__ == "__main__":
    main()
