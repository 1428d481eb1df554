"""The markdown description of a training run: what a reader of the run page wants before any chart."""

from __future__ import annotations

from typing import Mapping, Optional
from urllib.parse import quote

from ganops.config import Config
from ganops.tracking.base import grid_artifact

KEY_PARAMS = ("train.lr", "train.beta1", "train.beta2", "train.batch_size", "train.epochs", "train.seed")


def run_description(config: Config, run_id: str, num_images: int, epochs: int, fids: Mapping[str, float],
                    grid_key: str, registered: Optional[str] = None) -> str:
    """`fids`: label -> value, e.g. {"best during training": 270.4, "evaluation (5000 samples)": 263.0}."""
    data, model = config.data, config.model
    size = f"{data.resolved_channels}×{data.resolved_image_size}×{data.resolved_image_size}"
    widths = f"nz {model.nz}, ngf {model.ngf}, ndf {model.ndf}" if model.arch == "dcgan" else \
        f"nz {model.nz}, hidden {model.mlp_hidden}"
    flat = {f"{section}.{key}": value for section, values in config.to_dict().items() if isinstance(values, dict)
            for key, value in values.items()}
    lines = [f"**Data**: `{data.dataset}`, {num_images:,} images of {size}",
             f"**Model**: {model.arch} ({widths})",
             "**Params**: " + ", ".join(f"`{key}={flat[key]}`" for key in KEY_PARAMS),
             "**FID** (" + config.fid.extractor + " features): "
             + ", ".join(f"{label} **{value:.2f}**" for label, value in fids.items())]
    if registered:
        lines.append(f"**Registered**: {registered}")
    # A relative link: the UI serves run artifacts at /get-artifact on whatever host it runs.
    image = f"get-artifact?path={quote(grid_artifact(grid_key, epochs), safe='')}&run_uuid={run_id}"
    lines.append(f"\n**Samples after epoch {epochs}** (fixed noise):\n\n![samples after epoch {epochs}]({image})")
    return "  \n".join(lines[:-1]) + "\n" + lines[-1] + "\n"
