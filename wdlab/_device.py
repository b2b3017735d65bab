"""The one rule behind wdlab's automatic fast-path switches: ``None`` means "on for CUDA, off elsewhere".

Shared by the data layer (``data.channels_last``, ``data.on_device``) and the training layer (its fast-path
switches), which may not import each other's modules for it.
"""

from __future__ import annotations

import torch

__all__ = ["auto_on_cuda", "device_type", "is_cuda"]


def device_type(device: torch.device | str | None) -> str | None:
    """``"cuda"``, ``"cpu"``, ``"mps"``, ... of ``device``; ``None`` when no device is known."""
    return None if device is None else torch.device(device).type


def is_cuda(device: torch.device | str | None) -> bool:
    """Whether ``device`` is a CUDA device (``None``: no device known, so no)."""
    return device_type(device) == "cuda"


def auto_on_cuda(setting: bool | None, device: torch.device | str | None) -> bool:
    """An explicit ``setting`` as given; ``None`` (automatic) -> whether ``device`` is CUDA."""
    return is_cuda(device) if setting is None else bool(setting)
