"""No silent decay loss in low precision: a bfloat16 weight times 1 - eta_t * lambda rounds back to itself when the
decay is below its resolution, so torch's optimizers lose it; wdlab rounds decayed 16-bit weights stochastically,
so the expected shrink is exact (see wdlab.optim.decoupling). That a bfloat16 run resumes bit-identically (the
rounding's random numbers follow a step counter saved in the parameter groups) is the battery's ``round_trip``
check, run for every entry in float32 and bfloat16."""

from __future__ import annotations

import pytest
import torch

from wdlab.optim import build_optimizer
from wdlab.optim.decoupling import hashed_uniform, stochastically_rounded

STEPS, DECAY = 10_000, 1e-4
EXPECTED = (1 - DECAY) ** STEPS  # 0.3679


def _zero_gradient_shrink(make, dtype=torch.bfloat16, shape=(64, 64), steps=STEPS):
    """Mean of theta_T / theta_0 after ``steps`` zero-gradient steps (weights drawn in [1, 2) x sign, exactly
    representable in the dtype)."""
    gen = torch.Generator().manual_seed(0)
    start = ((1 + torch.rand(shape, generator=gen)) * torch.randn(shape, generator=gen).sign()).to(dtype)
    p = torch.nn.Parameter(start.clone())
    opt, sched = make([p])
    for _ in range(steps):
        p.grad = torch.zeros_like(p)
        opt.step()
        if sched is not None:
            sched.step()
    assert p.dtype == dtype
    return float((p.detach().double() / start.double()).mean())


def _torch_adamw(decay):
    return lambda p: (torch.optim.AdamW(p, lr=0.01, weight_decay=decay / 0.01), None)


def _wdlab(name, decay=DECAY, **overrides):
    def make(params):
        return build_optimizer(name, params, steps_per_epoch=100, max_epochs=STEPS // 100, batch_size=1,
                               num_train=100, schedule="constant", weight_decay=decay, **overrides)
    return make


@pytest.mark.slow  # 2 x 10,000 steps
def test_bfloat16_decay_of_1e_4_for_10000_steps():
    """The issue's case, eta_t * lambda = lr_t * wd = 1e-4 (< 2^-9) on bfloat16 weights with zero gradients:
    torch.optim.AdamW leaves them unchanged; wdlab's adamw shrinks them by (1 - 1e-4)^10000 within 1 %."""
    assert torch.tensor(1 - DECAY, dtype=torch.bfloat16).item() == 1.0  # the shrink itself is not representable
    assert _zero_gradient_shrink(_torch_adamw(DECAY)) == 1.0
    assert _zero_gradient_shrink(_wdlab("adamw")) == pytest.approx(EXPECTED, rel=0.01)


@pytest.mark.parametrize(("name", "dtype"), [("adamw", torch.bfloat16), ("sgdw", torch.float16)])
def test_a_decay_below_the_resolution_acts_in_expectation(name, dtype):
    """The same at 1,000 steps of 1e-3 (still below bfloat16's 2^-9; float16's is 2^-12, so 1e-4 there):
    torch loses it, wdlab's mean shrink is (1 - d)^1000 within 1 %. (Adam in float16 divides by an eps that
    underflows: sgdw carries the float16 case.)"""
    decay = 1e-3 if dtype == torch.bfloat16 else 1e-4
    assert torch.tensor(1 - decay, dtype=dtype).item() == 1.0
    if dtype == torch.bfloat16:
        assert _zero_gradient_shrink(_torch_adamw(decay), dtype=dtype, steps=1000) == 1.0
    ratio = _zero_gradient_shrink(_wdlab(name, decay), dtype=dtype, steps=1000)
    assert ratio == pytest.approx((1 - decay) ** 1000, rel=0.01)


@pytest.mark.slow  # 2 x 1,000 steps per entry (muonw: a 64 x 64 Newton-Schulz per step)
@pytest.mark.parametrize("name", ["sgdw", "radamw", "nadamw", "muonw", "adamc"])
def test_every_decoupled_entry_keeps_the_decay_in_expectation(name):
    want = (1 - 1e-3) ** 1000
    assert _zero_gradient_shrink(_wdlab(name, 1e-3), steps=1000) == pytest.approx(want, rel=0.01)
    cautious = _zero_gradient_shrink(_wdlab(name, 1e-3, decay_mask="cautious"), steps=1000)  # zero updates tie
    assert cautious == pytest.approx(want, rel=0.01)


def test_stochastic_rounding_is_unbiased_and_picks_a_neighbour():
    value = torch.full((200_000,), 1.0 + 2**-7 / 3, dtype=torch.float32)  # a third of the way to the next bf16
    rounded = stochastically_rounded(value, torch.bfloat16, seed=5)
    assert set(rounded.float().unique().tolist()) == {1.0, 1.0 + 2**-7}
    assert float(rounded.double().mean()) == pytest.approx(float(value[0]), abs=4 * 2**-7 * (2 / 9 / 200_000) ** 0.5)
    exact = torch.tensor([1.0, -2.0, 0.0, 3.5], dtype=torch.float32)  # representable: kept
    assert torch.equal(stochastically_rounded(exact, torch.bfloat16, seed=1).float(), exact)
    negative = -value[:100_000]
    assert float(stochastically_rounded(negative, torch.bfloat16, seed=2).double().mean()) == pytest.approx(
        float(negative[0]), abs=4 * 2**-7 * (2 / 9 / 100_000) ** 0.5)


def test_the_hashed_uniforms_are_uniform_and_depend_on_the_seed():
    u = hashed_uniform((100_000,), torch.device("cpu"), seed=3)
    assert 0 < float(u.min()) and float(u.max()) < 1
    assert float(u.mean()) == pytest.approx(0.5, abs=0.005) and float(u.var()) == pytest.approx(1 / 12, abs=0.002)
    assert torch.histc(u, bins=10, min=0, max=1).min() > 9_500
    assert torch.equal(u, hashed_uniform((100_000,), torch.device("cpu"), seed=3))
    assert not torch.equal(u, hashed_uniform((100_000,), torch.device("cpu"), seed=4))
