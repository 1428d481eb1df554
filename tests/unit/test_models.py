import pytest
import torch

from ganops.config import ModelConfig
from ganops.fileio import torch_load, torch_save
from ganops.models import (DCGANDiscriminator, DCGANGenerator, build_discriminator, build_generator,
                           generate_uint8, generator_from_record, generator_record)


@pytest.mark.parametrize("arch", ["dcgan", "mlp"])
@pytest.mark.parametrize("size", [32, 64, 128])
@pytest.mark.parametrize("channels", [1, 3])
def test_generator_and_discriminator_shapes(arch, size, channels):
    model = ModelConfig(arch=arch, nz=16, ngf=4, ndf=4, mlp_hidden=8)
    g = build_generator(model, channels, size)
    d = build_discriminator(model, channels, size)
    images = g(torch.randn(3, 16, 1, 1))
    assert images.shape == (3, channels, size, size)
    assert images.min() >= -1 and images.max() <= 1  # tanh output
    assert d(images).shape == (3,)  # one logit per image


def test_dcgan_layer_table_matches_the_paper_at_64():
    g = DCGANGenerator(nz=100, ngf=64, channels=3, image_size=64)
    convs = [m for m in g.modules() if isinstance(m, torch.nn.ConvTranspose2d)]
    assert [(c.in_channels, c.out_channels) for c in convs] == [(100, 512), (512, 256), (256, 128), (128, 64), (64, 3)]
    d = DCGANDiscriminator(ndf=64, channels=3, image_size=64)
    norms = [type(m).__name__ for m in d.main]
    assert norms[:2] == ["Conv2d", "LeakyReLU"]  # no BatchNorm on the first layer
    assert norms.count("BatchNorm2d") == 3


def test_weights_drawn_from_normal_0_002():
    g = build_generator(ModelConfig(ngf=64), 1, 64)
    weights = torch.cat([m.weight.flatten() for m in g.modules() if isinstance(m, torch.nn.ConvTranspose2d)])
    assert abs(weights.mean().item()) < 1e-3
    assert weights.std().item() == pytest.approx(0.02, rel=0.05)


def test_generator_record_round_trips_with_weights_only(tmp_path):
    model = ModelConfig(nz=8, ngf=4)
    g = build_generator(model, 1, 32)
    torch_save(generator_record(g, model, 1, 32), tmp_path / "g.pt")
    restored, restored_model = generator_from_record(torch_load(tmp_path / "g.pt", "generator"))
    assert restored_model == model
    a = generate_uint8(g, 5, 8, torch.device("cpu"))
    b = generate_uint8(restored, 5, 8, torch.device("cpu"))
    assert a.dtype == torch.uint8 and a.shape == (5, 1, 32, 32)
    assert torch.equal(a, b)
