"""Which images a run trains and validates on, and which order it sees them in.

``val_split`` / ``train_subset`` / ``split_seed`` fix the training and validation images across the runs of an
experiment whatever their seed; ``seed: null`` makes the training order follow the run's seed
(``seed_everything``), so that a sweep's seeds vary the data order together with the initialization.
"""

from __future__ import annotations

import pytest
from lightning.fabric.utilities.seed import seed_everything

from wdlab.data import BuiltinDataModule


def _indices(dm: BuiltinDataModule) -> tuple[set[int], set[int]]:
    assert dm.train_dataset is not None and dm.val_dataset is not None
    return set(dm.train_dataset.indices.tolist()), set(dm.val_dataset.indices.tolist())


def _order(dm: BuiltinDataModule) -> list[int]:
    from wdlab.data.sampling import EpochShuffleSampler

    return list(EpochShuffleSampler(dm.train_dataset, seed=dm.seed, num_replicas=1, rank=0))


def test_a_fixed_split_seed_keeps_the_same_images_whatever_the_run_seed() -> None:
    runs = [BuiltinDataModule(num_train=200, num_test=10, val_split=50, train_subset=60, split_seed=7, seed=s)
            for s in (1, 2)]
    (train_a, val_a), (train_b, val_b) = (_indices(dm) for dm in runs)
    assert train_a == train_b and val_a == val_b  # the same images ...
    assert _order(runs[0]) != _order(runs[1])  # ... in another order
    assert len(train_a) == 60 == runs[0].num_train and len(val_a) == 50
    assert not train_a & val_a  # never trained on a validation image
    other = BuiltinDataModule(num_train=200, num_test=10, val_split=50, train_subset=60, split_seed=8, seed=1)
    assert _indices(other)[0] != train_a


def test_the_subset_does_not_change_the_validation_split() -> None:
    whole = BuiltinDataModule(num_train=200, num_test=10, val_split=50, split_seed=3)
    subset = BuiltinDataModule(num_train=200, num_test=10, val_split=50, train_subset=20, split_seed=3)
    assert _indices(whole)[1] == _indices(subset)[1]
    assert _indices(subset)[0] <= _indices(whole)[0]


def test_without_a_split_seed_the_split_follows_the_seed_as_before() -> None:
    a = BuiltinDataModule(num_train=100, num_test=10, val_split=20, seed=4)
    b = BuiltinDataModule(num_train=100, num_test=10, val_split=20, seed=4, split_seed=4)
    c = BuiltinDataModule(num_train=100, num_test=10, val_split=20, seed=5)
    assert _indices(a) == _indices(b) and _indices(a) != _indices(c)


def test_a_subset_larger_than_the_images_left_is_refused() -> None:
    with pytest.raises(ValueError, match=r"train_subset=90 is more than the 80 training images left after val_spl"):
        BuiltinDataModule(num_train=100, num_test=10, val_split=20, train_subset=90)
    with pytest.raises(ValueError, match="train_subset"):
        BuiltinDataModule(num_train=100, num_test=10, train_subset=0)


def test_seed_null_follows_seed_everything(monkeypatch) -> None:
    seed_everything(123)
    first = BuiltinDataModule(num_train=100, num_test=10, seed=None, split_seed=0)
    assert first.seed == 123
    seed_everything(124)
    second = BuiltinDataModule(num_train=100, num_test=10, seed=None, split_seed=0)
    assert second.seed == 124 and _order(first) != _order(second)
    monkeypatch.delenv("PL_GLOBAL_SEED", raising=False)
    with pytest.raises(ValueError, match="seed: null follows seed_everything, which is not set"):
        BuiltinDataModule(num_train=100, num_test=10, seed=None)
