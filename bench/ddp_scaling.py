"""Data-parallel scaling: images/s with 1 and 2 torchrun processes (gloo, this CPU), the all-reduce share of
a step, and a paper estimate for GPUs from the gradient bytes per step.

    .venv/bin/python -m bench.ddp_scaling [--steps 20] [--batch 64] [--width 32]

The parent starts `torchrun --nproc_per_node N -m bench.ddp_scaling --worker` for N = 1, 2; each worker
trains the Trainer's own step (`_step`, gradients averaged over the ranks before each optimizer step) on
the mnist-5k digits, global batch `--batch`, and times a flat all-reduce of all gradient values.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

NVLINK_GBS = 450.0  # H100 NVLink 4, per direction
PCIE_GBS = 25.0  # PCIe 4.0 x16, achievable
GPU_TFLOPS = 100.0  # an assumed achieved rate for these small convolutions on one modern GPU (bf16)


def worker(args: argparse.Namespace) -> None:
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from bench._common import mnist_digits
    from ganops.config import from_dict
    from ganops.distributed import from_environment, shutdown, timed_all_reduce
    from ganops.training import Trainer

    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    config = from_dict({"model": {"ngf": args.width, "ndf": args.width, "spectral_norm": True},
                        "train": {"batch_size": args.batch, "device": "cpu", "loss": "hinge", "ema": 0.999}})
    dist, device = from_environment("cpu", args.batch, 120)
    trainer = Trainer(config.model, config.train, mnist_digits(2048), device, dist=dist, show_progress=False)
    order = dist.shard(torch.randperm(2048)[: args.batch * (args.steps + 3)].view(-1, args.batch))
    out = torch.zeros(6)
    with FlopCounterMode(display=False) as flops:
        trainer._step(trainer._batch(order[0]), out)
    for i in range(1, 3):  # warm-up
        trainer._step(trainer._batch(order[i]), out)
    dist.average_(out)
    start = time.perf_counter()
    for i in range(3, 3 + args.steps):
        trainer._step(trainer._batch(order[i]), out)
    dist.average_(out)  # every rank done
    step_s = (time.perf_counter() - start) / args.steps
    numel = sum(p.numel() for net in (trainer.generator, trainer.discriminator) for p in net.parameters())
    reduce_s = timed_all_reduce(numel, device, 10) if dist.active and dist.world_size > 1 else 0.0
    if dist.is_main:
        print(json.dumps({"world": dist.world_size, "step_s": step_s, "images_s": args.batch / step_s,
                          "reduce_s": reduce_s, "numel": numel, "flops": flops.get_total_flops() * dist.world_size}))
    shutdown()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--width", type=int, default=32)
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args)
        return
    root = Path(__file__).resolve().parents[1]
    env = dict(os.environ, PYTHONPATH=f"{root}{os.pathsep}{root / 'src'}")
    rows = []
    cores = os.cpu_count() or 1
    # One process with every core's threads, one with a single thread (what each of 2 processes gets).
    for world, threads in ((1, cores), (1, 1), (2, max(1, cores // 2))):
        env["OMP_NUM_THREADS"] = str(threads)
        command = [str(Path(sys.executable).parent / "torchrun"), "--nproc_per_node", str(world), "-m", "bench.ddp_scaling",
                   "--worker", "--steps", str(args.steps), "--batch", str(args.batch), "--width", str(args.width)]
        done = subprocess.run(command, cwd=root, env=env, capture_output=True, text=True, check=True)
        rows.append({**json.loads([line for line in done.stdout.splitlines() if line.startswith("{")][-1]),
                     "threads": threads})
    load = os.getloadavg()
    print(f"# ddp_scaling: DCGAN 32x32x1 (ngf/ndf {args.width}, spectral norm, hinge, EMA), global batch {args.batch}, "
          f"{args.steps} timed steps; gloo on {cores} CPU cores; "
          f"load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}\n")
    base = rows[0]["images_s"]
    print("| processes | threads each | images/s | vs first row | ms/step | all-reduce of all gradients (ms) "
          "| its share of a step |")
    print("|---|---|---|---|---|---|---|")
    for row in rows:
        # Two all-reduces a step (D's gradients, then G's): together one flat reduce of every parameter.
        share = row["reduce_s"] / row["step_s"] if row["reduce_s"] else 0.0
        print(f"| {row['world']} | {row['threads']} | {row['images_s']:.1f} | {row['images_s'] / base:.2f}x | {row['step_s'] * 1e3:.1f} | "
              f"{row['reduce_s'] * 1e3:.2f} | {share:.1%} |")
    numel, flops = rows[0]["numel"], rows[0]["flops"]
    grad_bytes = 4 * numel  # fp32 gradients, also under bf16 autocast
    print(f"\nGradient bytes per step: {grad_bytes / 1e6:.2f} MB ({numel:,} parameters, G and D); "
          f"{flops / 1e9:.2f} GFLOP per global-batch step.")
    print(f"Paper estimate on N GPUs (ring all-reduce moves 2(N-1)/N x the bytes per GPU; compute assumed at "
          f"{GPU_TFLOPS:.0f} TFLOP/s per GPU, latency of the two collectives a step ignored):\n")
    print("| GPUs | compute ms/step | NVLink all-reduce ms | efficiency (NVLink, no overlap) | PCIe 4 x16 all-reduce ms "
          "| efficiency (PCIe, no overlap) |")
    print("|---|---|---|---|---|---|")
    for n in (2, 4, 8):
        compute = flops / n / (GPU_TFLOPS * 1e12)
        moved = 2 * (n - 1) / n * grad_bytes
        nvlink, pcie = moved / (NVLINK_GBS * 1e9), moved / (PCIE_GBS * 1e9)
        print(f"| {n} | {compute * 1e3:.3f} | {nvlink * 1e3:.3f} | {compute / (compute + nvlink):.0%} | "
              f"{pcie * 1e3:.3f} | {compute / (compute + pcie):.0%} |")


if __name__ == "__main__":
    main()
