"""Tests for wdlab.models: shapes, published parameter counts, Shake-Shake statistics, init, layouts."""

from __future__ import annotations

import ast
import math
import typing
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import wdlab.models as models
from wdlab.models import PreActResNet, ShakeShake, WideResNet
from wdlab.models.shake_shake import (
    ShakeShakeBlock,
    ShakeShakeFunction,
    _ShiftedShortcut,
    shake_shake,
    shift_one_pixel,
)


@pytest.fixture(autouse=True, scope="module")
def _one_intra_op_thread() -> typing.Iterator[None]:
    # These tensors are tiny: one thread is as fast, and it avoids OpenMP spin-waiting, which makes
    # the file ~20x slower when other processes share the 2 cores. Restored for other test files.
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def n_params(m: nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


# Small instances: the architecture is what matters here, not the width.
SMALL_MODELS = {
    "shake_8_2x8d": lambda: ShakeShake(8, 8),
    "shake_26_2x8d": lambda: ShakeShake(26, 8),
    "wrn_10_1": lambda: WideResNet(10, 1, 10),
    "wrn_16_2_dropout": lambda: WideResNet(16, 2, 10, dropout=0.3),
    "preact_default": lambda: PreActResNet(),
}


# ----------------------------------------------------------------------------------------------
# Shapes
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(SMALL_MODELS))
@pytest.mark.parametrize("batch", [1, 3, 7])
@pytest.mark.parametrize("training", [True, False])
def test_output_shape(name: str, batch: int, training: bool) -> None:
    torch.manual_seed(0)
    m = SMALL_MODELS[name]().train(training)
    out = m(torch.randn(batch, 3, 32, 32))
    assert out.shape == (batch, 10)
    assert torch.isfinite(out).all()


def test_smaller_last_batch_shake_shake() -> None:
    # alpha/beta must follow the batch actually given, not the first one seen.
    torch.manual_seed(0)
    m = ShakeShake(8, 8).train()
    for batch in (8, 3, 1):
        out = m(torch.randn(batch, 3, 32, 32))
        out.sum().backward()
        assert out.shape == (batch, 10)


def test_other_input_sizes() -> None:
    # Global pooling is a mean over H, W, so 8x8 inputs etc. still work.
    for m in (ShakeShake(8, 8), WideResNet(10, 1, 10), PreActResNet()):
        assert m.eval()(torch.randn(2, 3, 16, 16)).shape == (2, 10)


def test_custom_num_classes() -> None:
    assert ShakeShake(8, 8, num_classes=7).eval()(torch.randn(2, 3, 32, 32)).shape == (2, 7)
    assert PreActResNet(num_classes=3).eval()(torch.randn(2, 3, 32, 32)).shape == (2, 3)


def test_wrn_imagenet32_1000_classes_runs() -> None:
    m = WideResNet(28, 2, 1000).train()
    out = m(torch.randn(3, 3, 32, 32))
    assert out.shape == (3, 1000)
    F.cross_entropy(out, torch.tensor([0, 500, 999])).backward()
    assert all(p.grad is not None for p in m.parameters())


# ----------------------------------------------------------------------------------------------
# Parameter counts (published figures rounded to 0.1M, plus exact values as a regression guard)
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("width", "published", "exact"),
    [(32, 2.9, 2_923_162), (64, 11.7, 11_653_978), (96, 26.2, 26_192_922)],
)
def test_shake_shake_param_count(width: int, published: float, exact: int) -> None:
    n = n_params(ShakeShake(26, width, 10))
    assert round(n / 1e6, 1) == published
    assert n == exact


@pytest.mark.parametrize(
    ("widen", "classes", "published", "exact"),
    [
        (2, 10, 1.5, 1_467_610),
        (10, 10, 36.5, 36_479_194),
        (2, 1000, None, 1_595_320),
        (10, 1000, None, 37_113_784),
    ],
)
def test_wrn_param_count(widen: int, classes: int, published: float | None, exact: int) -> None:
    n = n_params(WideResNet(28, widen, classes))
    if published is not None:
        assert round(n / 1e6, 1) == published
    assert n == exact


def test_preact_resnet_param_count() -> None:
    assert n_params(PreActResNet()) == 77_850
    assert n_params(PreActResNet(14, 16)) == 175_066
    assert n_params(PreActResNet(14, 32)) == 696_234


def test_block_counts_follow_depth() -> None:
    assert len(ShakeShake(26, 8).blocks) == 12
    assert len(ShakeShake(8, 8).blocks) == 3
    assert len(WideResNet(28, 1, 10).blocks) == 12
    assert len(PreActResNet(8).blocks) == 3
    assert len(PreActResNet(14).blocks) == 6


