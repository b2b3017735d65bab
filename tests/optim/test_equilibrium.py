"""The rotational equilibrium (Kosson et al. 2024), measured: ``opt/angular_update`` and its prediction.

(a) the closed forms against hand-computed values and the optimizer dispatch; the angle measurement
against known angles; (b) on scale-invariant weights the measured angle approaches the prediction: an
exact random-walk objective (within 3 %) and a small BatchNorm network on random data (within 15 %);
(c) through Lightning: ImageClassifier and the AngularUpdateMonitor callback log both tags on logging
steps only, equal to an independent float64 measurement. The host-sync guard of tests/training/test_fastpaths.py
covers the new hooks (the angle is computed inside the training batch, in the optimizer's step post-hook).
"""

from __future__ import annotations

import math

import lightning as L
import pytest
import torch
from lightning.pytorch.callbacks import Callback
from lightning_helpers import MemoryLogger, Regression, loaders
from torch import nn

import wdlab.training.angular as angular_module
from wdlab.data import BuiltinDataModule
from wdlab.models import PreActResNet
from wdlab.optim import (
    SGDW,
    AdamW,
    adamw_equilibrium_angle,
    angular_update,
    decayed_matrices,
    equilibrium_angle,
    predicted_angular_update,
    sgd_l2_equilibrium_angle,
    sgdw_equilibrium_angle,
)
from wdlab.training import AngularUpdateMonitor, ImageClassifier


# ----------------------------------------------------------------------------- (a) closed forms
def test_closed_forms_match_hand_computed_values():
    # AdamW: sqrt(2 d (1 - b1) / (1 + b1)); d = 0.01, b1 = 0.9: sqrt(0.02 * 0.1 / 1.9) = sqrt(0.00105263)
    assert adamw_equilibrium_angle(0.01, 0.9) == pytest.approx(0.0324443, rel=1e-5)
    assert adamw_equilibrium_angle(0.005, 0.5) == pytest.approx(0.0577350, rel=1e-5)  # sqrt(0.01 / 3)
    assert adamw_equilibrium_angle(0.0, 0.9) == 0.0
    # SGDW (decay outside the buffer): sqrt(2 d (1 - mu) / (1 + mu)), whatever the dampening
    assert sgdw_equilibrium_angle(0.0025, 0.0) == pytest.approx(0.0707107, rel=1e-5)  # sqrt(2 d)
    assert sgdw_equilibrium_angle(0.01, 0.9) == pytest.approx(0.0324443, rel=1e-5)  # = AdamW at b1 = mu
    assert sgdw_equilibrium_angle(0.01, 0.9, dampening=0.5) == pytest.approx(0.0324443, rel=1e-5)
    # Nesterov: S = 1 + mu / (1 - mu) = 10, E = (1 + mu)^2 + mu^4 / (1 - mu^2) = 3.61 + 3.4531579 = 7.0631579
    assert sgdw_equilibrium_angle(0.01, 0.9, nesterov=True) == pytest.approx(math.sqrt(0.02 * 7.0631579 / 100),
                                                                             rel=1e-6)
    assert sgdw_equilibrium_angle(0.01, 0.9, nesterov=True) == pytest.approx(0.0375850, rel=1e-5)
    # SGD + L2 (Kosson et al.'s SGDM): sqrt(2 lr wd / (1 + mu)); lr = 0.1, wd = 0.01: sqrt(0.002 / 1.9)
    assert sgd_l2_equilibrium_angle(0.1, 0.01, 0.9) == pytest.approx(0.0324443, rel=1e-5)
    assert sgd_l2_equilibrium_angle(0.1, 0.01, 0.0) == pytest.approx(0.0447214, rel=1e-5)  # sqrt(0.002)
    # dampening 0.5: E / S = (0.25 / 0.19) / 5 = 0.263158, sqrt(0.002 * 0.263158)
    assert sgd_l2_equilibrium_angle(0.1, 0.01, 0.9, dampening=0.5) == pytest.approx(0.0229416, rel=1e-5)


def _params() -> list[nn.Parameter]:
    return [nn.Parameter(torch.ones(4, 3)), nn.Parameter(torch.ones(4))]


