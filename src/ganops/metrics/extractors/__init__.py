"""FID feature extractors by name (fid.extractor): one module each, with two functions.

- `prepare(fid, prepared, feature_net, device, seed) -> dict`: what the fid_stats stage does to make the
  extractor usable, leaving its record in models/feature_net.pt (classifier: train the network on the
  labels; inception: note which weights file); returns metrics for metrics/fid_stats.json.
- `load(fid, feature_net, device) -> FeatureExtractor`: the feature function for fid_stats, the FID
  during training and the evaluate stage.

config.py checks fid.extractor against these names before torch loads (see pipeline/_stage.py), so an
extractor is registered with a function that imports its module, and the module (torch and all) is
only imported when that extractor is asked for.
"""

from __future__ import annotations

import functools
import importlib
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Protocol

from ganops.config_schema import check_choice

if TYPE_CHECKING:
    import torch

    from ganops.config import FidConfig
    from ganops.data.tensorfile import Prepared
    from ganops.metrics.extractors.base import FeatureExtractor


class ExtractorModule(Protocol):
    def prepare(self, fid: FidConfig, prepared: Prepared, feature_net: Path, device: torch.device,
                seed: int) -> dict[str, Any]: ...

    def load(self, fid: FidConfig, feature_net: Path, device: torch.device) -> FeatureExtractor: ...


_EXTRACTORS: dict[str, Callable[[], ExtractorModule]] = {}  # name -> importer, in the order messages list


def register(name: str, importer: Callable[[], ExtractorModule]) -> None:
    if name in _EXTRACTORS:
        raise ValueError(f"FID extractor {name!r} is registered already")
    _EXTRACTORS[name] = importer


def unregister(name: str) -> None:
    del _EXTRACTORS[name]


def extractor_names() -> tuple[str, ...]:
    return tuple(_EXTRACTORS)


def extractor_named(name: str) -> ExtractorModule:
    """The module of the extractor fid.extractor names; any other name is params.yaml's error."""
    check_choice("fid.extractor", name, extractor_names())
    return _EXTRACTORS[name]()


def build_extractor(fid: FidConfig, feature_net: Path, device: torch.device) -> FeatureExtractor:
    """The extractor params ask for, as fid_stats left it (the classifier is read from `feature_net`)."""
    return extractor_named(fid.extractor).load(fid, Path(feature_net), device)


def _module(name: str) -> Callable[[], ExtractorModule]:
    # Imported by name on first use: every stage checks fid.extractor through config.py, and only the
    # stages that extract features should load (or, for tests/unit/test_dvc_deps.py, depend on) the code.
    return functools.partial(importlib.import_module, name)


register("classifier", _module("ganops.metrics.extractors.classifier"))
register("inception", _module("ganops.metrics.extractors.inception"))