# ----------------------------------------------------------------------------------------------
# Shake-Shake combination
# ----------------------------------------------------------------------------------------------


def _alpha_beta(n: int, shape: tuple[int, ...] = (2, 3, 3)) -> tuple[torch.Tensor, torch.Tensor]:
    """Recover per-image alpha (forward) and beta (backward) by shaking ones against zeros."""
    b1 = torch.ones(n, *shape, requires_grad=True)
    b2 = torch.zeros(n, *shape, requires_grad=True)
    out = shake_shake(b1, b2, training=True)
    out.backward(torch.ones_like(out))
    # alpha = out, beta = d out / d b1; both must be constant within an image.
    for t in (out.detach(), b1.grad, 1 - b2.grad):
        flat = t.reshape(n, -1)
        assert torch.allclose(flat, flat[:, :1].expand_as(flat), atol=1e-6)
    return out.detach().reshape(n, -1)[:, 0], b1.grad.reshape(n, -1)[:, 0]


def test_shake_alpha_beta_statistics() -> None:
    torch.manual_seed(0)
    n = 4000
    alpha, beta = _alpha_beta(n)
    for name, c in (("alpha", alpha), ("beta", beta)):
        assert c.min() >= 0 and c.max() <= 1, name
        assert abs(c.mean().item() - 0.5) < 0.03, name  # U(0,1): sd of the mean ~ 0.005
        assert abs(c.var().item() - 1 / 12) < 0.01, name
    # Per image: different images get different coefficients.
    assert alpha.unique().numel() > n // 2
    # Independent: the backward split is not the forward mix.
    assert (alpha - beta).abs().max() > 0.5
    corr = torch.corrcoef(torch.stack([alpha, beta]))[0, 1].item()
    assert abs(corr) < 0.1


def test_shake_function_value_and_gradient() -> None:
    torch.manual_seed(1)
    b1 = torch.randn(5, 4, 3, 3, requires_grad=True)
    b2 = torch.randn(5, 4, 3, 3, requires_grad=True)
    alpha = torch.rand(5, 1, 1, 1)
    beta = torch.rand(5, 1, 1, 1)
    out = ShakeShakeFunction.apply(b1, b2, alpha, beta)
    assert torch.allclose(out, alpha * b1 + (1 - alpha) * b2, atol=1e-6)
    g = torch.randn_like(out)
    out.backward(g)
    assert torch.allclose(b1.grad, beta * g, atol=1e-6)
    assert torch.allclose(b2.grad, (1 - beta) * g, atol=1e-6)


def test_shake_forward_is_convex_combination_with_random_branches() -> None:
    torch.manual_seed(2)
    b1, b2 = torch.randn(64, 3, 4, 4), torch.randn(64, 3, 4, 4)
    out = shake_shake(b1, b2, training=True)
    alpha = (out - b2) / (b1 - b2)  # per element; must be one value per image
    alpha = alpha.reshape(64, -1)
    assert torch.allclose(alpha, alpha.median(dim=1, keepdim=True).values.expand_as(alpha), atol=1e-3)
    assert alpha.min() >= -1e-4 and alpha.max() <= 1 + 1e-4


def test_shake_eval_is_exact_mean() -> None:
    torch.manual_seed(3)
    b1, b2 = torch.randn(6, 3, 4, 4, requires_grad=True), torch.randn(6, 3, 4, 4, requires_grad=True)
    out = shake_shake(b1, b2, training=False)
    assert torch.equal(out, 0.5 * b1 + 0.5 * b2)
    out.sum().backward()
    assert torch.equal(b1.grad, torch.full_like(b1, 0.5))
    assert torch.equal(b2.grad, torch.full_like(b2, 0.5))


def test_shake_uses_global_rng() -> None:
    b1, b2 = torch.randn(16, 2, 2, 2), torch.randn(16, 2, 2, 2)
    torch.manual_seed(123)
    a = shake_shake(b1, b2, training=True)
    torch.manual_seed(123)
    b = shake_shake(b1, b2, training=True)
    state = torch.get_rng_state()
    c = shake_shake(b1, b2, training=True)
    torch.set_rng_state(state)
    d = shake_shake(b1, b2, training=True)
    assert torch.equal(a, b)
    assert torch.equal(c, d)
    assert not torch.equal(a, c)


def test_shake_low_precision_dtype() -> None:
    b1 = torch.randn(4, 2, 3, 3, dtype=torch.bfloat16, requires_grad=True)
    b2 = torch.randn(4, 2, 3, 3, dtype=torch.bfloat16, requires_grad=True)
    out = shake_shake(b1, b2, training=True)
    assert out.dtype == torch.bfloat16
    out.sum().backward()
    assert b1.grad.dtype == torch.bfloat16
    assert torch.allclose((b1.grad + b2.grad).float(), torch.ones(4, 2, 3, 3), atol=1e-2)