def test_the_prediction_follows_the_optimizer_and_its_current_step():
    # wdlab AdamW, the paper's parameterization: d = eta_t * lambda = 0.05 at eta = 1
    opt = AdamW(_params(), lr=1e-3, weight_decay=0.05)
    group = opt.param_groups[0]
    assert equilibrium_angle(opt, group) == pytest.approx(math.sqrt(2 * 0.05 * 0.1 / 1.9), rel=1e-9)  # 0.0725
    group["lr"] = 0.5e-3  # eta_t = 0.5: d = 0.025
    assert equilibrium_angle(opt, group) == pytest.approx(0.0512989, rel=1e-5)
    opt = AdamW(_params(), lr=1e-3, weight_decay=0.05, decay_scaling="corrected")
    opt.param_groups[0]["lr"] = 0.5e-3  # d = eta^2 * lambda = 0.0125
    assert equilibrium_angle(opt, opt.param_groups[0]) == pytest.approx(0.0362738, rel=1e-5)
    # torch's parameterization: d = lr * wd = 5e-4, in wdlab's "lr" scaling and in torch's own AdamW
    expected = math.sqrt(2 * 5e-4 * 0.1 / 1.9)  # 0.00725476
    for opt in (AdamW(_params(), lr=1e-3, weight_decay=0.5, decay_scaling="lr"),
                torch.optim.AdamW(_params(), lr=1e-3, weight_decay=0.5),
                torch.optim.Adam(_params(), lr=1e-3, weight_decay=0.5, decoupled_weight_decay=True)):
        assert equilibrium_angle(opt, opt.param_groups[0]) == pytest.approx(expected, rel=1e-9), type(opt)
    # SGDW: d = eta * lambda; torch SGD with L2: sqrt(2 lr wd / (1 + mu))
    opt = SGDW(_params(), lr=0.05, momentum=0.9, weight_decay=0.01)
    assert equilibrium_angle(opt, opt.param_groups[0]) == pytest.approx(math.sqrt(0.02 * 0.1 / 1.9), rel=1e-9)
    opt = torch.optim.SGD(_params(), lr=0.1, momentum=0.9, weight_decay=0.01)
    assert equilibrium_angle(opt, opt.param_groups[0]) == pytest.approx(0.0324443, rel=1e-5)
    # Adam with L2: no closed form; without decay the equilibrium angle is 0; unknown optimizers: None
    opt = torch.optim.Adam(_params(), lr=1e-3, weight_decay=5e-4)
    assert equilibrium_angle(opt, opt.param_groups[0]) is None and predicted_angular_update(opt) is None
    opt = torch.optim.Adam(_params(), lr=1e-3, weight_decay=0.0)
    assert equilibrium_angle(opt, opt.param_groups[0]) == 0.0
    opt = torch.optim.RMSprop(_params(), lr=1e-3, weight_decay=1e-4)
    assert equilibrium_angle(opt, opt.param_groups[0]) is None


def test_decayed_matrices_and_the_mean_prediction_over_them():
    """Matrices of decayed groups only (no bias, no zero-decay group); the prediction is their mean."""
    w1, b1, w2, w3, w4 = (nn.Parameter(torch.randn(s)) for s in ((4, 3), (4,), (5, 4), (2, 5, 3), (3, 3)))
    opt = AdamW([{"params": [w1, b1], "weight_decay": 0.02}, {"params": [w2, w3], "weight_decay": 0.08},
                 {"params": [w4], "weight_decay": 0.0}], lr=1e-3)
    found = decayed_matrices(opt)
    assert [p.data_ptr() for p in found] == [w1.data_ptr(), w2.data_ptr(), w3.data_ptr()]
    assert not any(p.requires_grad for p in found)
    a1, a2 = adamw_equilibrium_angle(0.02, 0.9), adamw_equilibrium_angle(0.08, 0.9)
    assert predicted_angular_update(opt) == pytest.approx((a1 + 2 * a2) / 3, rel=1e-12)
    assert predicted_angular_update(AdamW([w4], lr=1e-3, weight_decay=0.0)) is None  # nothing decayed


