"""Batched, on-device augmentation and normalization (pure torch, no Lightning).

The paper's "regular augmentation" for CIFAR-10: pad each image with 4 zero pixels on every side,
take a random 32x32 crop (offsets 0..8 per axis, independently per image), and flip horizontally
with probability 0.5 (per image). Here that is two ``gather`` calls on the whole batch: no Python
loop over images, no padded copy, and it runs wherever the batch lives (CPU or GPU).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

__all__ = ["normalize", "random_crop_flip"]


def random_crop_flip(
    images: torch.Tensor,
    padding: int = 4,
    generator: torch.Generator | None = None,
    flip: bool = True,
) -> torch.Tensor:
    """Random crop with ``padding`` zero pixels on each side plus a random horizontal flip.

    ``images``: ``(B, C, H, W)`` tensor of any dtype (typically uint8); returns a new tensor of the
    same shape, dtype and device. Image ``b`` gets offsets ``dy, dx`` uniform in ``0..2*padding``
    (output pixel ``(i, j)`` is input pixel ``(i + dy - padding, j + dx - padding)``, zero where that
    falls outside) and is then mirrored left-right with probability 0.5.

    Random numbers come from ``generator`` if given (it must live on the images' device), else
    from torch's global RNG for that device, so seeding / restoring RNG state reproduces a run.
    """
    if images.dim() != 4:
        raise ValueError(f"expected a (B, C, H, W) batch, got shape {tuple(images.shape)}")
    b, c, h, w = images.shape
    device = images.device
    if b == 0:
        return images.clone()
    p = int(padding)
    if p < 0:
        raise ValueError(f"padding must be >= 0, got {padding}")
    # Draw in a fixed order (offsets, then flips) so results are a function of the RNG state only.
    offsets = torch.randint(0, 2 * p + 1, (2, b), device=device, generator=generator)
    dy, dx = offsets[0], offsets[1]
    flips = (
        torch.rand(b, device=device, generator=generator) < 0.5
        if flip
        else torch.zeros(b, dtype=torch.bool, device=device)
    )

    rows = torch.arange(h, device=device).unsqueeze(0) + (dy - p).unsqueeze(1)  # (B, H) source rows
    j = torch.arange(w, device=device).unsqueeze(0)
    j = torch.where(flips.unsqueeze(1), (w - 1) - j, j)  # flip = read columns right to left
    cols = j + (dx - p).unsqueeze(1)  # (B, W) source columns
    row_ok = (rows >= 0) & (rows < h)
    col_ok = (cols >= 0) & (cols < w)

    out = images.gather(2, rows.clamp(0, h - 1).view(b, 1, h, 1).expand(b, c, h, w))
    out = out.gather(3, cols.clamp(0, w - 1).view(b, 1, 1, w).expand(b, c, h, w))
    valid = row_ok.view(b, 1, h, 1) & col_ok.view(b, 1, 1, w)
    return out * valid.to(out.dtype) if p > 0 else out


def normalize(
    images: torch.Tensor,
    mean: Sequence[float] | torch.Tensor,
    std: Sequence[float] | torch.Tensor,
    dtype: torch.dtype = torch.float32,
    channels_last: bool = False,
) -> torch.Tensor:
    """uint8 ``(B, C, H, W)`` in 0..255 -> ``dtype`` tensor ``(x / 255 - mean) / std`` per channel.

    ``mean``/``std`` are per-channel, in units of [0, 1] (as the datamodules expose them). With
    ``channels_last=True`` the result is in ``torch.channels_last`` memory format.
    """
    if images.dim() != 4:
        raise ValueError(f"expected a (B, C, H, W) batch, got shape {tuple(images.shape)}")
    c = images.shape[1]
    mean_t = torch.as_tensor(mean, dtype=torch.float32, device=images.device).reshape(1, c, 1, 1)
    std_t = torch.as_tensor(std, dtype=torch.float32, device=images.device).reshape(1, c, 1, 1)
    scale = 1.0 / (255.0 * std_t)
    shift = -mean_t / std_t
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    x = images.to(dtype=torch.float32, memory_format=fmt)
    out = torch.addcmul(shift, x, scale)  # x * scale + shift, one fused op
    out = out.contiguous(memory_format=fmt)
    return out if dtype == torch.float32 else out.to(dtype)
