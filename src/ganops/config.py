"""The typed configuration: one dataclass per params.yaml section, loaded and validated once.

No other module reads params.yaml. Each rule sits beside the field it checks (field metadata) or, when
it spans fields, in the section's `check()`; config_schema applies them. Every error names the key,
the bad value and what is allowed.
"""

from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Optional

import yaml

from ganops.config_schema import at_least, build_section, keys, one_of, positive, reject_unknown, require, rule
from ganops.config_schema import validate_section, yaml_problem
from ganops.data.sources import source_named, source_names  # descriptions only: no torch (see registry.py)
from ganops.errors import ConfigError
from ganops.metrics.extractors import extractor_names  # names only: no torch

IMAGE_SIZES = (32, 64, 128)
# Kept in step with ganops.losses.LOSSES and ganops.augment.POLICIES (this module must not import torch).
LOSS_NAMES = ("bce", "hinge", "lsgan", "wgan-gp")
DIFFAUG_POLICIES = ("translation", "cutout", "color")
TUNE_SWITCHES = ("loss", "ema", "diffaug", "ttur")  # what tune.search may add to lr, beta1, ngf, ndf
NO_DIFFAUG = "none"  # a tune.diffaug_choices entry: augmentation off
# How a run is launched, not what it trains: left out of the resume fingerprint and of the logged params,
# so a run resumes (into the same MLflow run) with any number of processes.
LAUNCH_KEYS = ("nproc_per_node", "dist_timeout")
TRACKING_SCHEMES = ("sqlite:///", "http://", "https://", "postgresql", "mysql", "databricks", "file:")


def check_batch_split(batch_size: int, processes: int, key: str) -> None:
    """The global batch splits evenly: each of `processes` trains on batch_size / processes images a step.

    Uneven shares would weigh the ranks' mean gradients unequally and give BatchNorm unequal batches.
    """
    require(processes <= batch_size, key, processes,
            f"at most train.batch_size ({batch_size}) processes: each needs at least one image a step")
    fits = [n for n in range(1, min(batch_size, 64) + 1) if batch_size % n == 0]
    require(batch_size % processes == 0, key, processes,
            f"must divide the global train.batch_size {batch_size} evenly; allowed: {', '.join(map(str, fits))}")


def _optional_lr(value: Optional[float]) -> bool:
    return value is None or 0 < value < 1


def diffaug_policies(choice: str) -> Optional[list[str]]:
    """A tune.diffaug_choices entry as train.diffaug: "translation,cutout" -> [translation, cutout]; none -> null."""
    return None if choice == NO_DIFFAUG else [part.strip() for part in choice.split(",")]


def _power_of_two(value: int) -> bool:
    return value > 0 and value & (value - 1) == 0


@dataclass(frozen=True)
class DataConfig:
    # a name registered in ganops.data.sources, which also gives the defaults and required keys below
    dataset: str = field(default="mnist-5k", metadata=one_of(source_names))
    # null: the data set's default (1 for MNIST-like, 3 otherwise)
    channels: Optional[int] = field(default=None, metadata=rule(lambda v: v is None or v in (1, 3),
                                                                "allowed: 1, 3 or null"))
    # null: the data set's default (32, or 64 for image folders)
    image_size: Optional[int] = field(default=None, metadata=rule(
        lambda v: v is None or v in IMAGE_SIZES, f"allowed: {', '.join(map(str, IMAGE_SIZES))} or null"))
    # keep at most this many images (0: all), for quick experiments
    limit: int = field(default=0, metadata=rule(lambda v: v >= 0, "must be >= 0; 0 keeps every image"))
    shuffle_seed: int = 0
    center_crop: bool = False  # square center crop before resizing (faces, as the FFHQ tutorial does)
    mirror: Optional[str] = None  # base URL replacing torchvision's mirrors for mnist/fashion-mnist/cifar10
    url: Optional[str] = None  # archive of images, for dataset: url
    sha256: Optional[str] = None  # the archive's checksum, required with dataset: url
    folder: Optional[str] = None  # local folder of images, for dataset: folder
    max_extract_mb: int = field(default=20000, metadata=positive())  # refuse archives expanding beyond this
    download_retries: int = field(default=3, metadata=at_least(0))

    def check(self) -> None:
        source_named(self.dataset).check(self)  # the keys the source needs (url: url and sha256, folder: folder)

    @property
    def resolved_channels(self) -> int:
        return self.channels if self.channels is not None else source_named(self.dataset).channels

    @property
    def resolved_image_size(self) -> int:
        return self.image_size if self.image_size is not None else source_named(self.dataset).image_size


