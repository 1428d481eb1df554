"""Generators and discriminators: DCGAN (Radford, Metz & Chintala, 2015) and the MNIST tutorials' MLP GAN.

DCGAN generator for a 64x64 image (ngf = base width, nc = image channels), as in the paper's Figure 1:

    z (nz x 1 x 1)
    ConvTranspose2d(nz,    ngf*8, 4, 1, 0) + BatchNorm + ReLU   ->  ngf*8 x  4 x  4
    ConvTranspose2d(ngf*8, ngf*4, 4, 2, 1) + BatchNorm + ReLU   ->  ngf*4 x  8 x  8
    ConvTranspose2d(ngf*4, ngf*2, 4, 2, 1) + BatchNorm + ReLU   ->  ngf*2 x 16 x 16
    ConvTranspose2d(ngf*2, ngf,   4, 2, 1) + BatchNorm + ReLU   ->  ngf   x 32 x 32
    ConvTranspose2d(ngf,   nc,    4, 2, 1) + Tanh               ->  nc    x 64 x 64

The discriminator mirrors it with strided convolutions, no BatchNorm on the first layer, LeakyReLU(0.2),
and a final 4x4 convolution to one logit. Other sizes add or drop one doubling per factor of two
(32x32 starts at ngf*4, 128x128 at ngf*16). Every conv weight is drawn from N(0, 0.02), BatchNorm
weights from N(1, 0.02). Discriminators return logits; the loss (ganops.losses) gives them meaning: for
the paper's BCE it applies the sigmoid (BCEWithLogits, the paper's sigmoid + BCE computed stably).
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from ganops.config import IMAGE_SIZES, ModelConfig
from ganops.errors import ConfigError


def _doublings(image_size: int) -> int:
    if image_size not in IMAGE_SIZES:
        raise ConfigError(f"image size {image_size} is not supported (allowed: {', '.join(map(str, IMAGE_SIZES))})")
    return int(math.log2(image_size)) - 2  # 4x4 -> image_size


class DCGANGenerator(nn.Module):
    def __init__(self, nz: int, ngf: int, channels: int, image_size: int):
        super().__init__()
        n = _doublings(image_size)
        widths = [ngf * 2 ** i for i in reversed(range(n))]  # e.g. 64x64: ngf*8, ngf*4, ngf*2, ngf
        layers: list[nn.Module] = [
            nn.ConvTranspose2d(nz, widths[0], 4, 1, 0, bias=False), nn.BatchNorm2d(widths[0]), nn.ReLU(True),
        ]
        for w_in, w_out in zip(widths, widths[1:]):
            layers += [nn.ConvTranspose2d(w_in, w_out, 4, 2, 1, bias=False), nn.BatchNorm2d(w_out), nn.ReLU(True)]
        layers += [nn.ConvTranspose2d(widths[-1], channels, 4, 2, 1, bias=False), nn.Tanh()]
        self.nz = nz
        self.main = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.main(z.view(z.shape[0], self.nz, 1, 1))


class DCGANDiscriminator(nn.Module):
    def __init__(self, ndf: int, channels: int, image_size: int, batch_norm: bool = True):
        super().__init__()
        n = _doublings(image_size)
        widths = [ndf * 2 ** i for i in range(n)]  # e.g. 64x64: ndf, ndf*2, ndf*4, ndf*8
        layers: list[nn.Module] = [nn.Conv2d(channels, widths[0], 4, 2, 1, bias=False), nn.LeakyReLU(0.2, True)]
        for w_in, w_out in zip(widths, widths[1:]):
            norm = nn.BatchNorm2d(w_out) if batch_norm else nn.Identity()
            layers += [nn.Conv2d(w_in, w_out, 4, 2, 1, bias=False), norm, nn.LeakyReLU(0.2, True)]
        layers += [nn.Conv2d(widths[-1], 1, 4, 1, 0, bias=False)]
        self.main = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.main(x).view(-1)


class MLPGenerator(nn.Module):
    """The vanilla GAN generator of the MNIST tutorials: three LeakyReLU layers, tanh output."""

    def __init__(self, nz: int, hidden: int, channels: int, image_size: int):
        super().__init__()
        self.shape = (channels, image_size, image_size)
        self.nz = nz
        self.main = nn.Sequential(
            nn.Linear(nz, hidden), nn.LeakyReLU(0.2, True),
            nn.Linear(hidden, hidden * 2), nn.LeakyReLU(0.2, True),
            nn.Linear(hidden * 2, hidden * 4), nn.LeakyReLU(0.2, True),
            nn.Linear(hidden * 4, math.prod(self.shape)), nn.Tanh(),
        )

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.main(z.view(z.shape[0], self.nz)).view(z.shape[0], *self.shape)


class MLPDiscriminator(nn.Module):
    def __init__(self, hidden: int, channels: int, image_size: int):
        super().__init__()
        self.main = nn.Sequential(
            nn.Flatten(),
            nn.Linear(channels * image_size * image_size, hidden * 4), nn.LeakyReLU(0.2, True), nn.Dropout(0.3),
            nn.Linear(hidden * 4, hidden * 2), nn.LeakyReLU(0.2, True), nn.Dropout(0.3),
            nn.Linear(hidden * 2, hidden), nn.LeakyReLU(0.2, True), nn.Dropout(0.3),
            nn.Linear(hidden, 1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.main(x).view(-1)


def init_weights(module: nn.Module) -> None:
    """DCGAN initialisation: conv and linear weights ~ N(0, 0.02); BatchNorm weights ~ N(1, 0.02), bias 0."""
    if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
        nn.init.normal_(module.weight, 0.0, 0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.BatchNorm2d):
        nn.init.normal_(module.weight, 1.0, 0.02)
        nn.init.zeros_(module.bias)


def build_generator(model: ModelConfig, channels: int, image_size: int) -> nn.Module:
    if model.arch == "dcgan":
        net: nn.Module = DCGANGenerator(model.nz, model.ngf, channels, image_size)
    else:
        net = MLPGenerator(model.nz, model.mlp_hidden, channels, image_size)
    net.apply(init_weights)
    return net


def build_discriminator(model: ModelConfig, channels: int, image_size: int) -> nn.Module:
    """With `model.spectral_norm`, every conv and linear layer is spectrally normalised (Miyato et al. 2018)
    and the DCGAN discriminator drops its BatchNorm, as SN-GAN's does: the two fight over the layer scale."""
    if model.arch == "dcgan":
        net: nn.Module = DCGANDiscriminator(model.ndf, channels, image_size, batch_norm=not model.spectral_norm)
    else:
        net = MLPDiscriminator(model.mlp_hidden, channels, image_size)
    net.apply(init_weights)
    if model.spectral_norm:
        for module in list(net.modules()):
            if isinstance(module, (nn.Conv2d, nn.Linear)):
                nn.utils.parametrizations.spectral_norm(module)
    return net


