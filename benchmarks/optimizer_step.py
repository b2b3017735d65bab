"""Step time of wdlab's AdamW / SGDW against torch.optim.AdamW / SGD with the same settings.

The parameter list is Shake-Shake-Image 26 2x64d's (11.7 M parameters), the model of the
paper's Figs. 1-3. Each optimizer steps on the same fixed gradients; the two optimizers of a
pair alternate in short bursts so that drift in machine load hits both equally, and the
median of the per-burst time ratios is reported. Prints one row per pair and implementation
(default / foreach / fused) with the ratio wdlab/torch (target: <= 1.05).

An optimizer step is memory-bound, so each row also shows wdlab's achieved memory bandwidth: the
bytes a step must move at the least (fp32 Adam: read parameter, gradient, m, v and write
parameter, m, v = 28 bytes per parameter; SGD with momentum: 20) divided by the step time, and
that as a share of the device's peak: the nominal figure for known GPUs (or ``--peak-gbps``)
and the bandwidth of a large device-to-device copy measured here.

    python benchmarks/optimizer_step.py [--device cpu|cuda] [--steps 5] [--rounds 60] [--peak-gbps 3350]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from wdlab.models import ShakeShake
from wdlab.optim import SGDW, AdamW

#: Bytes an fp32 step must move per parameter, at the least (one read of each input, one write of each output).
BYTES_PER_PARAM = {"adam": 28, "sgd": 20}

#: Nominal peak memory bandwidth (GB/s) of common training GPUs, by a substring of torch's device name.
NOMINAL_PEAK_GBPS = {
    "H200": 4800,
    "H100 NVL": 3900,
    "H100 80GB HBM3": 3350,  # SXM
    "H100 PCIe": 2000,
    "A100-SXM4-80GB": 2039,
    "A100 80GB PCIe": 1935,
    "A100-SXM4-40GB": 1555,
    "A100-PCIE-40GB": 1555,
    "L40S": 864,
    "A10G": 600,
    "L4": 300,
    "V100": 900,
    "T4": 320,
    "GTX 1080 Ti": 484,
}


def nominal_peak_gbps(name: str) -> float | None:
    """The table's entry for the first key contained in ``name`` (longest keys first), else None."""
    for key in sorted(NOMINAL_PEAK_GBPS, key=len, reverse=True):
        if key in name:
            return float(NOMINAL_PEAK_GBPS[key])
    return None


def measured_copy_gbps(device: torch.device, nbytes: int = 1 << 30, repeats: int = 10) -> float:
    """Bandwidth of ``dst.copy_(src)`` on ``device`` (read + write counted), best of ``repeats``."""
    n = nbytes // 4
    src = torch.empty(n, dtype=torch.float32, device=device).fill_(1.0)
    dst = torch.empty_like(src)
    best = float("inf")
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        start = time.perf_counter()
        dst.copy_(src)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        best = min(best, time.perf_counter() - start)
    del src, dst
    return 2 * n * 4 / best / 1e9


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
    parser.add_argument("--peak-gbps", type=float, default=None,
                        help="the device's peak memory bandwidth in GB/s (default: a table of common GPUs)")
    args = parser.parse_args()
    device = torch.device(args.device)

    model = ShakeShake(depth=26, base_width=args.width, num_classes=10).to(device)
    n_params = sum(p.numel() for p in model.parameters())
    n_tensors = len(list(model.parameters()))
    print(f"torch {torch.__version__}, device {device} "
          f"({torch.cuda.get_device_name(device) if device.type == 'cuda' else f'{torch.get_num_threads()} threads'})")
    print(f"Shake-Shake 26 2x{args.width}d: {n_params / 1e6:.2f} M parameters in {n_tensors} tensors\n")

    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    nominal = args.peak_gbps if args.peak_gbps is not None else nominal_peak_gbps(name)
    copy = measured_copy_gbps(device, nbytes=(1 << 30) if device.type == "cuda" else (1 << 28))
    print(f"memory bandwidth: nominal peak {f'{nominal:.0f} GB/s' if nominal else 'unknown (--peak-gbps)'}, "
          f"measured device copy {copy:.0f} GB/s\n")

    lr, lam, mom = 1e-3, 0.025, 0.9
    implementations = {"default": {}, "foreach": {"foreach": True}}
    if device.type == "cuda" or hasattr(torch, "_fused_adamw_"):
        implementations["fused"] = {"fused": True}

    print(f"{'pair':<34}{'impl':<9}{'wdlab ms':>10}{'torch ms':>10}{'ratio':>8}{'wdlab GB/s':>12}"
          f"{'% nominal':>11}{'% copy':>8}")
    for impl, kw in implementations.items():
        pairs = {
            "AdamW vs torch.optim.AdamW": (
                "adam",
                lambda ps, kw=kw: AdamW(ps, lr=lr, weight_decay=lam, **kw),
                lambda ps, kw=kw: torch.optim.AdamW(ps, lr=lr, weight_decay=lam / lr, **kw),
            ),
            # torch's SGD has no decoupled decay: its L2 form is the same amount of work. SGDW's fused
            # path is torch's fused SGD kernel plus one multi-tensor decay pass.
            "SGDW vs torch.optim.SGD (L2)": (
                "sgd",
                lambda ps, kw=kw: SGDW(ps, lr=0.05, momentum=mom, weight_decay=lam, **kw),
                lambda ps, kw=kw: torch.optim.SGD(ps, lr=0.05, momentum=mom, weight_decay=lam, **kw),
            ),
        }
        for label, (family, make_ours, make_torch) in pairs.items():
            ours, theirs, ratio = compare(make_ours, make_torch, model, args.steps, args.rounds, device)
            gbps = BYTES_PER_PARAM[family] * n_params / ours / 1e9
            share = f"{100 * gbps / nominal:>10.0f}%" if nominal else f"{'-':>11}"
            print(f"{label:<34}{impl:<9}{ours * 1e3:>10.2f}{theirs * 1e3:>10.2f}{ratio:>8.3f}{gbps:>12.0f}"
                  f"{share}{100 * gbps / copy:>7.0f}%", flush=True)


if __name__ == "__main__":
    main()