def _rotated(a: torch.Tensor, angle: float, scale: float) -> torch.Tensor:
    """``scale * (cos(angle) a_hat + sin(angle) e)``, e a unit vector orthogonal to a."""
    a_hat = a / a.norm()
    e = torch.randn(a.shape, generator=torch.Generator().manual_seed(5), dtype=a.dtype)
    e = e - (e * a_hat).sum() * a_hat
    e = e / e.norm()
    return scale * (math.cos(angle) * a_hat + math.sin(angle) * e)


def test_angular_update_measures_known_angles():
    gen = torch.Generator().manual_seed(0)
    before = [torch.randn(s, generator=gen) for s in ((64, 32), (16, 8, 3, 3), (10, 7))]
    for angles in ((1e-4, 1e-4, 1e-4), (0.01, 0.03, 0.05), (0.3, 1.0, 2.5)):
        after = [_rotated(b, phi, 7.0) for b, phi in zip(before, angles, strict=True)]  # the norm does not matter
        measured = angular_update(before, after)
        assert measured.ndim == 0 and measured.dtype == torch.float32
        # float32 throughout: accurate even for 1e-4 rad, where arccos(cos) in float32 would read 0 or ~3e-4
        assert float(measured) == pytest.approx(sum(angles) / 3, rel=1e-3)
    assert float(angular_update(before, [3 * b for b in before])) == pytest.approx(0.0, abs=1e-6)  # a pure decay
    with pytest.raises(ValueError, match="equally long"):
        angular_update(before, before[:2])


# ------------------------------------------------------------------- (b) the equilibrium, reached
def _measure(optimizer: torch.optim.Optimizer, loss_fn, steps: int, windows: dict[str, range],
             every: int = 1) -> dict[str, float]:
    """Train ``steps`` steps; the mean measured angular update over each window of steps."""
    angles: dict[int, float] = {}
    wanted = set().union(*windows.values())
    for step in range(steps):
        optimizer.zero_grad()
        loss_fn(step).backward()
        measure = step in wanted and step % every == 0
        if measure:
            before = [p.clone() for p in decayed_matrices(optimizer)]
        optimizer.step()
        if measure:
            angles[step] = float(angular_update(before, decayed_matrices(optimizer)))
    return {name: sum(angles[s] for s in window if s in angles) / sum(1 for s in window if s in angles)
            for name, window in windows.items()}


RANDOM_WALK = {
    "adamw": lambda p: AdamW(p, lr=1e-2, weight_decay=1.0, decay_scaling="lr"),  # d = 0.01
    "sgdw": lambda p: SGDW(p, lr=1.0, momentum=0.9, weight_decay=0.01, decay_scaling="lr"),  # d = 0.01
    "sgdw-nesterov": lambda p: SGDW(p, lr=1.0, momentum=0.9, nesterov=True, weight_decay=0.01, decay_scaling="lr"),
    "sgd-l2": lambda p: torch.optim.SGD(p, lr=0.1, momentum=0.9, weight_decay=0.01),
}


@pytest.mark.parametrize("name", list(RANDOM_WALK))
def test_random_walk_on_scale_invariant_weights_reaches_the_predicted_angle(name):
    """The model the prediction is derived in, exactly: loss = sum_i <W_i / |W_i|, G_i> with fresh Gaussian
    G_i at every step (scale-invariant weights, uncorrelated zero-mean gradients orthogonal to the weights).
    After 600 steps (~12 equilibration times 1 / (2 d)) the mean angle over the next 400 is within 3 % of the
    prediction. Measured / predicted: adamw 0.0321 / 0.0324, sgdw 0.0325 / 0.0324, sgdw-nesterov
    0.0381 / 0.0376, sgd-l2 0.0325 / 0.0324 (1.4 % the largest deviation)."""
    gen = torch.Generator().manual_seed(0)
    params = [nn.Parameter(torch.randn(s, generator=gen)) for s in ((64, 32), (32, 32, 3))]
    optimizer = RANDOM_WALK[name](params)

    def loss(step: int) -> torch.Tensor:
        return sum(((p / p.norm()) * torch.randn(p.shape, generator=gen)).sum() for p in params)

    measured = _measure(optimizer, loss, 1000, {"late": range(600, 1000)})["late"]
    predicted = predicted_angular_update(optimizer)
    assert measured == pytest.approx(predicted, rel=0.03), (measured, predicted)


