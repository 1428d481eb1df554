from pathlib import Path

import pytest
import yaml

from ganops.config import Config, from_dict, load_config
from ganops.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]


def test_repository_params_load_and_resolve_dataset_defaults():
    config = load_config(ROOT / "params.yaml")
    assert isinstance(config, Config)
    assert config.data.dataset == "mnist-5k"
    assert (config.data.resolved_channels, config.data.resolved_image_size) == (1, 32)
    assert from_dict({"data": {"dataset": "cifar10"}}).data.resolved_channels == 3


def _params_with(tmp_path, section, key, value):
    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    if value is KeyError:
        del raw[section][key]
    else:
        raw[section][key] = value
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


@pytest.mark.parametrize("section,key,value,expected", [
    ("train", "lr", 0, "train.lr"),
    ("train", "lr", -1e-4, "train.lr"),
    ("train", "beta1", 1.0, "train.beta1"),
    ("data", "dataset", "imagenet", "'imagenet' is not allowed"),
    ("data", "image_size", 48, "data.image_size"),
    ("data", "channels", 0, "data.channels"),
    ("model", "ngf", 0, "model.ngf"),
    ("train", "epochs", "ten", "train.epochs"),
    ("train", "lr", KeyError, "missing params key 'train.lr'"),
    ("train", "epoch", 3, "did you mean 'epochs'"),
    ("tune", "ngf_choices", [16, 24], "power of two"),
    ("tune", "pruner", "random", "allowed: median, hyperband, none"),
    ("tune", "workers", 0, "tune.workers: 0 is not allowed (must be >= 1 worker process)"),
    ("tune", "workers", 9, "must be at most tune.n_trials (4): each worker runs at least one trial"),
    ("train", "from_study", "yes", "train.from_study: 'yes' must be true or false"),
    ("tune", "search", ["loss", "width"], "tune.search[1]: 'width' is not allowed (allowed: loss, ema, diffaug, ttur)"),
    ("tune", "search", ["ema", "ema"], "each switch at most once"),
    ("tune", "loss_choices", ["bce", "wasserstein"], "tune.loss_choices: 'wasserstein' is not allowed (allowed: bce, hinge"),
    ("tune", "ema_choices", [0.0, 1.0], "tune.ema_choices: 1.0 is not allowed (each must be in [0, 1)"),
    ("tune", "diffaug_choices", ["none", "translation,flip"], "tune.diffaug_choices: 'translation,flip' is not allowed"),
])
def test_bad_values_name_the_key_and_what_is_allowed(tmp_path, section, key, value, expected):
    path = _params_with(tmp_path, section, key, value)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    message = str(info.value)
    assert expected in message
    assert "\n" not in message


def test_yaml_exponent_without_dot_is_accepted_as_float():
    assert from_dict({"train": {"lr": "2e-4"}}).train.lr == pytest.approx(2e-4)


def test_replace_validates_again():
    config = from_dict({})
    assert config.replace(train={"lr": 1e-3}).train.lr == 1e-3
    with pytest.raises(ConfigError):
        config.replace(train={"beta1": -0.1})


def test_color_among_searched_diffaug_choices_needs_three_channels():
    with pytest.raises(ConfigError, match=r"tune.diffaug_choices: 'translation,color' is not allowed \(color needs 3"):
        from_dict({"tune": {"search": ["diffaug"], "diffaug_choices": ["none", "translation,color"]}})
    # Not searched: never used, so not refused; 3 channels: allowed.
    from_dict({"tune": {"diffaug_choices": ["translation,color"]}})
    from_dict({"data": {"dataset": "cifar10"}, "tune": {"search": ["diffaug"], "diffaug_choices": ["color"]}})
