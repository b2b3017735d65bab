"""wdlab.data.augment: the batched crop/flip augmentation and the normalization."""

from __future__ import annotations

import numpy as np
import torch

from wdlab.data import (
    BuiltinDataModule,
    normalize,
    random_crop_flip,
)


# ------------------------------------------------------------------------------------ augmentation
def _find_offset(out: np.ndarray, img: np.ndarray, pad: int):
    """All (dy, dx, flip) for which ``out`` is the crop of the zero-padded ``img`` (then flipped)."""
    c, h, w = img.shape
    padded = np.zeros((c, h + 2 * pad, w + 2 * pad), img.dtype)
    padded[:, pad : pad + h, pad : pad + w] = img
    hits = []
    for dy in range(2 * pad + 1):
        for dx in range(2 * pad + 1):
            crop = padded[:, dy : dy + h, dx : dx + w]
            for flip in (False, True):
                if np.array_equal(out, crop[:, :, ::-1] if flip else crop):
                    hits.append((dy, dx, flip))
    return hits


def test_random_crop_flip_matches_padded_crops():
    g = torch.Generator().manual_seed(0)
    images = torch.randint(1, 256, (400, 3, 32, 32), dtype=torch.uint8, generator=g)  # no zeros inside
    out = random_crop_flip(images, padding=4, generator=g)
    assert out.shape == images.shape and out.dtype == torch.uint8 and out.device == images.device
    seen = set()
    for i in range(len(images)):
        hits = _find_offset(out[i].numpy(), images[i].numpy(), 4)
        assert len(hits) == 1, (i, hits)
        seen.add(hits[0])
    offsets = {(dy, dx) for dy, dx, _ in seen}
    assert len(offsets) > 70  # of 81: offsets are per image and cover 0..8 in both axes
    assert {dy for dy, _ in offsets} == set(range(9)) == {dx for _, dx in offsets}
    flips = sum(f for _, _, f in seen)
    assert 0.35 < flips / len(seen) < 0.65


def test_random_crop_known_shift_zero_fill():
    img = torch.arange(1, 1 + 3 * 32 * 32, dtype=torch.int32).reshape(1, 3, 32, 32)
    g = torch.Generator().manual_seed(1)
    for _ in range(20):
        state = g.get_state()
        out = random_crop_flip(img, padding=4, generator=g)[0]
        g2 = torch.Generator()
        g2.set_state(state)
        dy, dx = torch.randint(0, 9, (2, 1), generator=g2)[:, 0].tolist()
        flip = bool(torch.rand(1, generator=g2)[0] < 0.5)
        expected = torch.nn.functional.pad(img, (4, 4, 4, 4))[0, :, dy : dy + 32, dx : dx + 32]
        if flip:
            expected = expected.flip(-1)
        torch.testing.assert_close(out, expected)
        zeros = (out == 0).all(0)  # zero rows/columns exactly where the crop left the image
        assert zeros.sum().item() == 32 * 32 - (32 - abs(dy - 4)) * (32 - abs(dx - 4))


def test_flip_only_and_independence():
    img = torch.randint(0, 256, (1, 3, 32, 32), dtype=torch.uint8)
    batch = img.expand(256, -1, -1, -1).contiguous()
    out = random_crop_flip(batch, padding=0)
    same = (out == img).flatten(1).all(1)
    mirrored = (out == img.flip(-1)).flatten(1).all(1)
    assert bool((same | mirrored).all()) and 0.3 < same.float().mean().item() < 0.7
    crops = random_crop_flip(batch, padding=4)
    assert len({bytes(c.numpy().tobytes()) for c in crops}) > 100  # per-image, not per-batch, randomness
    assert random_crop_flip(batch[:0]).shape == (0, 3, 32, 32)


def test_random_crop_flip_uses_global_rng():
    x = torch.randint(0, 256, (16, 3, 32, 32), dtype=torch.uint8)
    torch.manual_seed(5)
    a = random_crop_flip(x)
    torch.manual_seed(5)
    b = random_crop_flip(x)
    torch.testing.assert_close(a, b)
    assert not torch.equal(a, random_crop_flip(x))


def test_normalize():
    x = torch.randint(0, 256, (4, 3, 8, 8), dtype=torch.uint8)
    mean, std = (0.5, 0.4, 0.3), (0.2, 0.25, 0.3)
    out = normalize(x, mean, std)
    ref = (x.double() / 255 - torch.tensor(mean, dtype=torch.double).view(1, 3, 1, 1)) / torch.tensor(
        std, dtype=torch.double
    ).view(1, 3, 1, 1)
    assert out.dtype == torch.float32 and out.is_contiguous()
    torch.testing.assert_close(out.double(), ref, atol=1e-5, rtol=1e-5)
    cl = normalize(x, mean, std, channels_last=True)
    assert cl.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(cl, out)


def test_normalized_training_set_has_zero_mean_unit_std():
    dm = BuiltinDataModule(num_train=300, num_test=10, augment=False)
    x = dm.transform_batch(dm.train_dataset.__getitems__(list(range(300))), training=True)[0]
    torch.testing.assert_close(x.mean(dim=(0, 2, 3)), torch.zeros(3), atol=1e-4, rtol=0)
    torch.testing.assert_close(x.std(dim=(0, 2, 3), correction=0), torch.ones(3), atol=1e-4, rtol=0)
