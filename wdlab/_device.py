"""The one rule behind wdlab's automatic fast-path switches: ``None`` means "on for CUDA, off elsewhere".

Shared by the data layer (``data.channels_last``, ``data.on_device``) and the training layer
(``model.fused_optimizer``), which may not import each other's modules for it.
"""

from __future__ import annotations

import torch

__all__ = ["auto_on_cuda", "is_cuda"]


def is_cuda(device: torch.device | str | None) -> bool:
    """Whether ``device`` is a CUDA device (``None``: no device known, so no)."""
    return device is not None and torch.device(device).type == "cuda"


def auto_on_cuda(setting: bool | None, device: torch.device | str | None) -> bool:
    """An explicit ``setting`` as given; ``None`` (automatic) -> whether ``device`` is CUDA."""
    return is_cuda(device) if setting is None else bool(setting)