@dataclass(frozen=True)
class ModelConfig:
    arch: Literal["dcgan", "mlp"] = "dcgan"
    nz: int = field(default=100, metadata=positive())
    ngf: int = field(default=64, metadata=positive())
    ndf: int = field(default=64, metadata=positive())
    mlp_hidden: int = field(default=256, metadata=positive())
    spectral_norm: bool = False  # spectral normalisation of the discriminator's layers (Miyato et al. 2018)


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = field(default=20, metadata=positive())
    batch_size: int = field(default=128, metadata=positive())
    lr: float = field(default=2e-4, metadata=rule(lambda v: 0 < v < 1, "must be in (0, 1)"))
    beta1: float = field(default=0.5, metadata=rule(lambda v: 0 <= v < 1, "must be in [0, 1)"))
    beta2: float = field(default=0.999, metadata=rule(lambda v: 0 <= v < 1, "must be in [0, 1)"))
    seed: int = 42
    # one-sided: real targets become 1 - label_smoothing
    label_smoothing: float = field(default=0.0, metadata=rule(lambda v: 0 <= v < 0.5, "must be in [0, 0.5)"))
    g_steps: int = field(default=1, metadata=positive())  # generator steps per discriminator step
    hflip: bool = False
    log_every: int = field(default=10, metadata=positive())  # steps between metric logs
    checkpoint_every: int = field(default=1, metadata=positive())  # epochs between checkpoints
    # epochs between FID evaluations (the last epoch is always evaluated)
    eval_every: int = field(default=5, metadata=positive())
    eval_samples: int = field(default=2000, metadata=at_least(2))
    sample_grid: int = field(default=64, metadata=positive())  # images in the fixed-noise grid
    device: Literal["auto", "cpu", "cuda"] = "auto"
    amp: bool = False  # bf16 autocast, on CUDA or the CPU
    channels_last: bool = True
    from_study: bool = False  # true: the searched values of results/tune/best_params.yaml (the study's best trial)
    loss: str = field(default="bce", metadata=rule(  # bce (non-saturating) | hinge | lsgan | wgan-gp
        lambda v: v in LOSS_NAMES, f"allowed: {', '.join(LOSS_NAMES)}"))
    gp_weight: float = field(default=10.0, metadata=at_least(0))  # gradient-penalty weight, for loss: wgan-gp
    # TTUR: the discriminator's and the generator's learning rates; null: lr
    lr_d: Optional[float] = field(default=None, metadata=rule(_optional_lr, "must be in (0, 1), or null for train.lr"))
    lr_g: Optional[float] = field(default=None, metadata=rule(_optional_lr, "must be in (0, 1), or null for train.lr"))
    # decay of the generator's weight average used for samples, FID and the saved model; 0: off
    ema: float = field(default=0.0, metadata=rule(lambda v: 0 <= v < 1, "must be in [0, 1); 0 turns the average off"))
    # DiffAugment policies: translation, cutout, color (3 channels); null: off
    diffaug: Optional[list[str]] = None
    # Several processes (torch.distributed; README "Several GPUs or machines"). batch_size stays the global
    # batch: each of the world's processes trains on batch_size / world of its images a step.
    nproc_per_node: int = field(default=1, metadata=rule(  # processes the train stage starts here (torchrun)
        lambda v: v >= 1, "must be >= 1; 1 trains in one process"))
    # seconds a rendezvous or a collective waits for the other processes before the job stops
    dist_timeout: int = field(default=300, metadata=positive())

    def check(self) -> None:
        for policy in self.diffaug or []:
            require(policy in DIFFAUG_POLICIES, "train.diffaug", policy, f"allowed: {', '.join(DIFFAUG_POLICIES)}")
        check_batch_split(self.batch_size, self.nproc_per_node, "train.nproc_per_node")

    @property
    def resolved_lr_d(self) -> float:
        return self.lr if self.lr_d is None else self.lr_d

    @property
    def resolved_lr_g(self) -> float:
        return self.lr if self.lr_g is None else self.lr_g


