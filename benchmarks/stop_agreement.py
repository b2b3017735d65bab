"""Cost of the DDP ranks' agreement on a stop signal (SIGTERM / Ctrl-C to any rank), per training step.

``ResumableCheckpoint`` agrees with one all-reduce of a flag (and reads the result on the host) every
``agree_every_n_steps`` optimizer steps; before, it did so on every step. This times that collective
between 2 processes (gloo on CPU; NCCL on 2 GPUs with ``--backend nccl``) and prints the cost per step
for an agreement every step and every N steps, and, with ``--step-ms``, as a share of a training step.

    python benchmarks/stop_agreement.py [--backend gloo|nccl] [--calls 2000] [--every 20] [--step-ms 50]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time

import torch
import torch.distributed as dist
import torch.multiprocessing as mp


def _agree(rank: int, world_size: int, backend: str, calls: int, init_file: str, results: dict) -> None:
    dist.init_process_group(backend, init_method=f"file://{init_file}", rank=rank, world_size=world_size)
    device = torch.device("cuda", rank) if backend == "nccl" else torch.device("cpu")
    if backend == "nccl":
        torch.cuda.set_device(device)
    flag = torch.tensor(0, device=device)
    for _ in range(50):  # warm-up
        dist.all_reduce(flag, op=dist.ReduceOp.MAX)
    timings = []
    for _ in range(5):  # five rounds; the median round is reported
        dist.barrier()
        start = time.perf_counter()
        for _ in range(calls):
            flag.zero_()
            dist.all_reduce(flag, op=dist.ReduceOp.MAX)
            int(flag.item())  # the decision is read on the host, as ResumableCheckpoint does
        timings.append((time.perf_counter() - start) / calls)
    if rank == 0:
        results["seconds"] = statistics.median(timings)
    dist.destroy_process_group()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backend", choices=["gloo", "nccl"], default="gloo")
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--every", type=int, default=20, help="agree_every_n_steps (ResumableCheckpoint default)")
    parser.add_argument("--step-ms", type=float, default=None, help="a training step's time, for the share")
    args = parser.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    with tempfile.TemporaryDirectory() as folder, mp.Manager() as manager:
        results = manager.dict()
        mp.spawn(_agree, args=(2, args.backend, args.calls, os.path.join(folder, "init"), results), nprocs=2)
        seconds = results["seconds"]
    every_step, every_n = seconds * 1e6, seconds * 1e6 / args.every
    print(f"one agreement (all-reduce + host read), 2 processes, {args.backend}: {every_step:.1f} us")
    print(f"per step: every step {every_step:.1f} us, every {args.every} steps {every_n:.2f} us "
          f"(ratio {every_n / every_step:.3f})")
    if args.step_ms:
        print(f"share of a {args.step_ms:g} ms step: every step {every_step / (10 * args.step_ms):.3f} %, "
              f"every {args.every} steps {every_n / (10 * args.step_ms):.4f} %")


if __name__ == "__main__":
    main()
