"""An exponential moving average of the generator's weights, used for samples, FID and the saved model.

Two details make the average better than the live generator instead of worse:
- Warm-up: the decay ramps from 0 towards `decay` as (1 + t) / (10 + t), so the average soon forgets the
  random initialisation instead of carrying 0.999^t of it for thousands of steps.
- BatchNorm: averaged weights do not match the live generator's running statistics, so they are
  recomputed on fixed noise for the averaged weights before every use (and cached until the next update).
"""

from __future__ import annotations

import copy
from typing import Any

import torch
from torch import nn

RECALIBRATION_BATCHES = 8
RECALIBRATION_BATCH_SIZE = 256


def warmup_decay(decay: float, updates: int) -> float:
    return min(decay, (1.0 + updates) / (10.0 + updates))


class GeneratorEMA:
    def __init__(self, generator: nn.Module, decay: float, nz: int, seed: int):
        self.decay, self.nz, self.seed = decay, nz, seed
        self.average = copy.deepcopy(generator).requires_grad_(False)
        self.updates = 0
        self._calibrated = False

    @torch.no_grad()
    def update(self, generator: nn.Module) -> None:
        decay = warmup_decay(self.decay, self.updates)
        averaged = list(self.average.parameters())
        torch._foreach_lerp_(averaged, [p.detach() for p in generator.parameters()], 1.0 - decay)
        self.updates += 1
        self._calibrated = False

    @torch.no_grad()
    def generator(self) -> nn.Module:
        """The averaged generator in eval mode, with BatchNorm statistics of its own outputs."""
        if not self._calibrated:
            self._recalibrate()
        return self.average.eval()

    def _recalibrate(self) -> None:
        norms = [m for m in self.average.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
        if norms:
            device = next(self.average.parameters()).device
            noise = torch.Generator().manual_seed(self.seed)
            saved = [m.momentum for m in norms]
            for m in norms:
                m.reset_running_stats()
                m.momentum = None  # a cumulative average over the calibration batches
            self.average.train()
            for _ in range(RECALIBRATION_BATCHES):
                self.average(torch.randn(RECALIBRATION_BATCH_SIZE, self.nz, 1, 1, generator=noise).to(device))
            for m, momentum in zip(norms, saved):
                m.momentum = momentum
        self._calibrated = True

    def state_dict(self) -> dict[str, Any]:
        return {"average": self.average.state_dict(), "updates": self.updates}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.average.load_state_dict(state["average"])
        self.updates = int(state["updates"])
        self._calibrated = False