def _scale_invariant_net(gen: torch.Generator) -> nn.Sequential:
    """Every weight matrix followed by BatchNorm without affine (each row scale-invariant), logits included;
    no bias anywhere. Initialized at 10x the default scale: far from the equilibrium norm."""
    layers: list[nn.Module] = []
    for fan_in, fan_out in ((16, 32), (32, 32), (32, 32), (32, 8)):
        linear = nn.Linear(fan_in, fan_out, bias=False)
        with torch.no_grad():
            linear.weight.copy_(10 * torch.randn(fan_out, fan_in, generator=gen) / math.sqrt(fan_in))
        layers += [linear, nn.BatchNorm1d(fan_out, affine=False), nn.ReLU()]
    return nn.Sequential(*layers[:-1])


NETWORK = {
    "adamw": lambda p: AdamW(p, lr=1e-2, weight_decay=1.0, decay_scaling="lr"),  # d = 0.01, predicted 0.0324
    "sgdw": lambda p: SGDW(p, lr=1.0, momentum=0.9, weight_decay=0.01, decay_scaling="lr"),  # likewise
}


@pytest.mark.parametrize("name", list(NETWORK))
def test_a_batchnorm_network_on_random_data_approaches_the_predicted_angle(name):
    """A 4-layer BatchNorm MLP trained on random inputs and labels (batches of 16), started at 10x the default
    weight scale. Over the first 100 steps it rotates at < 50 % of the equilibrium angle (the decay has not
    taken hold); over steps 1000-2000 the mean is within 15 % of it. Real gradients are not a perfect random
    walk (they keep some correlation from step to step), so the network sits a few percent below the
    prediction. Seed 0, measured late / predicted: adamw 0.0304 / 0.0324 (0.94), sgdw 0.0311 / 0.0324 (0.96);
    early: 0.09x and 0.30x; seeds 1-3 give 0.92-0.97 late."""
    gen = torch.Generator().manual_seed(0)
    net = _scale_invariant_net(gen)
    optimizer = NETWORK[name](net.parameters())
    xs, ys = torch.randn(2000, 16, 16, generator=gen), torch.randint(0, 8, (2000, 16), generator=gen)

    def loss(step: int) -> torch.Tensor:
        return nn.functional.cross_entropy(net(xs[step]), ys[step])

    means = _measure(optimizer, loss, 2000, {"early": range(100), "late": range(1000, 2000)}, every=4)
    predicted = predicted_angular_update(optimizer)
    assert predicted == pytest.approx(0.0324443, rel=1e-5)
    assert means["early"] < 0.5 * predicted, (means, predicted)
    assert means["late"] == pytest.approx(predicted, rel=0.15), (means, predicted)


# ------------------------------------------------------------------------- (c) through Lightning
class _AngleProbe(Callback):
    """An independent measurement: float64 arccos of the cosine between each weight matrix of the net (or the
    module) before and after every optimizer step, averaged; keyed by the step as the logger records it."""

    def __init__(self) -> None:
        self.angles: dict[int, float] = {}

    @staticmethod
    def _matrices(pl_module) -> list[torch.Tensor]:
        return [p.detach().double().clone() for p in pl_module.parameters() if p.ndim >= 2]

    def on_before_optimizer_step(self, trainer, pl_module, optimizer):
        self._before = self._matrices(pl_module)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        angles = [torch.arccos((torch.dot(a.flatten(), b.flatten()) / (a.norm() * b.norm())).clamp(-1, 1))
                  for a, b in zip(self._before, self._matrices(pl_module), strict=True)]
        self.angles[trainer.global_step - 1] = float(torch.stack(angles).mean())


def _counting_measurements(monkeypatch) -> list[int]:
    calls: list[int] = []
    original = angular_module.angular_update

    def counted(before, after):
        calls.append(1)
        return original(before, after)

    monkeypatch.setattr(angular_module, "angular_update", counted)
    return calls


