"""Tables, plots, sample grids and the GIF of grids over training."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd
import torch
from torchvision.utils import make_grid

from ganops.fileio import atomic_path
from ganops.training import Callback, TrainState


def grid_image(images: torch.Tensor, nrow: int = 0) -> np.ndarray:
    """Images in [-1, 1] (N x C x H x W) as one H x W x 3 uint8 grid: `nrow` per row, or square as far as N allows."""
    nrow = nrow or max(1, int(math.sqrt(len(images))))
    grid = make_grid(images.float().cpu(), nrow=nrow, padding=2, normalize=True, value_range=(-1, 1))
    return grid.mul(255).add(0.5).clamp(0, 255).to(torch.uint8).permute(1, 2, 0).numpy()


def save_png(image: np.ndarray, path: Path) -> None:
    from PIL import Image

    with atomic_path(path) as tmp:
        Image.fromarray(image).save(tmp, format="PNG")


def save_gif(frames: Sequence[Path], path: Path, seconds_per_frame: float = 0.4) -> None:
    """The Keras tutorials' animation of the fixed-noise grids, one frame per epoch."""
    import imageio.v3 as iio

    save_gif_frames([iio.imread(frame) for frame in frames], path, seconds_per_frame)


def save_gif_frames(images: Sequence[np.ndarray], path: Path, seconds_per_frame: float = 0.4) -> None:
    import imageio.v3 as iio

    with atomic_path(path) as tmp:
        iio.imwrite(tmp, np.stack(images), extension=".gif", duration=int(seconds_per_frame * 1000), loop=0)


def history_table(rows: Sequence[dict[str, float]]) -> pd.DataFrame:
    return pd.DataFrame(list(rows))


def save_csv(frame: pd.DataFrame, path: Path) -> None:
    with atomic_path(path) as tmp:
        frame.to_csv(tmp, index=False)


def plot_curves(frame: pd.DataFrame, x: str, columns: Sequence[str], title: str, ylabel: str, path: Path) -> None:
    """A line plot of some columns against `x`, as a PNG (what the tutorials draw with matplotlib by hand)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4), dpi=100)
    for column in columns:
        if column in frame:
            ax.plot(frame[x], frame[column], label=column, marker="o" if len(frame) < 30 else None)
    ax.set_xlabel(x)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)


def grid_path(grids_dir: Path, epoch: int) -> Path:
    return grids_dir / f"epoch_{epoch:04d}.png"


class SampleGridSaver(Callback):
    """Keeps each epoch's fixed-noise grid as a PNG: the frames of the GIF, and what a resumed run re-logs."""

    def __init__(self, grids_dir: Path):
        self.grids_dir = grids_dir

    def on_epoch_end(self, state: TrainState, grid: torch.Tensor) -> None:
        save_png(grid_image(grid), grid_path(self.grids_dir, state.epoch))
