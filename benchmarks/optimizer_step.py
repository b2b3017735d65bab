"""Step time of wdlab's AdamW / SGDW against torch.optim.AdamW / SGD with the same settings.

The parameter list is Shake-Shake-Image 26 2x64d's (11.7 M parameters), the model of the
paper's Figs. 1-3. Each optimizer steps on the same fixed gradients; the two optimizers of a
pair alternate in short bursts so that drift in machine load hits both equally, and the
median of the per-burst time ratios is reported. Prints one row per pair and implementation
(default / foreach / fused) with the ratio wdlab/torch (target: <= 1.05).

    python benchmarks/optimizer_step.py [--device cpu|cuda] [--steps 20] [--rounds 15]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from wdlab.models import ShakeShake
from wdlab.optim import SGDW, AdamW


def _time_steps(opt: torch.optim.Optimizer, steps: int, device: torch.device) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    for _ in range(steps):
        opt.step()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return (time.perf_counter() - start) / steps


def _params_with_grads(model: torch.nn.Module, seed: int) -> list[torch.nn.Parameter]:
    gen = torch.Generator(device="cpu").manual_seed(seed)
    params = []
    for p in model.parameters():
        q = torch.nn.Parameter(p.detach().clone())
        q.grad = torch.randn(p.shape, generator=gen).to(p.device) * 1e-3
        params.append(q)
    return params


def compare(make_ours, make_torch, model, steps: int, rounds: int, device: torch.device) -> tuple[float, float, float]:
    """Median step times of both and the median of the per-round ratios (robust to load drift)."""
    ours = make_ours(_params_with_grads(model, 0))
    theirs = make_torch(_params_with_grads(model, 0))
    for opt in (ours, theirs):  # warm-up: state allocation, kernel selection
        _time_steps(opt, 3, device)
    t_ours, t_theirs = [], []
    for r in range(rounds):
        first_ours = r % 2 == 0  # alternate who goes first, so neither always runs on a warmer cache
        for is_ours in (first_ours, not first_ours):
            if is_ours:
                t_ours.append(_time_steps(ours, steps, device))
            else:
                t_theirs.append(_time_steps(theirs, steps, device))
    ratio = statistics.median(a / b for a, b in zip(t_ours, t_theirs, strict=True))
    return statistics.median(t_ours), statistics.median(t_theirs), ratio


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--steps", type=int, default=5, help="steps per timed burst")
    parser.add_argument("--rounds", type=int, default=60, help="bursts per optimizer (medians taken)")
    parser.add_argument("--width", type=int, default=64, help="Shake-Shake base width (64 -> 26 2x64d)")
    args = parser.parse_args()
    device = torch.device(args.device)

    model = ShakeShake(depth=26, base_width=args.width, num_classes=10).to(device)
    n_params = sum(p.numel() for p in model.parameters())
    n_tensors = len(list(model.parameters()))
    print(f"torch {torch.__version__}, device {device} "
          f"({torch.cuda.get_device_name(device) if device.type == 'cuda' else f'{torch.get_num_threads()} threads'})")
    print(f"Shake-Shake 26 2x{args.width}d: {n_params / 1e6:.2f} M parameters in {n_tensors} tensors\n")

    lr, lam, mom = 1e-3, 0.025, 0.9
    implementations = {"default": {}, "foreach": {"foreach": True}}
    if device.type == "cuda" or hasattr(torch, "_fused_adamw_"):
        implementations["fused"] = {"fused": True}

    print(f"{'pair':<34}{'impl':<9}{'wdlab ms':>10}{'torch ms':>10}{'ratio':>8}")
    for impl, kw in implementations.items():
        pairs = {
            "AdamW vs torch.optim.AdamW": (
                lambda ps, kw=kw: AdamW(ps, lr=lr, weight_decay=lam, **kw),
                lambda ps, kw=kw: torch.optim.AdamW(ps, lr=lr, weight_decay=lam / lr, **kw),
            ),
        }
        if impl != "fused":  # SGDW's signature has foreach only (torch's fused SGD has no decoupled decay)
            pairs["SGDW vs torch.optim.SGD (L2)"] = (
                lambda ps, kw=kw: SGDW(ps, lr=0.05, momentum=mom, weight_decay=lam, **kw),
                lambda ps, kw=kw: torch.optim.SGD(ps, lr=0.05, momentum=mom, weight_decay=lam, **kw),
            )
        for label, (make_ours, make_torch) in pairs.items():
            ours, theirs, ratio = compare(make_ours, make_torch, model, args.steps, args.rounds, device)
            print(f"{label:<34}{impl:<9}{ours * 1e3:>10.2f}{theirs * 1e3:>10.2f}{ratio:>8.3f}")


if __name__ == "__main__":
    main()