def _check_logged(logger: MemoryLogger, probe: _AngleProbe, logged_steps: list[int], predicted) -> None:
    with_lr = [s for s, m in logger.records if "opt/lr" in m or "train_loss" in m]
    with_angle = [s for s, m in logger.records if "opt/angular_update" in m]
    assert with_angle == with_lr == logged_steps, (with_angle, with_lr)
    for step, metrics in logger.records:
        if "opt/angular_update" not in metrics:
            assert "opt/angular_update_predicted" not in metrics
            continue
        angle = metrics["opt/angular_update"]
        assert 0 < angle < 0.5 and angle == pytest.approx(probe.angles[step], rel=1e-3), (step, angle)
        expected = predicted(metrics)
        if expected is None:
            assert "opt/angular_update_predicted" not in metrics
        else:
            assert metrics["opt/angular_update_predicted"] == pytest.approx(expected, rel=1e-5), step


PREDICTED = {  # the prediction from the other logged opt/* values of the same step (registry defaults)
    "adamw": lambda m: math.sqrt(2 * m["opt/decay"] * 0.1 / 1.9),  # betas (0.9, 0.999)
    "sgdw": lambda m: math.sqrt(2 * m["opt/decay"] * 0.1 / 1.9),  # momentum 0.9, decay outside the buffer
    "sgd": lambda m: math.sqrt(2 * m["opt/lr"] * m["opt/lambda"] / 1.9),  # L2 in the buffer
    "adam": lambda m: None,  # L2 through Adam's normalization: no closed form, the tag is not logged
}


@pytest.mark.trains
@pytest.mark.parametrize("name", list(PREDICTED))
def test_image_classifier_logs_the_angular_update_on_logging_steps_only(tmp_path, monkeypatch, name):
    """2 epochs x 3 steps, log_every_n_steps=2: logged at steps 1, 3, 5 (as opt/lr), measured only then (3 angle
    computations, not 6), equal to the probe's float64 angle over the net's weight matrices, and the prediction
    equal to the formula on the logged opt/decay (opt/lr, opt/lambda for SGD + L2)."""
    calls = _counting_measurements(monkeypatch)
    L.seed_everything(0, verbose=False)
    model = ImageClassifier(PreActResNet(8, 4, num_classes=10), {"name": name})
    dm = BuiltinDataModule(batch_size=32, num_train=96, num_test=32)
    logger, probe, monitor = MemoryLogger(), _AngleProbe(), AngularUpdateMonitor()
    trainer = L.Trainer(max_epochs=2, logger=logger, log_every_n_steps=2, callbacks=[probe, monitor],
                        limit_val_batches=0, num_sanity_val_steps=0, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, default_root_dir=tmp_path,
                        accelerator="cpu")
    trainer.fit(model, datamodule=dm)
    assert trainer.global_step == 6 and len(calls) == 3
    _check_logged(logger, probe, [1, 3, 5], PREDICTED[name])
    assert monitor.tracker._optimizer is None  # the module logs the tags itself: the callback stays out


@pytest.mark.trains
def test_any_module_gets_the_tags_from_the_callback(tmp_path, monkeypatch):
    """A regression MLP using wdlab.training.configure_optimizers (adamwr) and AngularUpdateMonitor: 3 epochs x 4
    steps, logged every 3rd step."""
    calls = _counting_measurements(monkeypatch)
    L.seed_everything(0, verbose=False)
    module = Regression()
    logger, probe = MemoryLogger(), _AngleProbe()
    trainer = L.Trainer(max_epochs=3, logger=logger, log_every_n_steps=3, callbacks=[probe, AngularUpdateMonitor()],
                        limit_val_batches=0, num_sanity_val_steps=0, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, default_root_dir=tmp_path,
                        accelerator="cpu")
    train, _ = loaders()
    trainer.fit(module, train)
    assert len(calls) == 4
    group = trainer.optimizers[0].param_groups[0]
    _check_logged(logger, probe, [2, 5, 8, 11], lambda m: m["opt/angular_update_predicted"])
    predicted = [m["opt/angular_update_predicted"] for _, m in logger.records if "opt/angular_update" in m]
    assert all(0 < p < 0.5 for p in predicted) and group["betas"][0] == 0.9
