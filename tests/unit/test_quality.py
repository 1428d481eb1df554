"""Losses, DiffAugment, the EMA generator, spectral norm, TTUR, precision/recall and their config rules."""

import numpy as np
import pytest
import torch

from ganops.augment import DiffAugment, cutout, translation
from ganops.config import from_dict
from ganops.ema import GeneratorEMA, warmup_decay
from ganops.errors import ConfigError
from ganops.losses import LOSSES
from ganops.metrics import precision_recall
from ganops.models import build_discriminator
from ganops.training import Trainer, training_fingerprint
from tests.unit.test_training import tiny_config

CPU = torch.device("cpu")


@pytest.fixture(autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_each_loss_trains_a_few_steps_with_finite_metrics(tmp_path, tiny_digits, name):
    config = tiny_config(tmp_path, loss=name, diffaug=["translation", "cutout"], ema=0.9, lr_d=4e-4)
    trainer = Trainer(config.model, config.train, tiny_digits, CPU, fid_fn=lambda g: 1.0)
    state = trainer.fit()
    assert state.step == 8 and all(np.isfinite(list(row.values())).all() for row in state.history)
    assert all(0 <= row["d_acc_real"] <= 1 for row in state.history)
    assert trainer.opt_d.param_groups[0]["lr"] == 4e-4 and trainer.opt_g.param_groups[0]["lr"] == 2e-4


def test_losses_reward_the_right_sign():
    confident_real, confident_fake = torch.full((4,), 5.0), torch.full((4,), -5.0)
    for name, loss in LOSSES.items():
        good = loss.discriminator(confident_real, confident_fake)
        bad = loss.discriminator(confident_fake, confident_real)
        assert good < bad, name
        assert loss.generator(confident_real) < loss.generator(confident_fake), name


def test_wgan_gp_penalty_is_added(tmp_path, tiny_digits):
    losses = []
    for weight in (0.0, 1000.0):
        config = tiny_config(tmp_path, loss="wgan-gp", gp_weight=weight, log_every=1)
        losses.append(Trainer(config.model, config.train, tiny_digits, CPU).fit().history[0]["loss_d"])
    assert losses[1] > losses[0] + 1


def test_diffaugment_keeps_shape_and_gradients():
    torch.manual_seed(0)
    x = torch.randn(8, 3, 32, 32, requires_grad=True)
    out = DiffAugment(["translation", "cutout", "color"])(x)
    assert out.shape == x.shape
    out.sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    assert torch.equal(DiffAugment([])(x), x)


def test_translation_shifts_content_and_cutout_zeroes_a_square():
    torch.manual_seed(0)
    x = torch.arange(16.0).view(1, 1, 4, 4).repeat(64, 1, 1, 1) + 1
    shifted = translation(x, ratio=0.25)
    # every output pixel is a source pixel or the zero border, and rows stay sorted (a shift, not a shuffle)
    assert set(shifted.unique().tolist()) <= set(range(17))
    assert any(not torch.equal(s, x[0]) for s in shifted)
    holes = (cutout(x, ratio=0.5) == 0).flatten(1).sum(1)
    assert holes.max() == 4 and holes.min() >= 1


def test_ema_warm_up_forgets_the_initialisation_and_recalibrates_batch_norm():
    assert warmup_decay(0.999, 0) == pytest.approx(0.1) and warmup_decay(0.999, 10**6) == 0.999
    torch.manual_seed(0)
    from ganops.config import ModelConfig
    from ganops.models import build_generator

    generator = build_generator(ModelConfig(nz=8, ngf=4), 1, 32)
    ema = GeneratorEMA(generator, 0.999, nz=8, seed=0)
    with torch.no_grad():
        for p in generator.parameters():
            p.add_(1.0)
    for _ in range(200):
        ema.update(generator)
    live, averaged = next(generator.parameters()), next(ema.average.parameters())
    assert torch.allclose(averaged, live, atol=0.05)  # without warm-up it would still be 0.82 away
    stats_before = ema.average.main[1].running_mean.clone()
    out = ema.generator()(torch.randn(4, 8, 1, 1))
    assert out.shape == (4, 1, 32, 32) and not torch.equal(stats_before, ema.average.main[1].running_mean)


def test_ema_generator_is_what_the_trainer_samples_and_saves(tmp_path, tiny_digits):
    config = tiny_config(tmp_path, ema=0.99)
    trainer = Trainer(config.model, config.train, tiny_digits, CPU)
    seen = []
    trainer.fid_fn = lambda g: seen.append(g) or 1.0
    trainer.fit()
    assert seen == [trainer.ema.average]
    saved = trainer.generator_record()["state_dict"]
    assert torch.equal(saved["main.0.weight"], trainer.ema.average.main[0].weight)


def test_spectral_norm_discriminator_has_no_batch_norm():
    model = from_dict({"model": {"ndf": 8, "spectral_norm": True}}).model
    d = build_discriminator(model, 1, 32)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in d.modules())
    assert any("parametrizations" in name for name, _ in d.named_parameters())
    assert d(torch.randn(2, 1, 32, 32)).shape == (2,)