def test_model_mixes_per_image_in_training_only() -> None:
    # The same image repeated: train-mode BN sees identical samples, so only shake can make rows differ.
    torch.manual_seed(4)
    x = torch.randn(1, 3, 32, 32).expand(6, -1, -1, -1).contiguous()
    shake = ShakeShake(8, 8)
    out = shake.train()(x)
    assert (out - out[:1]).abs().amax(dim=1)[1:].min() > 1e-4
    out = shake.eval()(x)
    assert torch.allclose(out, out[:1].expand_as(out), atol=1e-6)
    plain = PreActResNet().train()(x)  # control: no shake, rows equal
    assert torch.allclose(plain, plain[:1].expand_as(plain), atol=1e-5)


def test_shake_block_backward_split() -> None:
    # Through a real block: grads reaching branch outputs sum to the output grad, and their per-image
    # ratio is beta, which differs from the forward alpha.
    torch.manual_seed(5)
    block = ShakeShakeBlock(4, 4, 1).train()
    seen: dict[str, torch.Tensor] = {}

    def keep(name: str):
        def hook(_m: nn.Module, _inp: object, out: torch.Tensor) -> None:
            out.retain_grad()
            seen[name] = out

        return hook

    block.branch1.register_forward_hook(keep("b1"))
    block.branch2.register_forward_hook(keep("b2"))
    x = torch.randn(32, 4, 6, 6)
    out = block(x)
    g = torch.randn_like(out)
    out.backward(g)
    b1, b2 = seen["b1"], seen["b2"]
    alpha = ((out - x - b2) / (b1 - b2)).detach().reshape(32, -1).median(dim=1).values
    beta = (b1.grad / g).reshape(32, -1).median(dim=1).values
    assert torch.allclose(b1.grad + b2.grad, g, atol=1e-5)
    assert torch.allclose(b1.grad, beta.view(-1, 1, 1, 1) * g, atol=1e-5)
    assert (alpha - beta).abs().max() > 0.2
    assert alpha.min() >= -1e-3 and alpha.max() <= 1 + 1e-3


def test_eval_deterministic_and_train_reproducible_with_seed() -> None:
    x = torch.randn(5, 3, 32, 32)
    m = ShakeShake(8, 8)
    m.eval()
    assert torch.equal(m(x), m(x))

    def train_step(seed: int) -> tuple[torch.Tensor, torch.Tensor]:
        torch.manual_seed(seed)
        m.zero_grad(set_to_none=True)
        out = m.train()(x)
        out.square().sum().backward()
        return out.detach(), m.stem[0].weight.grad.clone()

    o1, g1 = train_step(7)
    o2, g2 = train_step(7)
    o3, _ = train_step(8)
    assert torch.equal(o1, o2)
    assert torch.equal(g1, g2)
    assert not torch.allclose(o1, o3)


# ----------------------------------------------------------------------------------------------
# Shifted shortcut
# ----------------------------------------------------------------------------------------------


def test_shift_one_pixel() -> None:
    x = torch.arange(2 * 3 * 4 * 5, dtype=torch.float32).reshape(2, 3, 4, 5) + 1
    s = shift_one_pixel(x)
    assert s.shape == x.shape
    assert torch.equal(s[:, :, :-1, :-1], x[:, :, 1:, 1:])
    assert torch.equal(s[:, :, -1, :], torch.zeros(2, 3, 5))  # bottom row zero
    assert torch.equal(s[:, :, :, -1], torch.zeros(2, 3, 4))  # right column zero


