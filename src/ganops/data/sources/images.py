"""What url and folder share: finding image files and decoding them, whatever their size, into one tensor.

Imported inside those sources' fetch and read, never at the top of a source module (it loads torch and PIL).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Optional

import numpy as np
import torch
from PIL import Image

from ganops.data.transforms import to_square_uint8
from ganops.errors import GanopsError

log = logging.getLogger(__name__)

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".gif")


def image_files(root: Path) -> list[Path]:
    """Image files under root, recursively and sorted; hidden files and macOS `__MACOSX` debris left out."""
    def wanted(p: Path) -> bool:
        parts = p.relative_to(root).parts
        hidden = any(part.startswith(".") or part == "__MACOSX" for part in parts)
        return not hidden and p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file()

    return sorted(p for p in root.rglob("*") if wanted(p)) if root.is_dir() else []


def read_images(files: list[Path], where: Path, channels: int, size: int, center_crop: bool) -> torch.Tensor:
    """Decode every readable image and bring it to the configured size, so images of any size stack."""
    images, unreadable = [], []
    for path in files:
        image = _decode(path, channels)
        if image is None:
            unreadable.append(path)
        else:
            images.append(to_square_uint8(image, size, channels, center_crop))
    if unreadable:
        log.warning("skipped %d unreadable image(s) in %s (first: %s)", len(unreadable), where,
                    unreadable[0].relative_to(where))
    if not images:
        raise GanopsError(f"no readable image in {where} (allowed: {' '.join(IMAGE_EXTENSIONS)})")
    return torch.cat(images)


def _decode(path: Path, channels: int) -> Optional[torch.Tensor]:
    """One image as uint8 1 x C x H x W, or None when it cannot be read (missing, corrupt, not an image)."""
    try:
        with Image.open(path) as image:
            pixels = np.asarray(image.convert("L" if channels == 1 else "RGB"))
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError):
        # PIL reports a damaged or unknown file as OSError (UnidentifiedImageError), ValueError or SyntaxError
        return None
    tensor = torch.from_numpy(pixels.copy())
    return (tensor.unsqueeze(0) if tensor.ndim == 2 else tensor.permute(2, 0, 1)).unsqueeze(0)
