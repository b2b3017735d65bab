"""Cautious weight decay (Chen et al. 2025, arXiv 2510.12402): ``decay_mask: cautious`` for every decoupled entry,
against float64 references with the paper's indicator I(u_t * theta_{t-1} >= 0), and its ``opt/decayed_fraction``."""

from __future__ import annotations

import functools

import lightning as L
import numpy as np
import pytest
import torch
from lightning_helpers import MemoryLogger
from optim_reference import adam_reference, muonw_reference, nadam_reference, radam_reference, sgd_reference

from wdlab.models import PreActResNet
from wdlab.optim import REGISTRY, AdamW, OptimizerSpec
from wdlab.optim.decoupling import cautious_mask
from wdlab.testing import check_optimizer

_ADAMW = functools.partial(adam_reference, decoupled=True, cautious=True)
_SGDW = functools.partial(sgd_reference, decoupled=True, cautious=True)
#: Every decoupled built-in entry's reference under cautious decay.
CAUTIOUS = {
    "adamw": (_ADAMW, 0.01),
    "adamwr": (_ADAMW, 0.01),
    "adamc": (functools.partial(adam_reference, decoupled=True, corrected=True, cautious=True), 0.01),
    "sgdw": (_SGDW, 0.02),
    "sgdwr": (_SGDW, 0.02),
    "sgdc": (functools.partial(sgd_reference, decoupled=True, corrected=True, cautious=True), 0.02),
    "radamw": (functools.partial(radam_reference, cautious=True), 0.01),
    "nadamw": (functools.partial(nadam_reference, cautious=True), 0.01),
    "muonw": (functools.partial(muonw_reference, cautious=True), 0.01),
}


def cautious_spec(name: str) -> OptimizerSpec:
    spec = REGISTRY[name]
    return OptimizerSpec(f"{name}-cautious", spec.optimizer_class, True, spec.hyperparameters,
                         {**spec.defaults, "decay_mask": "cautious"}, f"{spec.description}, cautious decay")


def shapes(name: str) -> tuple[tuple[int, ...], tuple[int, ...]]:
    return ((2, 2, 1, 2), (4,)) if name == "muonw" else ((7,), (5,))


def test_every_decoupled_entry_takes_cautious_decay():
    decoupled = {name for name in REGISTRY if REGISTRY[name].decoupled and REGISTRY.origin_of(name) == "built-in"}
    assert set(CAUTIOUS) == decoupled
    assert all(REGISTRY[name].accepts("decay_mask") for name in decoupled)
    assert not REGISTRY["adam"].accepts("decay_mask") and not REGISTRY["sgd"].accepts("decay_mask")


@pytest.mark.parametrize("name", list(CAUTIOUS))
def test_cautious_decay_follows_its_reference(name):
    """250 steps across three restarts against the float64 reference (rel. err <= 1e-9), float32/bfloat16, the
    state_dict round trip, zero gradients (a zero update ties: decayed) and per-group settings; and the reference
    without the indicator does *not* match, so the comparison sees the mask."""
    reference, lr = CAUTIOUS[name]
    spec = cautious_spec(name)
    check_optimizer(spec, reference=reference, lr=lr, shapes=shapes(name),
                    checks=("reference", "low_precision", "round_trip", "zero_gradient", "param_groups"))
    plain = functools.partial(reference.func, **{**reference.keywords, "cautious": False})
    with pytest.raises(AssertionError, match=r"\[reference\]: step \d+: relative error"):
        check_optimizer(spec, reference=plain, lr=lr, shapes=shapes(name), checks=("reference",))


def test_the_mask_is_the_papers_indicator_with_ties_decayed():
    update = torch.tensor([1.0, -1.0, 1.0, -1.0, 0.0, 2.0, 0.0])
    theta = torch.tensor([2.0, -3.0, -1.0, 4.0, 5.0, 0.0, 0.0])
    assert torch.equal(cautious_mask(update, theta), torch.tensor([1.0, 1.0, 0.0, 0.0, 1.0, 1.0, 1.0]))