@dataclass(frozen=True)
class FidConfig:
    # a name registered in ganops.metrics.extractors
    extractor: str = field(default="classifier", metadata=one_of(extractor_names))
    inception_weights: Optional[str] = None  # file of pytorch-fid's FID Inception weights
    classifier_epochs: int = field(default=3, metadata=positive())
    classifier_width: int = field(default=32, metadata=positive())
    batch_size: int = field(default=250, metadata=positive())


@dataclass(frozen=True)
class EvaluateConfig:
    samples: int = field(default=5000, metadata=at_least(2))
    kid_subsets: int = field(default=50, metadata=positive())
    kid_subset_size: int = field(default=1000, metadata=at_least(2))


@dataclass(frozen=True)
class TrackingConfig:
    enabled: bool = True
    uri: str = field(default="sqlite:///mlruns/mlflow.db", metadata=rule(
        lambda v: v.startswith(TRACKING_SCHEMES),
        "allowed: sqlite:///<file>, http(s)://<server>, postgresql://..., mysql://..., databricks, file:<folder>"))
    artifact_root: str = "mlruns/artifacts"
    experiment: Optional[str] = None  # null: ganops-<dataset>
    log_model: bool = True


@dataclass(frozen=True)
class TuneConfig:
    n_trials: int = field(default=4, metadata=positive())
    timeout: Optional[int] = field(default=None, metadata=rule(  # seconds; null: no limit
        lambda v: v is None or v > 0, "must be > 0 seconds or null"))
    epochs: int = field(default=3, metadata=positive())
    eval_every: int = field(default=1, metadata=positive())
    eval_samples: int = field(default=1000, metadata=at_least(2))
    sampler_seed: int = 0
    pruner: Literal["median", "hyperband", "none"] = "median"
    storage: str = "sqlite:///results/tune/study.db"
    study_name: str = "ganops-tune"
    lr_min: float = 5e-5
    lr_max: float = 1e-3
    beta1_min: float = 0.3
    beta1_max: float = 0.9
    ngf_choices: list[int] = field(default_factory=lambda: [16, 32, 64])
    ndf_choices: list[int] = field(default_factory=lambda: [16, 32, 64])
    # switches the trials also vary (loss, ema, diffaug, ttur: lr_d and lr_g apart); null: none
    search: Optional[list[Literal["loss", "ema", "diffaug", "ttur"]]] = None
    loss_choices: list[str] = field(default_factory=lambda: list(LOSS_NAMES))
    ema_choices: list[float] = field(default_factory=lambda: [0.0, 0.999])  # 0: no average
    # DiffAugment policies joined by commas, or none
    diffaug_choices: list[str] = field(default_factory=lambda: [NO_DIFFAUG, "translation", "translation,cutout"])
    heartbeat_interval: int = field(default=60, metadata=positive())
    max_retry: int = field(default=2, metadata=at_least(0))
    # worker processes on the shared storage (one GPU each, or a share of the CPU cores)
    workers: int = field(default=1, metadata=rule(lambda v: v >= 1, "must be >= 1 worker process"))

    def check(self) -> None:
        require(0 < self.lr_min < self.lr_max < 1, "tune.lr_min/lr_max", (self.lr_min, self.lr_max),
                "need 0 < lr_min < lr_max < 1")
        require(0 <= self.beta1_min < self.beta1_max < 1, "tune.beta1_min/beta1_max",
                (self.beta1_min, self.beta1_max), "need 0 <= beta1_min < beta1_max < 1")
        for key, choices in (("tune.ngf_choices", self.ngf_choices), ("tune.ndf_choices", self.ndf_choices)):
            for value in choices:
                require(_power_of_two(value), key, value, "each must be a power of two")
        require(len(set(self.search or [])) == len(self.search or []), "tune.search", self.search,
                f"each switch at most once; allowed: {', '.join(TUNE_SWITCHES)}")
        for loss in self.loss_choices:
            require(loss in LOSS_NAMES, "tune.loss_choices", loss, f"allowed: {', '.join(LOSS_NAMES)}")
        for decay in self.ema_choices:
            require(0 <= decay < 1, "tune.ema_choices", decay, "each must be in [0, 1); 0 turns the average off")
        for choice in self.diffaug_choices:
            for policy in diffaug_policies(choice) or []:
                require(policy in DIFFAUG_POLICIES, "tune.diffaug_choices", choice,
                        f"each is {NO_DIFFAUG} or policies joined by commas, from {', '.join(DIFFAUG_POLICIES)}")
        require(self.workers <= self.n_trials, "tune.workers", self.workers,
                f"must be at most tune.n_trials ({self.n_trials}): each worker runs at least one trial")


