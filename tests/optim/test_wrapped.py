"""Decoupled decay for other torch optimizers: :func:`wdlab.optim.decoupled`, ``radamw``, ``nadamw`` and ``muonw``.

The registry battery (tests/optim/test_optim.py) runs every entry against its float64 reference; the tests here are
about the mechanism: torch's own decay never acts, the wrapped classes equal torch's at the matching torch parameters,
and Muon's share of MuonW (which weights, how a convolution kernel is laid out, its orthogonalization).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from optim_reference import adam_reference, newton_schulz, torch_newton_schulz

from wdlab.cli import main
from wdlab.optim import REGISTRY, MuonW, NAdamW, RAdamW, decoupled
from wdlab.optim.muon import as_matrix
from wdlab.optim.schedules import ScheduledLR, WarmRestartsSchedule
from wdlab.optim.spec import takes_argument

SPE, T0, T_MULT = 10, 2, 2


def _run(make, steps=70, *, shape=(6,), seed=0):
    """Parameters after ``steps`` steps of ``make(params)`` under warm restarts, from fixed random gradients."""
    gen = torch.Generator().manual_seed(seed)
    p = torch.nn.Parameter(torch.randn(shape, dtype=torch.float64, generator=gen))
    opt = make([p])
    sched = ScheduledLR(opt, WarmRestartsSchedule(steps_per_epoch=SPE, max_epochs=30, t0_epochs=T0, t_mult=T_MULT))
    for _ in range(steps):
        p.grad = torch.randn(shape, dtype=torch.float64, generator=gen)
        opt.step()
        sched.step()
    return p.detach()


@pytest.mark.parametrize(("ours", "theirs"), [(RAdamW, torch.optim.RAdam), (NAdamW, torch.optim.NAdam)])
def test_a_wrapped_class_is_torchs_with_torchs_decay_translated(ours, theirs):
    """lambda = lr * wd: "schedule" scaling decays by eta_t * lambda = lr_t * wd, torch's decoupled_weight_decay;
    "lr" scaling is torch's decoupled decay itself; with lambda 0 the update is torch's bit for bit."""
    lr, wd = 0.01, 0.3
    torch_decoupled = _run(lambda p: theirs(p, lr=lr, weight_decay=wd, decoupled_weight_decay=True))
    torch.testing.assert_close(_run(lambda p: ours(p, lr=lr, weight_decay=lr * wd)), torch_decoupled,
                               rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(_run(lambda p: ours(p, lr=lr, weight_decay=wd, decay_scaling="lr")), torch_decoupled,
                               rtol=1e-12, atol=1e-14)
    assert torch.equal(_run(lambda p: ours(p, lr=lr)), _run(lambda p: theirs(p, lr=lr)))
    # and torch's own decay is off: the L2 form (torch's default) would give another run
    torch_l2 = _run(lambda p: theirs(p, lr=lr, weight_decay=wd))
    assert (torch_l2 - torch_decoupled).abs().max() > 1e-4


def test_decoupled_refuses_what_it_cannot_wrap():
    with pytest.raises(ValueError, match=r"needs a torch\.optim\.Optimizer subclass"):
        decoupled(torch.nn.Linear)

    class NoDecay(torch.optim.Optimizer):
        def __init__(self, params, lr=0.1):
            super().__init__(params, {"lr": lr})

    with pytest.raises(ValueError, match="NoDecay takes no weight_decay argument"):
        decoupled(NoDecay)
    with pytest.raises(ValueError, match="already takes decay_scaling"):
        decoupled(RAdamW)


def test_a_wrapped_class_declares_its_arguments():
    """The registry reads the signature: torch's arguments plus decay_scaling, and no fused RAdam does not have."""
    assert takes_argument(RAdamW, "decay_scaling") and takes_argument(RAdamW, "betas")
    assert takes_argument(NAdamW, "momentum_decay") and not takes_argument(RAdamW, "fused")
    assert not takes_argument(RAdamW, "decay_mask_typo")
    with pytest.raises(ValueError, match="decay_scaling must be"):
        RAdamW([torch.nn.Parameter(torch.zeros(2))], decay_scaling="epoch")


def test_step_hooks_run_once_per_step():
    params = [torch.nn.Parameter(torch.randn(3, 2))]
    torch.optim.RAdam(params)  # makes torch patch RAdam.step with its hook wrapper
    for opt in (RAdamW(params, weight_decay=0.1), MuonW(params, weight_decay=0.1)):
        calls = []
        opt.register_step_pre_hook(lambda *args, calls=calls: calls.append("pre"))
        opt.register_step_post_hook(lambda *args, calls=calls: calls.append("post"))
        params[0].grad = torch.ones(3, 2)
        opt.step()
        assert calls == ["pre", "post"]


