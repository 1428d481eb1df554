"""The `inception` extractor: pytorch-fid's FID Inception (the standard, 2048 dims), from a weights file.

The weights are downloaded once by hand (pytorch-fid would fetch them inside its constructor); this
module hands pytorch-fid the file's state instead, so nothing is ever downloaded here.
"""

from __future__ import annotations

import copy
import logging
from pathlib import Path
from typing import Any, Literal, Optional, Union
from unittest import mock

import torch
import torchvision
from pytorch_fid import inception as fid_inception
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

from ganops.config import FidConfig
from ganops.data.tensorfile import Prepared
from ganops.errors import GanopsError, one_line
from ganops.fileio import torch_load, torch_save
from ganops.metrics.extractors.base import FeatureExtractor

log = logging.getLogger(__name__)

INCEPTION_WEIGHTS_FILE = "pt_inception-2015-12-05-6726825d.pth"
INCEPTION_DIMS = 2048
INCEPTION_RECORD_FORMAT = "ganops-inception-v1"
RANDOM_WEIGHTS = "random"


def hub_inception_weights() -> Path:
    """Where pytorch-fid (through torch.hub) caches the FID Inception weights."""
    return Path(torch.hub.get_dir()) / "checkpoints" / INCEPTION_WEIGHTS_FILE


def resolve_inception_weights(weights: Optional[str]) -> Path:
    """The weights file: `weights` when given, else the torch hub cache; a clear error when it is absent."""
    hub_path = hub_inception_weights()
    how = (f"download {INCEPTION_WEIGHTS_FILE} from {fid_inception.FID_WEIGHTS_URL} on a machine with internet, "
           f"then set fid.inception_weights to its path (or copy it to {hub_path})")
    if weights:
        path = Path(weights).expanduser()
        if not path.is_file():
            raise GanopsError(f"fid.inception_weights: {path} does not exist; {how}")
        return path
    if not hub_path.is_file():
        raise GanopsError(f"FID Inception weights not found: fid.inception_weights is null and {hub_path} "
                          f"does not exist; {how}")
    return hub_path


def _random_inception_state() -> dict[str, torch.Tensor]:
    # The FID blocks subclass torchvision's with the same constructor arguments, so torchvision's
    # Inception3 (1008 classes, no aux head) has exactly the FID network's parameter names and shapes.
    reference = torchvision.models.inception_v3(weights=None, aux_logits=False, num_classes=1008,
                                                init_weights=False)
    return reference.state_dict()


def _fid_inception(state: dict[str, torch.Tensor]) -> fid_inception.InceptionV3:
    """pytorch-fid's InceptionV3 (pool3, 2048 dims) with `state` in place of its download."""
    block = fid_inception.InceptionV3.BLOCK_INDEX_BY_DIM[INCEPTION_DIMS]
    # pytorch-fid downloads inside its constructor; handing it the state instead means no network, ever.
    with mock.patch.object(fid_inception, "load_state_dict_from_url", lambda *args, **kwargs: state):
        return fid_inception.InceptionV3([block])


def _load_inception_state(path: Path) -> dict[str, torch.Tensor]:
    state = torch_load(path, "FID Inception weights")
    if not isinstance(state, dict):
        raise GanopsError(f"FID Inception weights {path} hold a {type(state).__name__}, not a state dict; "
                          f"download {INCEPTION_WEIGHTS_FILE} again")
    return state


class InceptionExtractor(FeatureExtractor):
    """pytorch-fid's FID Inception: takes [0, 1] RGB, resizes to 299 and rescales to [-1, 1] itself."""

    name = "inception"
    dims = INCEPTION_DIMS

    def __init__(self, weights: Union[str, None, Literal["random"]] = None, device: torch.device = torch.device("cpu"),
                 batch_size: int = 100):
        super().__init__(device, batch_size)
        self.random_weights = weights == RANDOM_WEIGHTS
        self.weights_file: Optional[Path] = None
        if self.random_weights:
            log.warning("FID Inception with RANDOM weights: for speed and shape tests only, its FIDs mean nothing")
            state = _random_inception_state()
        else:
            self.weights_file = resolve_inception_weights(weights)
            state = _load_inception_state(self.weights_file)
        try:
            model = _fid_inception(state)
        except RuntimeError as exc:  # load_state_dict: missing or mis-shaped tensors
            raise GanopsError(f"FID Inception weights {self.weights_file} do not fit pytorch-fid's "
                              f"network ({one_line(exc, limit=200)}); download {INCEPTION_WEIGHTS_FILE} again") from exc
        self.model = model.to(device=self.device, memory_format=torch.channels_last).eval()
        self._folded = fold_batch_norms(copy.deepcopy(self.model))  # what runs; self.model keeps the file's weights

    def _check_images(self, images: torch.Tensor) -> None:
        super()._check_images(images)
        if images.shape[1] not in (1, 3):
            raise ValueError(f"inception extractor takes 1 or 3 channels, got {images.shape[1]}")

    def _batch_features(self, batch: torch.Tensor) -> torch.Tensor:
        # What pytorch-fid's CLI feeds it: PIL convert('RGB') repeats gray, ToTensor divides by 255.
        x = batch.float().div_(255.0).expand(-1, 3, -1, -1)
        x = x.contiguous(memory_format=torch.channels_last)
        return self._folded(x)[0].flatten(1)


def fold_batch_norms(model: nn.Module) -> nn.Module:
    """Fold each eval-mode BatchNorm into the convolution before it (Inception's conv -> bn -> relu blocks).

    The same function up to float rounding (features agree to ~1e-6 relative), about 1.25x faster on the CPU.
    """
    for block in model.modules():
        conv, bn = getattr(block, "conv", None), getattr(block, "bn", None)
        if isinstance(conv, nn.Conv2d) and isinstance(bn, nn.BatchNorm2d):
            block.conv, block.bn = fuse_conv_bn_eval(conv, bn), nn.Identity()
    return model


def inception_record(weights: Optional[str]) -> dict[str, Any]:
    """A small note of which Inception weights the statistics came from (models/feature_net.pt)."""
    path = resolve_inception_weights(weights)
    return {"format": INCEPTION_RECORD_FORMAT, "weights_file": str(path), "weights_bytes": path.stat().st_size}


def prepare(fid: FidConfig, prepared: Prepared, feature_net: Path, device: torch.device,
            seed: int) -> dict[str, Any]:
    """Nothing to train: check the weights file is there and note it in `feature_net`."""
    torch_save(inception_record(fid.inception_weights), feature_net)
    return {}


def load(fid: FidConfig, feature_net: Path, device: torch.device) -> InceptionExtractor:
    if fid.inception_weights == RANDOM_WEIGHTS:
        raise GanopsError("fid.inception_weights: 'random' is for benchmarks only, never for reported FIDs "
                          "(allowed: a path to the weights file, or null for the torch hub cache)")
    return InceptionExtractor(fid.inception_weights, device, fid.batch_size)
