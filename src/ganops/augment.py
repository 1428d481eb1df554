"""DiffAugment (Zhao et al. 2020): differentiable augmentations applied to real and fake images alike,
in the discriminator and the generator steps, so a small data set does not let the discriminator memorise it.

A torch port of the reference policies: `translation` (shift by up to 1/8 of the size, zero fill),
`cutout` (a zeroed square of half the size), `color` (brightness, saturation, contrast; 3 channels).
"""

from __future__ import annotations

from typing import Callable, Sequence

import torch

POLICIES = ("translation", "cutout", "color")
Share = tuple[int, int]  # (processes, this one's rank): see `_draw`
ALONE: Share = (1, 0)


def _draw(sample: Callable[[int], torch.Tensor], n: int, share: Share) -> torch.Tensor:
    """This rank's `n` rows of one draw for the global batch of processes x n: every rank makes the same draw
    (they share one random stream, see ganops.distributed), so the batch is augmented as one process would."""
    processes, rank = share
    return sample(n * processes)[rank * n:(rank + 1) * n]


def _pixel_grid(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    rows = torch.arange(x.shape[2], device=x.device).view(1, -1, 1)
    cols = torch.arange(x.shape[3], device=x.device).view(1, 1, -1)
    return rows, cols


def translation(x: torch.Tensor, ratio: float = 0.125, share: Share = ALONE) -> torch.Tensor:
    n, _, h, w = x.shape
    max_dy, max_dx = int(h * ratio + 0.5), int(w * ratio + 0.5)
    dy = _draw(lambda m: torch.randint(-max_dy, max_dy + 1, (m, 1, 1), device=x.device), n, share)
    dx = _draw(lambda m: torch.randint(-max_dx, max_dx + 1, (m, 1, 1), device=x.device), n, share)
    rows, cols = _pixel_grid(x)
    # Index into a 1-pixel zero border: sources that fall outside the image read the border.
    src_rows = (rows + dy + 1).clamp(0, h + 1)
    src_cols = (cols + dx + 1).clamp(0, w + 1)
    padded = torch.nn.functional.pad(x, (1, 1, 1, 1))
    flat = (src_rows * (w + 2) + src_cols).view(n, 1, h * w).expand(-1, x.shape[1], -1)
    return padded.flatten(2).gather(2, flat).view_as(x)


def cutout(x: torch.Tensor, ratio: float = 0.5, share: Share = ALONE) -> torch.Tensor:
    n, _, h, w = x.shape
    size_h, size_w = int(h * ratio + 0.5), int(w * ratio + 0.5)
    top = _draw(lambda m: torch.randint(0, h + (1 - size_h % 2), (m, 1, 1), device=x.device), n, share) - size_h // 2
    left = _draw(lambda m: torch.randint(0, w + (1 - size_w % 2), (m, 1, 1), device=x.device), n, share) - size_w // 2
    rows, cols = _pixel_grid(x)
    inside = (rows >= top) & (rows < top + size_h) & (cols >= left) & (cols < left + size_w)
    return x * (~inside).unsqueeze(1).to(x.dtype)


def color(x: torch.Tensor, share: Share = ALONE) -> torch.Tensor:
    n = x.shape[0]
    rand = lambda: _draw(lambda m: torch.rand(m, 1, 1, 1, device=x.device, dtype=x.dtype), n, share)  # noqa: E731
    x = x + (rand() - 0.5)  # brightness
    mean = x.mean(dim=1, keepdim=True)
    x = (x - mean) * (rand() * 2) + mean  # saturation
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    return (x - mean) * (rand() + 0.5) + mean  # contrast


_FUNCTIONS: dict[str, Callable[..., torch.Tensor]] = {
    "translation": translation, "cutout": cutout, "color": color}


class DiffAugment:
    """Applies the policies in the reference order (color, translation, cutout); no policies: identity."""

    def __init__(self, policies: Sequence[str], share: Share = ALONE):
        unknown = [p for p in policies if p not in _FUNCTIONS]
        if unknown:
            raise ValueError(f"unknown DiffAugment policy {unknown[0]!r} (allowed: {', '.join(POLICIES)})")
        self.functions = [_FUNCTIONS[p] for p in ("color", "translation", "cutout") if p in policies]
        self.share = share

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        for function in self.functions:
            x = function(x, share=self.share)
        return x