# -- MuonW ---------------------------------------------------------------------------------------------------------
def test_torchs_newton_schulz_is_the_quintic_iteration():
    """The operator muonw's reference takes from torch is the float64 quintic Newton-Schulz, up to bfloat16."""
    rng = np.random.default_rng(0)
    for shape in ((4, 6), (6, 4), (1, 10)):
        x = rng.normal(size=shape)
        want = newton_schulz(x)
        assert np.max(np.abs(torch_newton_schulz(x) - want)) < 0.03, shape
        # and it is an orthogonalization: singular values near 1 (the quintic lands in about [0.7, 1.2])
        singular = np.linalg.svd(want, compute_uv=False)
        assert singular.min() > 0.6 and singular.max() < 1.25, singular


def test_a_convolution_kernel_is_seen_as_out_by_in_kh_kw():
    kernel = torch.arange(2 * 3 * 2 * 2, dtype=torch.float64).reshape(2, 3, 2, 2)
    matrix = as_matrix(kernel)
    assert matrix.shape == (2, 12) and torch.equal(matrix[1], kernel[1].reshape(-1))
    assert matrix.untyped_storage().data_ptr() == kernel.untyped_storage().data_ptr()  # a view: updates land
    last = kernel.to(memory_format=torch.channels_last)
    viewed = as_matrix(last)  # (out, kh * kw * in): the same rows, columns permuted, still a view
    assert viewed.untyped_storage().data_ptr() == last.untyped_storage().data_ptr()
    assert torch.equal(viewed.sort(dim=1).values, matrix.sort(dim=1).values)
    with pytest.raises(ValueError, match="ndim >= 2"):
        as_matrix(torch.zeros(3))


def test_muonw_trains_a_channels_last_kernel_as_its_contiguous_twin():
    """The column permutation of a channels-last kernel does not change Muon's update (bfloat16 aside)."""
    def run(memory_format):
        torch.manual_seed(0)
        conv = torch.nn.Conv2d(3, 4, 3, bias=False).double().to(memory_format=memory_format)
        opt = MuonW(conv.parameters(), lr=0.01, weight_decay=0.1)
        x = torch.randn(5, 3, 6, 6, dtype=torch.float64).contiguous(memory_format=memory_format)
        for _ in range(5):
            opt.zero_grad()
            conv(x).square().mean().backward()
            opt.step()
        return conv.weight.detach().contiguous()

    torch.manual_seed(0)
    start = torch.nn.Conv2d(3, 4, 3, bias=False).weight.detach().double()
    plain, last = run(torch.contiguous_format), run(torch.channels_last)
    assert (plain - start).abs().max() > 1e-3  # it trained
    torch.testing.assert_close(last, plain, rtol=0, atol=2e-4)


def test_a_group_can_send_its_matrices_to_adamw():
    """``"muon": False`` in a group: its 2-D weight follows AdamW's equations (float64 reference)."""
    gen = torch.Generator().manual_seed(3)
    w = torch.nn.Parameter(torch.randn(3, 4, dtype=torch.float64, generator=gen))
    theta0 = w.detach().numpy().copy()
    grads = [torch.randn(3, 4, dtype=torch.float64, generator=gen) for _ in range(30)]
    opt = MuonW([{"params": [w], "muon": False}], lr=0.01, weight_decay=0.2)
    for g in grads:
        w.grad = g.clone()
        opt.step()
    want = adam_reference(theta0, lambda th, s: grads[s].numpy(), 30, alpha=0.01, eta=lambda s: 1.0,
                          lam=lambda s: 0.2, decoupled=True)[-1]
    np.testing.assert_allclose(w.detach().numpy(), want, rtol=1e-12, atol=1e-14)
    assert set(opt.state[w]) == {"step", "exp_avg", "exp_avg_sq"}
    muon_state = MuonW([torch.nn.Parameter(torch.randn(3, 4))])
    muon_state.param_groups[0]["params"][0].grad = torch.ones(3, 4)
    muon_state.step()
    assert set(muon_state.state[muon_state.param_groups[0]["params"][0]]) == {"momentum_buffer"}


def test_muonw_refuses_bad_settings_in_one_line():
    p = [torch.nn.Parameter(torch.zeros(2, 2))]
    with pytest.raises(ValueError, match="adjust_lr_fn must be"):
        MuonW(p, adjust_lr_fn="bigger")
    with pytest.raises(ValueError, match="momentum must be a number in"):
        MuonW(p, momentum=1.0)


def test_the_new_entries_are_listed(capsys):
    assert main(["optimizers"]) == 0
    rows = {line.split()[0]: line for line in capsys.readouterr().out.splitlines()[1:]}
    for name, cls in (("radamw", "RAdamW"), ("nadamw", "NAdamW"), ("muonw", "MuonW")):
        assert cls in rows[name] and "eta_t*lambda" in rows[name] and "built-in" in rows[name], rows[name]
    assert REGISTRY["muonw"].schedule == REGISTRY["adamwr"].schedule == "warm_restarts"
