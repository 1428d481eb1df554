"""Training speed: the project's Trainer against the canonical PyTorch DCGAN example loop.

Why: the train stage should be clearly faster than the loop everyone copies (pytorch/examples
dcgan/main.py), and its arithmetic rate should be close to what the machine can do at all, measured as
the rate of a large float32 matmul in the same process. Both loops train the same networks
(ganops.models, nz 100, ngf/ndf 64, 32 x 32 x 1, batch 128) on the embedded mnist-5k digits.

- baseline: the example's loop: a DataLoader over a TensorDataset of float images in [-1, 1], each
  batch moved to the device, D on real then fake (sigmoid + BCELoss, one backward each), then G, with
  `.item()` reads every step as the example prints them; contiguous (NCHW) tensors.
- ours: `Trainer(...).fit()` for one epoch, the train stage's own code path (tracking off, no FID,
  no checkpoints): uint8 data on the device, channels_last, no host sync inside the step, fused Adam,
  and no discriminator weight gradients in the generator step (they were computed and thrown away).
  Also shown with train.channels_last off, to separate the memory format from the rest, and with
  train.amp (bf16 autocast; fast on CPUs with AVX-512 BF16 or AMX), an option the targets do not use.

Rounds alternate (baseline, ours, matmul, baseline, ...) after one warm-up round, each side with fresh
networks built before its clock starts, so load from other processes hits all sides alike. The targets
use the best round of each side (timeit's rule: other processes only ever add time); medians are shown.
Targets: ours >= 1.3x baseline images/s, and >= 70% of the matmul GFLOP/s.
"""

from __future__ import annotations

import argparse
import contextlib
import io
from typing import Callable

import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset
from torch.utils.flop_counter import FlopCounterMode

from bench._common import interleaved, load_average, machine, median, mnist_digits, table, verdict
from ganops.config import from_dict
from ganops.data import Prepared
from ganops.models import build_discriminator, build_generator, to_unit_range
from ganops.runtime import configure_backends
from ganops.training import Trainer

SPEEDUP_TARGET = 1.3
MATMUL_FRACTION_TARGET = 0.70
MATMUL_N = 4096  # MKL's sgemm on this AMD CPU runs faster at 4096 than at 2048: the higher ceiling
MATMUL_REPEATS = 1
AMP = "ours, train.amp (bf16)"  # an option, not the default: the targets are judged on fp32


def config(batch_size: int, channels_last: bool = True, amp: bool = False):
    return from_dict({"train": {"epochs": 1, "batch_size": batch_size, "log_every": 10, "device": "cpu",
                                "channels_last": channels_last, "amp": amp}})


class BaselineLoop:
    """pytorch/examples dcgan/main.py's training loop, with the project's networks (logits -> sigmoid)."""

    def __init__(self, data: Prepared, cfg, device: torch.device):
        self.cfg, self.device = cfg, device
        self.dataset = TensorDataset(to_unit_range(data.images))  # float in [-1, 1], on the host
        torch.manual_seed(cfg.train.seed)
        self.net_g = build_generator(cfg.model, data.channels, data.image_size).to(device)
        self.net_d = build_discriminator(cfg.model, data.channels, data.image_size).to(device)
        betas = (cfg.train.beta1, cfg.train.beta2)
        self.opt_g = torch.optim.Adam(self.net_g.parameters(), lr=cfg.train.lr, betas=betas)
        self.opt_d = torch.optim.Adam(self.net_d.parameters(), lr=cfg.train.lr, betas=betas)
        self.criterion = nn.BCELoss()

    def epoch(self) -> None:
        loader = DataLoader(self.dataset, batch_size=self.cfg.train.batch_size, shuffle=True, drop_last=True)
        for (batch,) in loader:
            self.step(batch)

    def load_only(self) -> None:
        """The loop's data handling without the training: what the DataLoader costs a step."""
        loader = DataLoader(self.dataset, batch_size=self.cfg.train.batch_size, shuffle=True, drop_last=True)
        for (batch,) in loader:
            batch.to(self.device)

    def step(self, batch: torch.Tensor) -> None:
        net_d, net_g, device, nz = self.net_d, self.net_g, self.device, self.cfg.model.nz
        net_d.zero_grad()
        real = batch.to(device)
        label = torch.full((real.size(0),), 1.0, device=device)
        output = torch.sigmoid(net_d(real))
        err_d_real = self.criterion(output, label)
        err_d_real.backward()
        d_x = output.mean().item()
        noise = torch.randn(real.size(0), nz, 1, 1, device=device)
        fake = net_g(noise)
        label.fill_(0.0)
        output = torch.sigmoid(net_d(fake.detach()))
        err_d_fake = self.criterion(output, label)
        err_d_fake.backward()
        d_g_z1 = output.mean().item()
        self.opt_d.step()
        net_g.zero_grad()
        label.fill_(1.0)
        output = torch.sigmoid(net_d(fake))
        err_g = self.criterion(output, label)
        err_g.backward()
        d_g_z2 = output.mean().item()
        self.opt_g.step()
        _ = (err_d_real.item() + err_d_fake.item(), err_g.item(), d_x, d_g_z1, d_g_z2)  # the example prints these


