"""Turning images of any size into the configured square uint8 tensor."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def to_square_uint8(images: torch.Tensor, size: int, channels: int, center_crop: bool = False) -> torch.Tensor:
    """uint8 N x C x H x W (any C in 1, 3, 4; any H, W) to uint8 N x channels x size x size.

    With `center_crop` the largest centred square is cut out first (faces, as the FFHQ tutorial does);
    otherwise the image is resized as it is. Downscaling is antialiased.
    """
    if images.shape[1] == 4:
        images = images[:, :3]
    if images.shape[1] == 3 and channels == 1:
        weights = torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)  # ITU-R 601-2 luma, as PIL's "L"
        images = (images.float() * weights).sum(1, keepdim=True).round().clamp(0, 255).to(torch.uint8)
    elif images.shape[1] == 1 and channels == 3:
        images = images.expand(-1, 3, -1, -1)
    h, w = images.shape[-2:]
    if center_crop and h != w:
        side = min(h, w)
        top, left = (h - side) // 2, (w - side) // 2
        images = images[..., top:top + side, left:left + side]
    if images.shape[-2:] == (size, size):
        return images.contiguous()
    out = []
    for chunk in images.split(1024):
        resized = F.interpolate(chunk.float(), size=(size, size), mode="bilinear", align_corners=False,
                                antialias=True)
        out.append(resized.round().clamp(0, 255).to(torch.uint8))
    return torch.cat(out).contiguous()
