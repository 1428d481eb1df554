"""The data-source and FID-extractor registries: a new one is a registration, no other file changes.

The toy source and extractor below live only in this file; the config, the download, preprocess and
fid_stats stages pick them up through the registries alone.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from ganops.config import DataConfig, FidConfig, from_dict
from ganops.config_schema import require
from ganops.data import CHECKSUM_FILE, load_prepared
from ganops.data.sources import DataSource, register, source_names, unregister
from ganops.errors import ConfigError
from ganops.metrics import extractors
from ganops.metrics.extractors.base import FeatureExtractor

ROOT = Path(__file__).resolve().parents[2]
TOY = "toy-noise"
TOY_EXTRACTOR = "toy-colour"


# ---------------------------------------------------------------------------------------------------
# A toy source: a few random colour images, with labels, and one required key

def toy_check(data: DataConfig) -> None:
    require(data.limit > 0, "data.limit", data.limit, f"must be > 0 when data.dataset is '{TOY}'")


def toy_fetch(data: DataConfig, raw_dir: Path) -> list[Path]:
    images = np.random.default_rng(data.shuffle_seed).integers(0, 256, (data.limit, 3, 20, 20), dtype=np.uint8)
    target = raw_dir / "noise.npy"
    np.save(target, images)
    return [target]


def toy_read(data: DataConfig, raw_dir: Path) -> tuple[torch.Tensor, torch.Tensor]:
    images = torch.from_numpy(np.load(raw_dir / "noise.npy"))
    return images, torch.arange(len(images)) % 2


@pytest.fixture
def toy_source():
    register(DataSource(TOY, channels=3, image_size=64, fetch=toy_fetch, read=toy_read, check=toy_check))
    yield TOY
    unregister(TOY)


# ---------------------------------------------------------------------------------------------------
# A toy extractor: each channel's mean and spread, from a file its prepare step writes

class ColourFeatures(FeatureExtractor):
    name = TOY_EXTRACTOR
    dims = 6

    def _batch_features(self, batch: torch.Tensor) -> torch.Tensor:
        pixels = batch.float().flatten(2)
        return torch.cat([pixels.mean(2), pixels.std(2)], dim=1)


class ColourExtractor:
    @staticmethod
    def prepare(fid: FidConfig, prepared, feature_net: Path, device: torch.device, seed: int) -> dict:
        feature_net.parent.mkdir(parents=True, exist_ok=True)
        feature_net.write_text(json.dumps({"extractor": TOY_EXTRACTOR}))
        return {"toy_note": 1}

    @staticmethod
    def load(fid: FidConfig, feature_net: Path, device: torch.device) -> ColourFeatures:
        assert json.loads(feature_net.read_text()) == {"extractor": TOY_EXTRACTOR}
        return ColourFeatures(device, fid.batch_size)


@pytest.fixture
def toy_extractor():
    extractors.register(TOY_EXTRACTOR, lambda: ColourExtractor)
    yield TOY_EXTRACTOR
    extractors.unregister(TOY_EXTRACTOR)


# ---------------------------------------------------------------------------------------------------

def test_config_accepts_a_registered_source_with_its_defaults_and_required_keys(toy_source):
    data = from_dict({"data": {"dataset": toy_source, "limit": 12}}).data
    assert (data.resolved_channels, data.resolved_image_size) == (3, 64)
    assert from_dict({"data": {"dataset": toy_source, "limit": 12, "channels": 1}}).data.resolved_channels == 1
    with pytest.raises(ConfigError, match=f"data.limit: 0 is not allowed \\(must be > 0 when data.dataset is '{TOY}'\\)"):
        from_dict({"data": {"dataset": toy_source}})
    with pytest.raises(ConfigError, match=f"allowed: mnist-5k, mnist, fashion-mnist, cifar10, url, folder, {TOY}\\)"):
        from_dict({"data": {"dataset": "imagenet"}})


def test_download_preprocess_and_fid_stats_stages_use_the_registered_toys(toy_source, toy_extractor, tmp_path,
                                                                         monkeypatch):
    from pipeline import download, fid_stats, preprocess

    monkeypatch.chdir(tmp_path)
    config = from_dict({"data": {"dataset": toy_source, "limit": 12}, "fid": {"extractor": toy_extractor},
                        "train": {"device": "cpu"}})

    download.main(config)
    preprocess.main(config)
    fid_stats.main(config)

    raw = tmp_path / "data" / "raw" / TOY
    assert (raw / CHECKSUM_FILE).read_text().endswith("  noise.npy\n")
    prepared = load_prepared(tmp_path / "data" / "prepared" / f"{TOY}.pt")
    assert prepared.images.shape == (12, 3, 64, 64) and prepared.meta["num_classes"] == 2
    with np.load(tmp_path / "data" / "fid" / f"{TOY}-{TOY_EXTRACTOR}.npz") as stats:
        assert stats["mu"].shape == (6,)
    metrics = json.loads((tmp_path / "metrics" / "fid_stats.json").read_text())
    assert metrics["toy_note"] == 1 and metrics["feature_dims"] == 6


def test_a_removed_source_or_extractor_is_no_longer_allowed(toy_source, toy_extractor):
    assert toy_source in source_names() and toy_extractor in extractors.extractor_names()
    unregister(toy_source)
    extractors.unregister(toy_extractor)
    try:
        with pytest.raises(ConfigError, match=f"data.dataset: '{TOY}' is not allowed"):
            from_dict({"data": {"dataset": toy_source, "limit": 1}})
        with pytest.raises(ConfigError, match=f"fid.extractor: '{TOY_EXTRACTOR}' is not allowed "
                                              "\\(allowed: classifier, inception\\)"):
            from_dict({"fid": {"extractor": toy_extractor}})
    finally:  # the fixtures' teardown unregisters them again
        register(DataSource(TOY, 3, 64, toy_fetch, toy_read))
        extractors.register(TOY_EXTRACTOR, lambda: ColourExtractor)


def test_a_name_is_registered_once(toy_source):
    with pytest.raises(ValueError, match="registered already"):
        register(DataSource(TOY, 1, 32, toy_fetch, toy_read))
    with pytest.raises(ValueError, match="registered already"):
        extractors.register("classifier", lambda: ColourExtractor)


def test_the_registries_answer_for_unknown_names_as_the_config_does():
    from ganops.data.sources import source_named

    with pytest.raises(ConfigError, match="data.dataset: 'imagenet' is not allowed \\(allowed: mnist-5k, "):
        source_named("imagenet")
    with pytest.raises(ConfigError, match="fid.extractor: 'vgg' is not allowed \\(allowed: classifier, inception\\)"):
        extractors.extractor_named("vgg")


def test_checking_params_imports_neither_torch_nor_torchvision_nor_pil():
    """Stages check params.yaml before the heavy imports (pipeline/_stage.py): the registries keep it so."""
    code = ("import sys; from ganops.config import load_config; load_config('params.yaml'); "
            "print(sorted({m.split('.')[0] for m in sys.modules} & {'torch', 'torchvision', 'PIL', 'numpy'}))")
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True,
                            env={"PYTHONPATH": f"{ROOT / 'src'}:{ROOT}", "PATH": "/usr/bin:/bin"})
    assert result.stdout.strip() == "[]"
