"""Generating and writing images from a trained generator: batches, latent walks and their files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from ganops.fileio import atomic_binary
from ganops.models import to_uint8
from ganops.reporting import grid_image, save_gif_frames, save_png

PROGRESS_FROM = 2000  # images; fewer take a second or two on a CPU


@torch.inference_mode()
def generate(generator: nn.Module, nz: int, n: int, seed: int, batch_size: int) -> np.ndarray:
    """`n` images as uint8 N x H x W x C, the same for the same seed and model."""
    noise = torch.Generator().manual_seed(seed)
    batches = []
    for start in tqdm(range(0, n, batch_size), desc="generating", unit="batch", disable=n < PROGRESS_FROM):
        z = torch.randn(min(batch_size, n - start), nz, 1, 1, generator=noise)
        batches.append(to_uint8(generator(z)).permute(0, 2, 3, 1).numpy())
    return np.concatenate(batches)


def slerp(a: torch.Tensor, b: torch.Tensor, t: float) -> torch.Tensor:
    """Spherical interpolation (White 2016): intermediate latents keep the norm Gaussian latents have."""
    a_flat, b_flat = a.flatten(1), b.flatten(1)
    cos = (a_flat * b_flat).sum(1) / (a_flat.norm(dim=1) * b_flat.norm(dim=1))
    omega = torch.arccos(cos.clamp(-1 + 1e-7, 1 - 1e-7)).view(-1, *[1] * (a.dim() - 1))
    return (torch.sin((1 - t) * omega) * a + torch.sin(t * omega) * b) / torch.sin(omega)


@torch.inference_mode()
def latent_walk(generator: nn.Module, nz: int, rows: int, steps: int, path: str, seed: int) -> torch.Tensor:
    """rows x steps images in [-1, 1] (steps x rows x C x H x W): each row walks between two random latents."""
    noise = torch.Generator().manual_seed(seed)
    start, end = (torch.randn(rows, nz, 1, 1, generator=noise) for _ in range(2))
    frames = []
    for t in torch.linspace(0, 1, steps).tolist():
        z = slerp(start, end, t) if path == "spherical" else torch.lerp(start, end, t)
        frames.append(generator(z))
    return torch.stack(frames)


def write_walk(walk: torch.Tensor, gif: Path) -> None:
    """The walk as an animation (one frame per step) and as one grid: a row per walk, a column per step."""
    steps, rows = walk.shape[:2]
    save_gif_frames([grid_image(frame) for frame in walk], gif, seconds_per_frame=0.1)
    by_row = walk.transpose(0, 1).reshape(steps * rows, *walk.shape[2:])
    save_png(grid_image(by_row, nrow=steps), gif.with_suffix(".png"))


def write_npz(images: np.ndarray, path: Path) -> None:
    with atomic_binary(path) as handle:
        np.savez_compressed(handle, images=images)


def write_grid(images: np.ndarray, path: Path) -> None:
    save_png(grid_image(torch.from_numpy(images).permute(0, 3, 1, 2).float().div(127.5).sub(1)), path)


def write_pngs(images: np.ndarray, folder: Path) -> None:
    from PIL import Image

    digits = max(5, len(str(len(images) - 1)))
    for index, image in enumerate(tqdm(images, desc="writing", unit="image", disable=len(images) < PROGRESS_FROM)):
        Image.fromarray(image.squeeze(-1) if image.shape[-1] == 1 else image).save(folder / f"{index:0{digits}d}.png")