def test_fingerprint_covers_every_key_that_changes_training(tmp_path):
    base = tiny_config(tmp_path)
    meta = {"dataset": "mnist-5k", "count": 256}
    fingerprint = lambda c: training_fingerprint(c.model, c.train, meta)
    for change in ({"loss": "hinge"}, {"ema": 0.9}, {"diffaug": ["cutout"]}, {"lr_d": 1e-3}, {"lr_g": 1e-3},
                   {"gp_weight": 1.0}, {"amp": True}):
        assert fingerprint(base.replace(train=change)) != fingerprint(base), change
    assert fingerprint(base.replace(model={"spectral_norm": True})) != fingerprint(base)
    assert fingerprint(base.replace(train={"epochs": 9, "eval_every": 3})) == fingerprint(base)


def test_precision_recall_of_same_and_collapsed_distributions():
    rng = np.random.RandomState(0)
    real = rng.randn(500, 8)
    same = precision_recall(real, rng.randn(500, 8))
    assert same[0] > 0.8 and same[1] > 0.8  # k = 3 balls in 8 dims miss a few of the same distribution
    collapsed = precision_recall(real, 0.05 * rng.randn(500, 8))  # all samples near the mode
    assert collapsed[0] > 0.9 and collapsed[1] < 0.2
    far = precision_recall(real, rng.randn(500, 8) + 10)
    assert far == (0.0, 0.0)


@pytest.mark.parametrize("section, key, value, message", [
    ("train", "loss", "wgan", r"train.loss: 'wgan' is not allowed \(allowed: bce, hinge, lsgan, wgan-gp\)"),
    ("train", "ema", 1.0, r"train.ema: 1.0 is not allowed \(must be in \[0, 1\)"),
    ("train", "ema", -0.1, r"train.ema: -0.1 is not allowed"),
    ("train", "diffaug", ["flip"], r"train.diffaug: 'flip' is not allowed \(allowed: translation, cutout, color\)"),
    ("train", "diffaug", ["color"], r"train.diffaug: 'color' is not allowed \(needs 3 channels, data has 1"),
    ("train", "gp_weight", -1, r"train.gp_weight: -1.0 is not allowed \(must be >= 0\)"),
    ("train", "lr_d", 0, r"train.lr_d: 0.0 is not allowed"),
])
def test_new_keys_are_validated_with_one_line_errors(section, key, value, message):
    with pytest.raises(ConfigError, match=message) as info:
        from_dict({section: {key: value}})
    assert "\n" not in str(info.value)


def test_color_is_allowed_on_three_channels():
    assert from_dict({"data": {"dataset": "cifar10"}, "train": {"diffaug": ["color"]}}).train.diffaug == ["color"]


def test_real_features_travel_beside_the_statistics(tmp_path):
    from ganops.errors import GanopsError
    from ganops.metrics import load_real_features, load_statistics, save_statistics

    features = np.random.RandomState(0).randn(50, 4)
    save_statistics(tmp_path / "with.npz", features.mean(0), np.cov(features, rowvar=False), real_features=features)
    assert np.allclose(load_real_features(tmp_path / "with.npz", 4), features, atol=1e-6)
    assert load_statistics(tmp_path / "with.npz", 4)[0].shape == (4,)  # pytorch-fid's keys are unchanged
    save_statistics(tmp_path / "without.npz", np.zeros(4), np.eye(4))
    with pytest.raises(GanopsError, match="lack 'features'.*re-run `dvc repro fid_stats`"):
        load_real_features(tmp_path / "without.npz", 4)