def generator_record(generator: nn.Module, model: ModelConfig, channels: int, image_size: int) -> dict[str, Any]:
    """What models/generator.pt holds: plain values and tensors, so it loads with weights_only=True."""
    state = {k: v.detach().cpu() for k, v in generator.state_dict().items()}
    return {"model": {"arch": model.arch, "nz": model.nz, "ngf": model.ngf, "ndf": model.ndf,
                      "mlp_hidden": model.mlp_hidden, "spectral_norm": model.spectral_norm},
            "channels": channels, "image_size": image_size, "state_dict": state}


def generator_from_record(record: dict[str, Any]) -> tuple[nn.Module, ModelConfig]:
    model = ModelConfig(**record["model"])
    generator = build_generator(model, record["channels"], record["image_size"])
    generator.load_state_dict(record["state_dict"])
    return generator.eval(), model


@torch.inference_mode()
def generate_uint8(generator: nn.Module, n: int, nz: int, device: torch.device, batch_size: int = 500,
                   seed: int = 0) -> torch.Tensor:
    """`n` generated images as uint8 N x C x H x W on the CPU (the same form as the prepared data)."""
    g = torch.Generator(device="cpu").manual_seed(seed)
    out = []
    was_training = generator.training
    generator.eval()
    for start in range(0, n, batch_size):
        z = torch.randn(min(batch_size, n - start), nz, 1, 1, generator=g).to(device)
        out.append(to_uint8(generator(z)).cpu())
    generator.train(was_training)
    return torch.cat(out)


def to_uint8(images: torch.Tensor) -> torch.Tensor:
    """[-1, 1] floats to [0, 255] uint8, rounding as torchvision's save_image does."""
    return images.float().add(1).mul(127.5).add(0.5).clamp(0, 255).to(torch.uint8)


def to_unit_range(images: torch.Tensor) -> torch.Tensor:
    """uint8 [0, 255] to float [-1, 1], the generator's output range."""
    return images.float().div(127.5).sub(1)
