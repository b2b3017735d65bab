"""wdlab.data.sampling and wdlab.data.tensors: the batched dataset, a training order that is a pure function of
(seed, epoch), mid-epoch resume of the loader, DDP shards and worker processes."""

from __future__ import annotations

import pickle
from types import SimpleNamespace

import pytest
import torch
from torch.utils.data import DataLoader

from wdlab.data import (
    BatchTensorDataset,
    BuiltinDataModule,
    collate_batch,
)


# ---------------------------------------------------------------------------------- the data path
def test_getitems_batches_through_a_real_dataloader():
    class NoPerItem(BatchTensorDataset):
        def __getitem__(self, index):
            raise AssertionError("per-image access")

    images = torch.arange(50, dtype=torch.uint8).view(50, 1, 1, 1).expand(50, 3, 32, 32).contiguous()
    ds = NoPerItem(images, torch.arange(50))
    loader = DataLoader(
        ds, batch_size=16, shuffle=True, collate_fn=collate_batch, generator=torch.Generator().manual_seed(0)
    )
    batches = list(loader)
    assert [len(y) for _, y in batches] == [16, 16, 16, 2]
    ys = torch.cat([y for _, y in batches])
    assert sorted(ys.tolist()) == list(range(50)) and ys.tolist() != list(range(50))
    for x, y in batches:
        assert x.dtype == torch.uint8 and x.shape[1:] == (3, 32, 32) and torch.equal(x[:, 0, 0, 0].long(), y)
    assert pickle.loads(pickle.dumps(collate_batch)) is collate_batch


def _epoch_labels(loader, epoch):
    loader.sampler.set_epoch(epoch)  # what Lightning does at every epoch start
    return torch.cat([y for _, y in loader])


def test_train_order_is_a_pure_function_of_seed_and_epoch():
    def loader(seed):
        return BuiltinDataModule(batch_size=64, num_train=200, num_test=10, seed=seed).train_dataloader()

    a, b = loader(0), loader(0)
    e0, e1 = _epoch_labels(a, 0), _epoch_labels(a, 1)
    assert torch.equal(_epoch_labels(b, 1), e1) and torch.equal(_epoch_labels(b, 0), e0)  # any order of epochs
    assert not torch.equal(e0, e1) and not torch.equal(e0, _epoch_labels(loader(1), 0))
    assert sorted(e0.tolist()) == sorted(a.dataset.labels.tolist())
    dm = BuiltinDataModule(batch_size=64, num_train=200, num_test=10)
    val = torch.cat([y for _, y in dm.val_dataloader()])
    torch.testing.assert_close(val, dm.test_dataset.labels)  # eval loaders do not shuffle


def test_iterating_loaders_does_not_touch_the_global_rng():
    dm = BuiltinDataModule(batch_size=64, num_train=200, num_test=100)
    torch.manual_seed(3)
    before = torch.get_rng_state()
    for loader in (dm.train_dataloader(), dm.val_dataloader(), dm.test_dataloader()):
        list(loader)
    assert torch.equal(torch.get_rng_state(), before)


@pytest.mark.parametrize("stop_after", [0, 1, 2, 4])
def test_loader_resumes_mid_epoch_from_its_state_dict(stop_after):
    """Stop after k batches of epoch 1, restore into a fresh loader: the rest of the epoch is identical."""
    dm = BuiltinDataModule(batch_size=48, num_train=200, num_test=10)  # 5 batches: 48 x 4 + 8
    full = dm.train_dataloader()
    full.sampler.set_epoch(1)
    reference = [y for _, y in full]
    interrupted = dm.train_dataloader()
    interrupted.sampler.set_epoch(1)
    it = iter(interrupted)
    seen = [next(it)[1] for _ in range(stop_after)]
    state = interrupted.state_dict()
    assert state == {"epoch": 1, "batches": stop_after}
    resumed = BuiltinDataModule(batch_size=48, num_train=200, num_test=10).train_dataloader()
    resumed.load_state_dict(state)
    assert len(resumed) == 5  # progress counters compare against the full epoch
    resumed.sampler.set_epoch(1)
    rest = [y for _, y in resumed]
    assert len(seen) + len(rest) == len(reference)
    for got, want in zip(seen + rest, reference, strict=True):
        assert torch.equal(got, want)
    assert resumed.state_dict() == {"epoch": 1, "batches": 5}
    assert torch.equal(_epoch_labels(resumed, 2), _epoch_labels(full, 2))  # later epochs start from the top


def test_a_restored_position_for_another_epoch_is_ignored():
    dm = BuiltinDataModule(batch_size=50, num_train=200, num_test=10)
    loader = dm.train_dataloader()
    loader.load_state_dict({"epoch": 3, "batches": 4})  # saved at the very end of epoch 3
    assert torch.equal(_epoch_labels(loader, 4), _epoch_labels(dm.train_dataloader(), 4))


def test_ddp_shards_form_the_same_global_batches():
    """2 ranks x batch 32 see, batch by batch, exactly the 64 images of a 1-process batch of 64."""

    def loader(batch_size, world_size, rank):
        dm = BuiltinDataModule(batch_size=batch_size, num_train=256, num_test=10)
        dm.trainer = SimpleNamespace(world_size=world_size, global_rank=rank, training=True)
        loader = dm.train_dataloader()
        loader.sampler.set_epoch(2)
        return [x for x, _ in loader]

    single = loader(64, 1, 0)
    ranks = [loader(32, 2, r) for r in range(2)]
    assert len(single) == len(ranks[0]) == len(ranks[1]) == 4
    for whole, a, b in zip(single, *ranks, strict=True):
        key = lambda t: sorted(map(bytes, t.numpy()))  # noqa: E731 - images as sortable bytes
        assert key(whole) == key(torch.cat([a, b]))


def test_worker_processes_get_the_same_batches():
    dm = BuiltinDataModule(batch_size=32, num_train=100, num_test=10, num_workers=1)
    single = BuiltinDataModule(batch_size=32, num_train=100, num_test=10)
    for (x1, y1), (x2, y2) in zip(dm.train_dataloader(), single.train_dataloader(), strict=True):
        assert torch.equal(x1, x2) and torch.equal(y1, y2)
