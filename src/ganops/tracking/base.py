"""The tracking seam: what stages, the tuner and the training callback ask of an experiment tracker.

Nothing here imports a tracking library. `ganops.tracking.mlflow_tracker` is the one implementation;
turning tracking off means no Tracker at all, and nothing else changes.
"""

from __future__ import annotations

import enum
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Mapping, NamedTuple, Optional, Protocol, Sequence

from ganops.errors import GanopsError

if TYPE_CHECKING:
    import numpy as np
    import torch

    from ganops.config import Config


class RunStatus(str, enum.Enum):
    """How a run ends (or stands). PRUNED is a search decision, not an error."""

    RUNNING = "RUNNING"
    FINISHED = "FINISHED"
    FAILED = "FAILED"
    KILLED = "KILLED"  # stopped by the user (Ctrl-C)
    PRUNED = "PRUNED"  # stopped early by the tuner's pruner


class TrackerUnavailable(GanopsError):
    """The tracking server stopped answering. Nothing is lost: callers hold what they have and retry."""

    def __init__(self, uri: str, reason: str):
        super().__init__(f"the MLflow tracking server {uri} does not answer ({reason}); start it again and rerun "
                         f"the same command: training resumes from its last checkpoint, and what MLflow already "
                         f"holds is not sent twice")
        self.uri, self.reason = uri, reason


class MetricPoint(NamedTuple):
    key: str
    value: float
    step: int


class DatasetInfo(NamedTuple):
    """The training data as a run input: what it is, and the DVC hash that pins its exact contents."""

    name: str
    digest: str  # md5 of the prepared tensor file, as dvc.lock records it
    source: str
    num_images: int


class RegisteredVersion(NamedTuple):
    """A generator registered as a model version, and whether it became the champion."""

    model: str
    version: str
    is_champion: bool
    champion_fid: Optional[float]  # the FID the alias points at after registering

    def summary(self, fid: float) -> str:
        if self.is_champion:
            return f"registered {self.model} version {self.version} (FID {fid:.3f}) as @{CHAMPION_ALIAS}"
        return (f"registered {self.model} version {self.version} (FID {fid:.3f}); @{CHAMPION_ALIAS} stays "
                f"(FID {self.champion_fid:.3f} is better)")


# Generic tag names; an implementation maps them onto its own system tags.
GIT_COMMIT_TAG = "git_commit"
SOURCE_TAG = "source"
FID_METRIC = "fid"  # the one FID name of every run that makes a generator: training runs and trials share a column
CHAMPION_ALIAS = "champion"
# What a training run reads (the train stage's params in dvc.yaml, and the data set): what its run logs.
TRAINING_PARAMS = ("data.dataset", "model", "train", "fid.extractor", "fid.batch_size")
DVC_EXP_NAME_ENV = "DVC_EXP_NAME"  # set by `dvc exp run` for the stages it runs (dvc/env.py)


class Tracker(Protocol):
    """One experiment of runs, addressed by id, so several processes can write into the same run."""

    def start_run(self, name: str, params: Mapping[str, str], tags: Mapping[str, str],
                  parent_run_id: Optional[str] = None) -> str: ...
    def run_status(self, run_id: Optional[str]) -> Optional[RunStatus]: ...  # None: no such run
    def reopen_run(self, run_id: str) -> None: ...
    def log_params(self, run_id: str, params: Mapping[str, str]) -> None: ...
    def set_tags(self, run_id: str, tags: Mapping[str, str]) -> None: ...
    def log_metrics(self, run_id: str, values: Mapping[str, float], step: int = 0) -> None: ...
    def log_metric_points(self, run_id: str, points: Sequence[MetricPoint]) -> None: ...
    def metric_history(self, run_id: str, key: str) -> list[MetricPoint]: ...
    def log_image(self, run_id: str, image: "np.ndarray", key: str, step: int) -> None: ...
    def set_description(self, run_id: str, markdown: str) -> None: ...
    def log_dataset(self, run_id: str, dataset: DatasetInfo) -> None: ...
    def register_generator(self, run_id: str, model_name: str, fid: float) -> RegisteredVersion: ...
    def log_artifacts(self, run_id: str, files: Iterable[Path], folder: Optional[str] = None) -> None: ...
    def log_generator(self, run_id: str, generator: "torch.nn.Module", nz: int) -> None: ...
    def finish_run(self, run_id: str, status: RunStatus = RunStatus.FINISHED, reason: Optional[str] = None) -> None: ...
    def run_url(self, run_id: str) -> str: ...
    def experiment_url(self) -> str: ...  # opens on the runs table


def experiment_name(config: "Config") -> str:
    return config.tracking.experiment or f"ganops-{config.data.dataset}"


def model_name(config: "Config") -> str:
    return f"ganops-{config.data.dataset}"


def grid_artifact(key: str, step: int) -> str:
    """A sample grid's artifact name that sorts in step order (MLflow's own names sort 1, 10, 11, 2)."""
    return f"images/{key}_e{step:03d}.png"


def run_name(config: "Config", differing: Mapping[str, Any]) -> str:
    """The DVC experiment's name during `dvc exp run`, else the values that tell this run apart."""
    dvc_name = os.environ.get(DVC_EXP_NAME_ENV)
    if dvc_name:
        return dvc_name
    values = "-".join(f"{key}{value:g}" if isinstance(value, float) else f"{key}{value}"
                      for key, value in differing.items())
    return f"{config.model.arch}-{config.data.dataset}" + (f"-{values}" if values else "")


def stage_params(config: "Config", keys: Iterable[str]) -> dict[str, str]:
    """The params a stage reads (whole sections or single `section.key`s), leaving out unset (null) ones."""
    from ganops.config import LAUNCH_KEYS

    everything = flatten(config.to_dict())
    launch = {f"train.{key}" for key in LAUNCH_KEYS}  # how the run is launched may change when it resumes
    chosen = {name: value for name, value in everything.items()
              if name not in launch and any(name == key or name.startswith(f"{key}.") for key in keys)}
    return {name: value for name, value in chosen.items() if value != "None"}


def flatten(values: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    """Nested params as MLflow-style dotted keys: {"train": {"lr": 2e-4}} -> {"train.lr": "0.0002"}."""
    flat: dict[str, str] = {}
    for key, value in values.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(flatten(value, f"{name}."))
        else:
            flat[name] = str(value)
    return flat


def run_tags(config: "Config", stage: str, device: Any, **extra: str) -> dict[str, str]:
    """The tags every run of a stage carries: what it ran on, and with which code."""
    from ganops.runtime import git_commit, git_dirty

    return {GIT_COMMIT_TAG: git_commit(), "git_dirty": str(git_dirty()).lower(), SOURCE_TAG: f"pipeline/{stage}.py",
            "dataset": config.data.dataset, "device": str(device), "extractor": config.fid.extractor, "stage": stage,
            **extra}


def open_tracker(config: "Config") -> Optional[Tracker]:
    """The configured tracker (its store checked and its experiment made), or None with tracking off."""
    if not config.tracking.enabled:
        return None
    from ganops.tracking.mlflow_tracker import MlflowTracker

    return MlflowTracker.connect(config.tracking, experiment_name(config))
