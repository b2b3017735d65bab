"""How wdlab's fast-path switches resolve: one place for "automatic means the fastest correct path here".

Every switch is a config value whose ``None`` means automatic; these pure functions turn it into
the setting actually used, from the device training runs on. A value the user gives explicitly always wins.

=====================================  ====================  =========================================
switch                                 automatic on CUDA     on CPU, and why
=====================================  ====================  =========================================
``trainer.precision``                  ``bf16-mixed``        ``32-true``: CPU autocast is slower than
                                       (Ampere or newer)     fp32; pre-Ampere GPUs only emulate bf16
``trainer.benchmark`` (cudnn)          ``True``              no cuDNN; off under ``deterministic``
``data.channels_last``                 ``True``              off: tensor-core convolutions want NHWC
``model.fused_optimizer``              ``True``              ``True`` as well: torch's fused kernels
                                                             pass the float64 reference battery on CPU
                                                             and are the fastest step there (AdamW
                                                             4.3x, SGDW 1.2x the per-tensor kernel)
``data.on_device``                     ``True`` if it fits   the data is already in host memory
``model.compile``                      never (opt in)        compile time; see :func:`compile_options`
=====================================  ====================  =========================================
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from wdlab._device import auto_on_cuda, device_type

__all__ = [
    "AUTO_PRECISION",
    "DEFAULT_PRECISION",
    "check_channels_last_on_cpu",
    "compile_options",
    "cuda_trainer_defaults",
    "resolve_channels_last",
    "resolve_fused",
]

#: The precision wdlab picks on CUDA devices that compute in bf16 natively (compute capability >= 8.0).
#: bf16 keeps fp32's exponent range, so unlike fp16 it needs no loss scaling.
AUTO_PRECISION = "bf16-mixed"
#: Lightning's own default precision, written into the config when nothing else applies, so that the run's
#: config.yaml records the precision it trained with instead of ``null``.
DEFAULT_PRECISION = "32-true"

_CUDA_ACCELERATORS = ("auto", "gpu", "cuda")


def resolve_channels_last(setting: bool | None, device: torch.device | str | None) -> bool:
    """``data.channels_last``: ``None`` -> on for CUDA (tensor cores run NHWC convolutions), off elsewhere.

    The datamodule applies it to its batches and the model follows it with the network.
    """
    return auto_on_cuda(setting, device)


def _onednn_channel_block() -> int:
    """The input-channel block of oneDNN's f32 1x1 convolution kernels: 16 with AVX-512, 8 with AVX2 or less."""
    return 16 if torch.backends.cpu.get_cpu_capability().startswith("AVX512") else 8


def check_channels_last_on_cpu(net: torch.nn.Module, device: torch.device | str | None) -> None:
    """Refuse channels-last *training* on CPU for a network that hits oneDNN's strided 1x1-convolution bug.

    oneDNN's NHWC weight gradient of a 1x1 convolution with stride > 1 and fewer input channels than its
    kernel's channel block (8 with AVX2, 16 with AVX-512) writes past its workspace: the process hangs, crashes
    or gets wrong gradients (uxlfoundation/oneDNN#6035, open; seen with torch 2.14.1 on x86-64). Raises
    ``ValueError`` naming the first such convolution and the fix (``--data.channels_last false``). Only
    training is affected (the weight gradient), and only on CPU: CUDA runs cuDNN.
    """
    if device_type(device) != "cpu":
        return
    block = _onednn_channel_block()
    for name, module in net.named_modules():
        if not isinstance(module, torch.nn.Conv2d):
            continue
        strided = any(s > 1 for s in module.stride)
        if tuple(module.kernel_size) == (1, 1) and strided and module.groups == 1 and module.in_channels < block:
            raise ValueError(
                f"data.channels_last true cannot train this net on this CPU: its strided 1x1 convolution "
                f"{name or 'net'} has {module.in_channels} input channels (< {block}), which makes oneDNN hang or "
                "crash in the backward pass (uxlfoundation/oneDNN#6035); set --data.channels_last false "
                "or widen the net"
            )


def resolve_fused(setting: bool | None, device: torch.device | str | None) -> bool | None:
    """``model.fused_optimizer``: ``None`` -> ``True`` on CUDA and CPU, where torch has fused Adam and SGD
    kernels (SGDW: one multi-tensor decay pass, then the fused SGD kernel); elsewhere (e.g. MPS) ``None``,
    the optimizer's own default. ``benchmarks/optimizer_step.py`` measures the kernels against each other.
    """
    if setting is None:
        return True if device_type(device) in ("cuda", "cpu") else None
    return bool(setting)


def compile_options(setting: bool | Mapping[str, Any] | None) -> dict[str, Any] | None:
    """``model.compile``: ``False``/``None`` -> no compilation, ``True`` -> ``torch.compile`` defaults,
    a mapping -> its keyword arguments (``mode``, ``backend``, ``fullgraph``, ``dynamic``, ``options``).

    Only the network is compiled, before training starts: the learning rate never enters the
    compiled graph, so the per-step schedule cannot cause recompiles (pytorch #121857 is about a
    compiled *optimizer step* with a Python-float lr). Expect a handful of compiles per run, not
    per step: training and evaluation mode, and a smaller last batch (after which dynamo marks the
    batch dimension dynamic).
    """
    if setting is None or setting is False:
        return None
    if setting is True:
        return {}
    if isinstance(setting, Mapping):
        return dict(setting)
    raise ValueError(f"model.compile must be true, false or a mapping of torch.compile options, got {setting!r}")


def _bf16_native(device_index: int = 0) -> bool:
    major, _minor = torch.cuda.get_device_capability(device_index)
    return major >= 8


def cuda_trainer_defaults(
    trainer: Mapping[str, Any],
    cuda_available: bool | None = None,
    bf16_native: bool | None = None,
) -> dict[str, Any]:
    """The Trainer settings wdlab fills in when training will run on CUDA and the user left them unset.

    ``trainer`` is the trainer section of the parsed config. Returns only the keys to set: ``precision``
    (:data:`AUTO_PRECISION` on GPUs with native bf16) and ``benchmark`` (cudnn autotuning: it picks the
    fastest convolution algorithm for the fixed CIFAR/ImageNet32 shapes once; not under
    ``deterministic``). ``cuda_available`` / ``bf16_native`` are looked up when not given (tests pass them).

    The device's compute capability is not queried for fork-based strategies (``ddp_fork``,
    ``ddp_notebook``), which cannot start after CUDA is initialized; those keep fp32 unless told.
    """
    accelerator = trainer.get("accelerator", "auto")
    if accelerator is None:
        accelerator = "auto"
    if not isinstance(accelerator, str) or accelerator not in _CUDA_ACCELERATORS:
        return {}
    if cuda_available is None:
        cuda_available = torch.cuda.is_available()
    if not cuda_available:
        return {}
    defaults: dict[str, Any] = {}
    if trainer.get("precision") is None:
        strategy = trainer.get("strategy")
        forking = isinstance(strategy, str) and ("fork" in strategy or "notebook" in strategy)
        if bf16_native is None and not forking:
            bf16_native = _bf16_native()
        if bf16_native:
            defaults["precision"] = AUTO_PRECISION
    if trainer.get("benchmark") is None and not trainer.get("deterministic"):
        defaults["benchmark"] = True
    return defaults