@dataclass(frozen=True)
class Config:
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    fid: FidConfig = field(default_factory=FidConfig)
    evaluate: EvaluateConfig = field(default_factory=EvaluateConfig)
    tracking: TrackingConfig = field(default_factory=TrackingConfig)
    tune: TuneConfig = field(default_factory=TuneConfig)

    def check(self) -> None:
        """Rules that span sections."""
        channels = self.data.resolved_channels
        if "color" in (self.train.diffaug or []):
            require(channels == 3, "train.diffaug", "color",
                    f"needs 3 channels, data has {channels}; use translation, cutout")
        if "diffaug" in (self.tune.search or []):
            for choice in self.tune.diffaug_choices:
                require(channels == 3 or "color" not in (diffaug_policies(choice) or []), "tune.diffaug_choices",
                        choice, f"color needs 3 channels, data has {channels}; use translation, cutout")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def replace(self, **sections: Any) -> "Config":
        """A copy with whole sections or `section={key: value}` updates, validated again."""
        raw = self.to_dict()
        for name, update in sections.items():
            if dataclasses.is_dataclass(update):
                update = dataclasses.asdict(update)
            raw[name] = {**raw[name], **update}
        return from_dict(raw)


# ---------------------------------------------------------------------------------------------------
# Loading

def load_config(path: str | Path = "params.yaml") -> Config:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"params file not found: {path}")
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path} is not valid YAML: {yaml_problem(exc)}") from exc
    if not isinstance(raw, dict):
        raise ConfigError(f"{path} must hold a mapping of sections, got {type(raw).__name__}")
    return from_dict(raw, require_all=True)


def from_dict(raw: dict[str, Any], require_all: bool = False) -> Config:
    """Build and validate a Config. With `require_all`, every key must be present (a params file)."""
    sections = typing.get_type_hints(Config)
    reject_unknown(raw, sections, where="params")
    built = {}
    for name, cls in sections.items():
        values = raw.get(name)
        if values is None:
            if require_all:
                raise ConfigError(f"missing params section '{name}' (expected keys: {keys(cls)})")
            values = {}
        if not isinstance(values, dict):
            raise ConfigError(f"params section '{name}' must be a mapping, got {values!r}")
        built[name] = build_section(name, cls, values, require_all)
    for name, section in built.items():
        validate_section(name, section)
    config = Config(**built)
    config.check()
    return config
