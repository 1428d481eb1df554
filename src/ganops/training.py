"""The adversarial training loop: DCGAN steps, epochs, FID evaluation, checkpoint and resume.

The loop knows nothing about MLflow: it emits events to callbacks (a logged window of step metrics,
an epoch's sample grid, an FID evaluation, a durable checkpoint), and a tracking callback turns them
into MLflow calls. Without callbacks it trains exactly the same.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

import torch
from torch import nn
from tqdm.auto import tqdm

from ganops.config import LAUNCH_KEYS, ModelConfig, TrainConfig
from ganops.augment import DiffAugment
from ganops.data.tensorfile import Prepared
from ganops.distributed import Dist
from ganops.ema import GeneratorEMA
from ganops.errors import DivergenceError, GanopsError
from ganops.fileio import torch_load, torch_save
from ganops.losses import LOSSES, gradient_penalty
from ganops.models import build_discriminator, build_generator, generator_record, to_unit_range

log = logging.getLogger(__name__)

METRIC_KEYS = ("loss_d", "loss_g", "d_x", "d_g_z", "d_acc_real", "d_acc_fake")
CHECKPOINT_NAME = "last.pt"
CHECKPOINT_FORMAT = 1
# Train keys that cannot change the weights a step produces; every other key is in the resume fingerprint.
NOT_IN_FINGERPRINT = ("epochs", "log_every", "checkpoint_every", "eval_every", "eval_samples", "sample_grid", "device",
                      "channels_last", *LAUNCH_KEYS)

FidFunction = Callable[[nn.Module], float]


@dataclass
class TrainState:
    """Everything about progress that a resumed run needs besides the weights."""

    epoch: int = 0  # epochs completed
    step: int = 0  # optimizer steps completed (discriminator steps)
    history: list[dict[str, float]] = field(default_factory=list)  # one row per logged window
    fid_history: list[dict[str, float]] = field(default_factory=list)  # epoch, step, fid
    best_fid: float = math.inf
    best_epoch: int = 0
    run_id: Optional[str] = None
    resumed_from: Optional[int] = None  # the epoch a resumed run started after


class Callback:
    """Hooks the loop calls; override the ones you need. Raising stops training (e.g. a pruned trial)."""

    def on_train_start(self, trainer: "Trainer", state: TrainState) -> None: ...
    def on_log(self, state: TrainState, row: dict[str, float]) -> None: ...
    def on_epoch_end(self, state: TrainState, grid: torch.Tensor) -> None: ...
    def on_evaluation(self, state: TrainState, fid: float) -> None: ...
    def on_checkpoint(self, state: TrainState) -> None: ...
    def on_train_end(self, state: TrainState) -> None: ...
    def on_failure(self, state: TrainState, error: BaseException) -> None: ...


def training_fingerprint(model: ModelConfig, train: TrainConfig, data_meta: dict[str, Any]) -> str:
    """What must match for a checkpoint to be resumed. Epochs are left out so a run can be extended."""
    keep = {k: v for k, v in asdict(train).items() if k not in NOT_IN_FINGERPRINT}
    blob = json.dumps({"model": asdict(model), "train": keep, "data": data_meta}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


class Trainer:
    def __init__(
        self,
        model: ModelConfig,
        train: TrainConfig,
        data: Prepared,
        device: torch.device,
        fid_fn: Optional[FidFunction] = None,
        checkpoint_dir: Optional[Path] = None,
        best_generator_path: Optional[Path] = None,
        callbacks: Sequence[Callback] = (),
        show_progress: Optional[bool] = None,
        dist: Dist = Dist(),
    ):
        if train.batch_size > len(data):
            raise GanopsError(f"train.batch_size {train.batch_size} is larger than the data set "
                              f"({len(data)} images); allowed: 1 to {len(data)}")
        self.model_cfg, self.cfg, self.device = model, train, device
        self.channels, self.image_size = data.channels, data.image_size
        self.fid_fn = fid_fn
        self.checkpoint_dir = checkpoint_dir
        self.best_generator_path = best_generator_path
        self.callbacks = list(callbacks)
        self.show_progress = show_progress
        self.dist = dist  # several processes (ganops.distributed); rank 0 alone is given callbacks and paths
        self.fingerprint = training_fingerprint(model, train, {k: data.meta.get(k) for k in ("dataset", "count")})
        self.amp = train.amp  # bf16 autocast: CUDA, or a CPU with bf16 instructions (AVX-512 BF16, AMX)
        self.memory_format = torch.channels_last if train.channels_last else torch.contiguous_format

        torch.manual_seed(train.seed)
        self.generator = build_generator(model, self.channels, self.image_size).to(device, memory_format=self.memory_format)
        self.discriminator = build_discriminator(model, self.channels, self.image_size).to(device, memory_format=self.memory_format)
        betas = (train.beta1, train.beta2)
        # Fused Adam (CPU and CUDA): one kernel per step instead of a dozen per parameter tensor.
        self.opt_g = torch.optim.Adam(self.generator.parameters(), lr=train.resolved_lr_g, betas=betas, fused=True)
        self.opt_d = torch.optim.Adam(self.discriminator.parameters(), lr=train.resolved_lr_d, betas=betas, fused=True)
        self.loss = LOSSES[train.loss]
        dist.attach({self.generator: self.opt_g, self.discriminator: self.opt_d})
        self.augment = DiffAugment(train.diffaug or (), dist.share)
        self.ema = GeneratorEMA(self.generator, train.ema, model.nz, train.seed) if train.ema > 0 else None
        self.fixed_noise = torch.randn(train.sample_grid, model.nz, 1, 1, generator=torch.Generator().manual_seed(train.seed))
        # The whole data set lives on the device as uint8: no DataLoader, no per-step host-to-device copy.
        self.images = data.images.to(device)
        self.steps_per_epoch = len(data) // train.batch_size  # full batches only: BatchNorm sees equal batches
        self.state = TrainState()

    # ---------------------------------------------------------------- the adversarial step

    def _step(self, real: torch.Tensor, out: torch.Tensor) -> None:
        """One discriminator step on real then fake, then `g_steps` generator steps.

        Writes the step's metrics into `out` (a device tensor) instead of returning Python floats,
        so the step never waits for the device.
        """
        cfg, g, d, loss, augment = self.cfg, self.generator, self.discriminator, self.loss, self.augment
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.amp):
            noise = self._noise()
            fake = g(noise)
            self.opt_d.zero_grad(set_to_none=True)
            # DiffAugment: the discriminator only ever sees augmented images, real and fake alike.
            real_seen, fake_seen = augment(real), augment(fake.detach())
            logits_real = d(real_seen).float()
            logits_fake = d(fake_seen).float()
            loss_d = loss.discriminator(logits_real, logits_fake, cfg.label_smoothing)
            if loss.gradient_penalty and cfg.gp_weight > 0:
                loss_d = loss_d + cfg.gp_weight * gradient_penalty(d, real_seen, fake_seen)
        loss_d.backward()
        self.opt_d.step()

        # The generator steps need gradients through the discriminator, not of its weights: those would
        # be thrown away by the next zero_grad. Freezing it skips their convolutions (8% of a step's FLOPs).
        d.requires_grad_(False)
        try:
            for i in range(cfg.g_steps):
                with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.amp):
                    if i > 0:
                        fake = g(self._noise())
                    self.opt_g.zero_grad(set_to_none=True)
                    # Scored against the just-updated discriminator.
                    loss_g = loss.generator(d(augment(fake)).float())
                loss_g.backward()
                self.opt_g.step()
        finally:
            d.requires_grad_(True)
        if self.ema is not None:
            self.ema.update(g)

        with torch.no_grad():
            shown = torch.sigmoid if loss.sigmoid_outputs else (lambda logits: logits)
            out.copy_(torch.stack([
                loss_d.detach(), loss_g.detach(), shown(logits_real).mean(), shown(logits_fake).mean(),
                (logits_real > 0).float().mean(), (logits_fake < 0).float().mean(),
            ]))

    def _noise(self) -> torch.Tensor:
        """This rank's rows of the global batch's noise (one process: all of it)."""
        return self.dist.local(torch.randn(self.cfg.batch_size, self.model_cfg.nz, 1, 1, device=self.device))

    def _batch(self, index: torch.Tensor) -> torch.Tensor:
        real = to_unit_range(self.images[index])
        if self.cfg.hflip:
            flip = self.dist.local(torch.rand(self.cfg.batch_size, 1, 1, 1, device=self.device)) < 0.5
            real = torch.where(flip, real.flip(-1), real)
        return real.contiguous(memory_format=self.memory_format)

    # ---------------------------------------------------------------- epochs

    def fit(self) -> TrainState:
        """Train to `train.epochs`, resuming from the checkpoint when one of the same setup exists."""
        self._resume()
        self._emit("on_train_start", self, self.state)
        try:
            while self.state.epoch < self.cfg.epochs:
                self._run_epoch()
        except BaseException as error:
            self._emit("on_failure", self.state, error)
            raise
        self._emit("on_train_end", self.state)
        return self.state

    def _run_epoch(self) -> None:
        cfg, state = self.cfg, self.state
        epoch = state.epoch + 1
        # A per-epoch generator makes the data order a function of (seed, epoch): identical after a resume.
        order = torch.randperm(len(self.images), generator=torch.Generator().manual_seed(cfg.seed * 100_003 + epoch))
        order = order[: self.steps_per_epoch * cfg.batch_size].to(self.device).view(self.steps_per_epoch, cfg.batch_size)
        order = self.dist.shard(order)  # this rank's slice of every global batch
        window = torch.zeros(cfg.log_every, len(METRIC_KEYS), device=self.device)
        filled = 0
        self.generator.train()
        self.discriminator.train()
        bar = tqdm(range(self.steps_per_epoch), desc=f"epoch {epoch}/{cfg.epochs}", leave=False,
                   disable=not self._progress_enabled(), file=sys.stderr)
        for i in bar:
            self._step(self._batch(order[i]), window[filled])
            filled += 1
            state.step += 1
            if filled == cfg.log_every or i == self.steps_per_epoch - 1:
                row = self._close_window(self.dist.average_(window[:filled]), epoch)
                bar.set_postfix(loss_d=f"{row['loss_d']:.3f}", loss_g=f"{row['loss_g']:.3f}", D_x=f"{row['d_x']:.2f}")
                filled = 0
        bar.close()
        state.epoch = epoch
        self.dist.average_buffers(self.generator, self.discriminator)
        self._emit("on_epoch_end", state, self.sample_grid())
        fid = self._maybe_evaluate(epoch)
        last = state.history[-1]
        if self.dist.is_main:
            print(f"epoch {epoch}/{cfg.epochs} step {state.step}: loss_d {last['loss_d']:.3f} loss_g {last['loss_g']:.3f} "
                  f"D(x) {last['d_x']:.2f} D(G(z)) {last['d_g_z']:.2f}" + (f" FID {fid:.2f}" if fid is not None else ""),
                  file=sys.stderr, flush=True)
        if epoch % cfg.checkpoint_every == 0 or epoch == cfg.epochs:
            self.save_checkpoint()

    def _close_window(self, window: torch.Tensor, epoch: int) -> dict[str, float]:
        values = window.cpu()  # the one host synchronisation per logged window
        finite = torch.isfinite(values).all(dim=1)
        if not bool(finite.all()):
            bad = int((~finite).nonzero()[0])
            step = self.state.step - len(values) + bad + 1
            named = ", ".join(f"{k}={v:.4g}" for k, v in zip(METRIC_KEYS, values[bad].tolist()))
            raise DivergenceError(f"training diverged at step {step} (epoch {epoch}): {named}; "
                                  f"try a lower train.lr (now {self.cfg.lr:g})", step)
        row = {"step": self.state.step, "epoch": epoch, **dict(zip(METRIC_KEYS, values.mean(0).tolist()))}
        self.state.history.append(row)
        self._emit("on_log", self.state, row)
        return row

    def _maybe_evaluate(self, epoch: int) -> Optional[float]:
        if self.fid_fn is None or (epoch % self.cfg.eval_every and epoch != self.cfg.epochs):
            return None
        fid = float(self.fid_fn(self.sampling_generator()))
        state = self.state
        state.fid_history.append({"epoch": epoch, "step": state.step, "fid": fid})
        if fid < state.best_fid:
            state.best_fid, state.best_epoch = fid, epoch
            if self.best_generator_path is not None:
                torch_save(self.generator_record(), self.best_generator_path)
        self._emit("on_evaluation", state, fid)
        return fid

    def sampling_generator(self) -> nn.Module:
        """What samples, FID and the saved model use: the weight average when `train.ema` is on."""
        return self.ema.generator() if self.ema is not None else self.generator

    @torch.no_grad()
    def sample_grid(self) -> torch.Tensor:
        """The fixed-noise samples in [-1, 1], generated in eval mode (BatchNorm running statistics)."""
        generator = self.sampling_generator()
        was_training = generator.training
        generator.eval()
        images = generator(self.fixed_noise.to(self.device)).float().cpu()
        generator.train(was_training)
        return images

    def generator_record(self) -> dict[str, Any]:
        return generator_record(self.sampling_generator(), self.model_cfg, self.channels, self.image_size)

    # ---------------------------------------------------------------- checkpoints

    @property
    def checkpoint_path(self) -> Optional[Path]:
        return self.checkpoint_dir / CHECKPOINT_NAME if self.checkpoint_dir else None

    def save_checkpoint(self) -> None:
        if self.checkpoint_path is None:
            return
        state = self.state
        torch_save({
            "format": CHECKPOINT_FORMAT,
            "fingerprint": self.fingerprint,
            "generator": self.generator.state_dict(),
            "discriminator": self.discriminator.state_dict(),
            "opt_g": self.opt_g.state_dict(),
            "opt_d": self.opt_d.state_dict(),
            "ema": self.ema.state_dict() if self.ema is not None else {},
            "fixed_noise": self.fixed_noise,
            "rng_cpu": torch.get_rng_state(),
            "rng_cuda": self.dist.cuda_rng_states(self.device),
            "state": {k: v for k, v in asdict(state).items() if k != "resumed_from"},
        }, self.checkpoint_path)
        # Only now is the epoch durable; trackers flush what they hold for it (see tracking.callback.TrackingCallback).
        self._emit("on_checkpoint", state)

    def _resume(self) -> None:
        path = self.checkpoint_path  # several processes: rank 0 reads it and hands it to the others
        ckpt = self.dist.from_main(lambda: torch_load(path, "training checkpoint", map_location=self.dist.map_location(
            self.device)) if path is not None and path.is_file() else None)
        if ckpt is None:
            return
        if ckpt.get("format") != CHECKPOINT_FORMAT or ckpt.get("fingerprint") != self.fingerprint:
            log.warning("checkpoint %s is from a different setup (params changed): starting a new run", path)
            return
        self.generator.load_state_dict(ckpt["generator"])
        self.discriminator.load_state_dict(ckpt["discriminator"])
        self.opt_g.load_state_dict(ckpt["opt_g"])
        self.opt_d.load_state_dict(ckpt["opt_d"])
        if self.ema is not None:
            self.ema.load_state_dict(ckpt["ema"])
        self.fixed_noise = ckpt["fixed_noise"].cpu()
        torch.set_rng_state(ckpt["rng_cpu"].cpu())
        self.dist.set_cuda_rng_states(ckpt["rng_cuda"], self.device)
        self.state = TrainState(**ckpt["state"])
        self.state.resumed_from = self.state.epoch
        log.info("resuming from %s: epoch %d, step %d", path, self.state.epoch, self.state.step)

    # ---------------------------------------------------------------- helpers

    def _emit(self, event: str, *args: Any) -> None:
        for callback in self.callbacks:
            getattr(callback, event)(*args)

    def _progress_enabled(self) -> bool:
        shown = sys.stderr.isatty() if self.show_progress is None else self.show_progress
        return shown and self.dist.is_main