@pytest.mark.parametrize("stride", [1, 2])
def test_shifted_shortcut_paths(stride: int) -> None:
    # Identity 1x1 convs make each path's input visible in the output.
    sc = _ShiftedShortcut(2, 4, stride).eval()
    with torch.no_grad():
        sc.conv1.weight.copy_(torch.eye(2).view(2, 2, 1, 1))
        sc.conv2.weight.copy_(torch.eye(2).view(2, 2, 1, 1))
    x = torch.rand(3, 2, 8, 8)
    out = sc(x) * math.sqrt(1 + sc.bn.eps)  # undo eval BN with default stats
    assert out.shape == (3, 4, 8 // stride, 8 // stride)
    assert torch.allclose(out[:, :2], x[:, :, ::stride, ::stride], atol=1e-6)
    assert torch.allclose(out[:, 2:], shift_one_pixel(x)[:, :, ::stride, ::stride], atol=1e-6)
    if stride == 2:  # the second path samples the odd pixels the first one skips
        assert torch.allclose(out[:, 2:, :-1, :-1], x[:, :, 1:-1:2, 1:-1:2], atol=1e-6)


def test_shake_block_shortcut_relu_and_identity() -> None:
    proj = ShakeShakeBlock(4, 8, 2)
    assert isinstance(proj.shortcut, _ShiftedShortcut)
    assert isinstance(ShakeShakeBlock(8, 8, 1).shortcut, nn.Identity)
    # Projection shortcut sees ReLU(x): negative inputs contribute nothing.
    proj.eval()
    with torch.no_grad():
        a = proj.shortcut(F.relu(-torch.rand(1, 4, 8, 8)))
    assert torch.allclose(a, proj.shortcut.bn(torch.zeros(1, 8, 4, 4)))


# ----------------------------------------------------------------------------------------------
# Initialisation
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "make", [lambda: ShakeShake(26, 16), lambda: WideResNet(16, 4, 10), lambda: PreActResNet()]
)
def test_init(make: typing.Callable[[], nn.Module]) -> None:
    torch.manual_seed(0)
    m = make()
    convs = [mod for mod in m.modules() if isinstance(mod, nn.Conv2d)]
    assert convs
    for c in convs:
        k_h, k_w = c.kernel_size
        want = math.sqrt(2.0 / (k_h * k_w * c.out_channels))
        w = c.weight.detach()
        # relative s.e. of a sample std is ~ 1/sqrt(2 n); allow 5 of them (and at least 3 %)
        tol = max(0.03, 5 / math.sqrt(2 * w.numel()))
        assert abs(w.std().item() / want - 1) < tol, (c, w.std().item(), want)
        assert abs(w.mean().item()) < 5 * want / math.sqrt(w.numel())
        assert c.bias is None
    bns = [mod for mod in m.modules() if isinstance(mod, nn.BatchNorm2d)]
    assert bns
    for bn in bns:
        assert torch.equal(bn.weight, torch.ones_like(bn.weight))
        assert torch.equal(bn.bias, torch.zeros_like(bn.bias))
    fcs = [mod for mod in m.modules() if isinstance(mod, nn.Linear)]
    assert len(fcs) == 1
    fc = fcs[0]
    assert torch.equal(fc.bias, torch.zeros_like(fc.bias))
    # weight keeps torch's default: kaiming_uniform(a=sqrt(5)) -> U(-1/sqrt(fan_in), 1/sqrt(fan_in))
    bound = 1 / math.sqrt(fc.in_features)
    assert fc.weight.abs().max() <= bound
    assert fc.weight.abs().max() > 0.9 * bound


def test_init_weights_helper_is_shared() -> None:
    m = nn.Sequential(nn.Conv2d(3, 64, 3, bias=True), nn.BatchNorm2d(64), nn.Linear(4, 2))
    with torch.no_grad():
        for p in m.parameters():
            p.fill_(3.0)
    models.init_weights(m)
    assert torch.equal(m[0].bias, torch.zeros(64))
    assert abs(m[0].weight.std().item() / math.sqrt(2 / (9 * 64)) - 1) < 0.1
    assert torch.equal(m[1].weight, torch.ones(64))
    assert torch.equal(m[1].bias, torch.zeros(64))
    assert torch.equal(m[2].bias, torch.zeros(2))
    assert torch.equal(m[2].weight, torch.full((2, 4), 3.0))  # linear weight left alone


# ----------------------------------------------------------------------------------------------
# Memory format / autocast
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(SMALL_MODELS))
def test_channels_last_matches_contiguous(name: str) -> None:
    torch.manual_seed(0)
    m = SMALL_MODELS[name]()
    x = torch.randn(4, 3, 32, 32)
    m_cl = SMALL_MODELS[name]()
    m_cl.load_state_dict(m.state_dict())
    m_cl = m_cl.to(memory_format=torch.channels_last)
    x_cl = x.to(memory_format=torch.channels_last)

    m.eval()
    m_cl.eval()
    with torch.no_grad():
        assert torch.allclose(m(x), m_cl(x_cl), rtol=1e-4, atol=1e-5)

    # Training: same seed -> same shake coefficients in both layouts (alpha/beta are (N,1,1,1)).
    # Compared in float64: in float32 the layouts' different rounding can flip a ReLU whose input
    # is ~1e-6, which legitimately moves a small gradient by a few percent.
    m, m_cl = m.double().train(), m_cl.double().train()
    x, x_cl = x.double(), x_cl.double()
    torch.manual_seed(1)
    out = m(x)
    out.square().sum().backward()
    torch.manual_seed(1)
    out_cl = m_cl(x_cl)
    out_cl.square().sum().backward()
    assert torch.isfinite(out_cl).all()
    for p_cl in m_cl.parameters():
        assert p_cl.grad is not None and torch.isfinite(p_cl.grad).all()
    # Dropout masks are drawn in memory order, so they differ between layouts: only check it runs.
    if any(isinstance(mod, nn.Dropout) for mod in m.modules()):
        return
    assert torch.allclose(out, out_cl, rtol=1e-9, atol=1e-9)
    for p, p_cl in zip(m.parameters(), m_cl.parameters(), strict=True):
        assert torch.allclose(p.grad, p_cl.grad, rtol=1e-7, atol=1e-9)