def ours_epoch(data: Prepared, cfg, device: torch.device) -> Callable[[], None]:
    """One epoch of the train stage's loop: `Trainer.fit()` (networks built before the clock starts)."""
    trainer = Trainer(cfg.model, cfg.train, data, device, show_progress=False)

    def fit() -> None:
        with contextlib.redirect_stderr(io.StringIO()):  # the per-epoch summary line
            trainer.fit()
    return fit


def step_flops(data: Prepared, cfg, device: torch.device) -> tuple[int, int]:
    """FLOPs of one training step (D on real and fake, forward and backward; G forward and backward)."""
    trainer = Trainer(cfg.model, cfg.train, data, device, show_progress=False)
    index = torch.arange(cfg.train.batch_size, device=device)
    with FlopCounterMode(display=False) as ours:
        trainer._step(trainer._batch(index), torch.zeros(6, device=device))
    baseline = BaselineLoop(data, cfg, device)
    with FlopCounterMode(display=False) as theirs:
        baseline.step(baseline.dataset.tensors[0][: cfg.train.batch_size])
    return ours.get_total_flops(), theirs.get_total_flops()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=3, help="training steps per round (default 3)")
    parser.add_argument("--rounds", type=int, default=7, help="timed rounds per side (default 7)")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--quick", action="store_true", help="2 steps x 5 rounds")
    args = parser.parse_args()
    steps, rounds = (2, 5) if args.quick else (args.steps, args.rounds)

    device = torch.device("cpu")
    configure_backends(device)  # what the train stage does (CUDA-only settings; nothing on the CPU)
    cfg = config(args.batch_size)
    data = mnist_digits(limit=steps * args.batch_size)  # one epoch == `steps` full batches
    flops = dict(zip(("ours", "baseline"), step_flops(data, cfg, device)))
    flops["ours, channels_last off"] = flops[AMP] = flops["ours"]
    a, b = torch.randn(MATMUL_N, MATMUL_N), torch.randn(MATMUL_N, MATMUL_N)
    makers = {
        "baseline": lambda: BaselineLoop(data, cfg, device).epoch,
        "ours": lambda: ours_epoch(data, cfg, device),
        "ours, channels_last off": lambda: ours_epoch(data, config(args.batch_size, False), device),
        AMP: lambda: ours_epoch(data, config(args.batch_size, amp=True), device),
        "matmul": lambda: lambda: [a @ b for _ in range(MATMUL_REPEATS)],
        "loader": lambda: BaselineLoop(data, cfg, device).load_only,
    }
    interleaved(makers, 1)  # warm-up
    load_before = load_average()
    times = interleaved(makers, rounds)
    load_after = load_average()

    images = steps * args.batch_size
    rows, rate = [], {}
    for stat, pick in (("best", min), ("median", median)):
        matmul = 2 * MATMUL_N ** 3 * MATMUL_REPEATS / pick(times["matmul"]) / 1e9
        for name in ("baseline", "ours", "ours, channels_last off", AMP):
            seconds = pick(times[name])
            gflops = flops[name] * steps / seconds / 1e9
            rate[stat, name] = images / seconds
            rate[stat, "fraction", name] = gflops / matmul
            rows.append([name, stat, f"{images / seconds:.1f}", f"{seconds / steps * 1e3:.0f}",
                         f"{flops[name] / 1e9:.2f}", f"{gflops:.1f}", f"{100 * gflops / matmul:.0f}%"])
        rows.append([f"matmul {MATMUL_N}^2 fp32", stat, "", "", "", f"{matmul:.1f}", "100%"])
    speedup = {stat: rate[stat, "ours"] / rate[stat, "baseline"] for stat in ("best", "median")}
    fraction = rate["best", "fraction", "ours"]
    loader_ms = min(times["loader"]) / steps * 1e3

    print(f"# train_speed: DCGAN 32x32x1 (nz 100, ngf/ndf 64), batch {args.batch_size}, mnist-5k; "
          f"{steps} steps a round, {rounds} interleaved rounds a side after a warm-up")
    print(f"machine: {machine()}; load average {load_before} before, {load_after} after\n")
    print(table(["loop", "rounds", "images/s", "ms/step", "GFLOP/step", "GFLOP/s", "% of matmul"], rows))
    print(f"\nbaseline DataLoader + copy alone: {loader_ms:.2f} ms/step; ours times whole epochs incl. the "
          f"epoch-end sample grid ({cfg.train.sample_grid} images)")
    print(f"speedup ours/baseline: best {speedup['best']:.2f}x, median {speedup['median']:.2f}x; "
          f"with train.amp (bf16, not the default): best {rate['best', AMP] / rate['best', 'baseline']:.2f}x\n")
    print(table(["target (best of rounds)", "measured", "result"], [
        [f"ours >= {SPEEDUP_TARGET}x baseline images/s", f"{speedup['best']:.2f}x",
         verdict(speedup["best"] >= SPEEDUP_TARGET)],
        [f"ours >= {MATMUL_FRACTION_TARGET:.0%} of matmul GFLOP/s", f"{fraction:.0%}",
         verdict(fraction >= MATMUL_FRACTION_TARGET)],
    ]))
    print("\nseconds per round: " + "; ".join(f"{k} " + " ".join(f"{t:.2f}" for t in v) for k, v in times.items()))


if __name__ == "__main__":
    main()