def test_the_decayed_fraction_is_counted_only_when_armed():
    """One AdamW step from zero moments: u_1 = g / (|g| + eps) has g's sign, so the decayed coordinates are those
    where g and theta agree in sign (or g is 0); counted on the armed step only."""
    gen = torch.Generator().manual_seed(0)
    theta = torch.randn(1000, dtype=torch.float64, generator=gen)
    grad = torch.randn(1000, dtype=torch.float64, generator=gen)
    grad[:10] = 0.0
    p = torch.nn.Parameter(theta.clone())
    opt = AdamW([p], lr=0.01, weight_decay=0.1, decay_mask="cautious")
    p.grad = grad.clone()
    opt.step()
    assert opt.pop_decayed_fraction() is None  # not armed: nothing counted
    p.data.copy_(theta)
    opt = AdamW([p], lr=0.01, weight_decay=0.1, decay_mask="cautious")
    opt.arm_decayed_fraction()
    opt.step()
    fraction = opt.pop_decayed_fraction()
    want = float(np.mean(grad.numpy() * theta.numpy() >= 0))
    assert fraction is not None and fraction.ndim == 0 and float(fraction) == pytest.approx(want, abs=1e-12)
    assert 0.4 < want < 0.6 and opt.pop_decayed_fraction() is None
    plain = AdamW([p], lr=0.01, weight_decay=0.1)
    plain.arm_decayed_fraction()
    p.grad = grad.clone()
    plain.step()
    assert plain.pop_decayed_fraction() is None  # decay_mask "all": nothing to report


def test_configs_accept_decay_mask_where_it_applies():
    from wdlab.training import ImageClassifier

    net = torch.nn.Linear(4, 10)
    ImageClassifier(net, optimizer={"name": "muonw", "decay_mask": "cautious"})
    with pytest.raises(ValueError, match="decay_mask must be 'all'"):
        ImageClassifier(net, optimizer={"name": "adamw", "decay_mask": "sometimes"})
    with pytest.raises(ValueError, match="'decay_mask' does not apply to optimizer 'sgd'"):
        ImageClassifier(net, optimizer={"name": "sgd", "decay_mask": "cautious"})


@pytest.mark.trains
def test_image_classifier_logs_the_decayed_fraction_on_logging_steps_only(tmp_path):
    """2 epochs x 3 steps, log_every_n_steps=2: opt/decayed_fraction at steps 1, 3, 5 with opt/lr, a fraction of
    the coordinates; counted on those steps only (after 3 steps of 6 the optimizer holds a count)."""
    from wdlab.data import BuiltinDataModule
    from wdlab.training import ImageClassifier

    L.seed_everything(0, verbose=False)
    model = ImageClassifier(PreActResNet(8, 4, num_classes=10), {"name": "adamw", "decay_mask": "cautious"})
    armed: list[bool] = []

    class Probe(L.Callback):
        def on_train_start(self, trainer, pl_module):
            trainer.optimizers[0].register_step_post_hook(lambda opt, *a: armed.append(opt._decayed is not None))

    logger = MemoryLogger()
    trainer = L.Trainer(max_epochs=2, logger=logger, log_every_n_steps=2, callbacks=[Probe()], limit_val_batches=0,
                        num_sanity_val_steps=0, enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, default_root_dir=tmp_path, accelerator="cpu")
    trainer.fit(model, datamodule=BuiltinDataModule(batch_size=32, num_train=96, num_test=32))
    with_lr = [s for s, m in logger.records if "opt/lr" in m]
    with_fraction = [s for s, m in logger.records if "opt/decayed_fraction" in m]
    assert with_fraction == with_lr == [1, 3, 5]
    assert armed == [False, True, False, True, False, True]
    assert all(0.2 < m["opt/decayed_fraction"] < 0.8 for _, m in logger.records if "opt/decayed_fraction" in m)


def test_a_failing_update_leaves_the_weights_as_they_were():
    """Cautious decay runs the update from zeroed weights; if the update raises, the weights are put back."""
    theta = torch.tensor([1.0, -2.0, 3.0])
    p = torch.nn.Parameter(theta.clone())
    opt = AdamW([p], lr=0.1, weight_decay=0.1, decay_mask="cautious")
    p.grad = torch.ones(3)

    def failing_update():
        raise RuntimeError("the kernel failed")

    with pytest.raises(RuntimeError, match="the kernel failed"):
        opt._decoupled_step(failing_update)
    assert torch.equal(p.detach(), theta) and opt.param_groups[0]["weight_decay"] == 0.1