def test_bf16_autocast_cpu() -> None:
    torch.manual_seed(0)
    m = ShakeShake(8, 8).train()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = m(torch.randn(3, 3, 32, 32))
    out.float().sum().backward()
    assert torch.isfinite(m.stem[0].weight.grad).all()


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_bf16_channels_last() -> None:
    torch.manual_seed(0)
    for m in (ShakeShake(8, 8), WideResNet(10, 1, 10), PreActResNet()):
        m = m.cuda().to(memory_format=torch.channels_last).train()
        x = torch.randn(5, 3, 32, 32, device="cuda").to(memory_format=torch.channels_last)
        with torch.autocast("cuda", dtype=torch.bfloat16):
            out = m(x)
        out.float().sum().backward()
        assert out.shape == (5, 10)
        assert all(torch.isfinite(p.grad).all() for p in m.parameters())


# ----------------------------------------------------------------------------------------------
# Dropout (WRN)
# ----------------------------------------------------------------------------------------------


def test_wrn_dropout_train_vs_eval() -> None:
    m = WideResNet(10, 1, 10, dropout=0.5)
    x = torch.randn(2, 3, 32, 32)
    m.train()
    torch.manual_seed(0)
    a = m(x)
    torch.manual_seed(1)
    b = m(x)
    assert not torch.allclose(a, b)
    m.eval()
    assert torch.equal(m(x), m(x))
    assert not any(isinstance(mod, nn.Dropout) for mod in WideResNet(10, 1, 10).modules())


# ----------------------------------------------------------------------------------------------
# Argument validation and API
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("ctor", "kwargs", "param"),
    [
        (ShakeShake, {"depth": 25}, "depth"),
        (ShakeShake, {"depth": 2}, "depth"),
        (ShakeShake, {"depth": 26.0}, "depth"),
        (ShakeShake, {"base_width": 33}, "base_width"),
        (ShakeShake, {"base_width": 0}, "base_width"),
        (ShakeShake, {"num_classes": 0}, "num_classes"),
        (WideResNet, {"depth": 27, "widen_factor": 2, "num_classes": 10}, "depth"),
        (WideResNet, {"depth": 4, "widen_factor": 2, "num_classes": 10}, "depth"),
        (WideResNet, {"depth": 28, "widen_factor": 0, "num_classes": 10}, "widen_factor"),
        (WideResNet, {"depth": 28, "widen_factor": 2, "num_classes": 0}, "num_classes"),
        (WideResNet, {"depth": 28, "widen_factor": 2, "num_classes": 10, "dropout": 1.0}, "dropout"),
        (WideResNet, {"depth": 28, "widen_factor": 2, "num_classes": 10, "dropout": -0.1}, "dropout"),
        (PreActResNet, {"depth": 9}, "depth"),
        (PreActResNet, {"depth": True}, "depth"),
        (PreActResNet, {"base_width": 0}, "base_width"),
        (PreActResNet, {"num_classes": -1}, "num_classes"),
    ],
)
def test_bad_arguments(ctor: type, kwargs: dict, param: str) -> None:
    with pytest.raises(ValueError, match=rf"\b{param}\b"):
        ctor(**kwargs)


def test_exports_and_signatures() -> None:
    assert set(models.__all__) >= {"ShakeShake", "WideResNet", "PreActResNet"}
    # LightningCLI builds these from their signatures: every argument must be a simple typed scalar.
    for cls in (ShakeShake, WideResNet, PreActResNet):
        hints = typing.get_type_hints(cls.__init__)
        assert hints.pop("return") is type(None)
        assert hints and all(h in (int, float) for h in hints.values()), (cls, hints)


def test_models_do_not_import_lightning() -> None:
    pkg = Path(models.__file__).parent
    for path in pkg.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            for name in names:
                assert name.split(".")[0] not in {"lightning", "pytorch_lightning"}, (path, name)
