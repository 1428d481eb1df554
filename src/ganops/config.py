"""The typed configuration: one dataclass per params.yaml section, loaded and validated once.

No other module reads params.yaml. Every rule a value must follow lives here, and every error names
the key, the bad value and what is allowed.
"""

from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Optional

import yaml

from ganops.errors import ConfigError

DATASETS = ("mnist-5k", "mnist", "fashion-mnist", "cifar10", "url", "folder")
IMAGE_SIZES = (32, 64, 128)
TRACKING_SCHEMES = ("sqlite:///", "http://", "https://", "postgresql", "mysql", "databricks", "file:")
# Per data set: (channels, image size) used when params leave them null.
DATASET_DEFAULTS = {
    "mnist-5k": (1, 32),
    "mnist": (1, 32),
    "fashion-mnist": (1, 32),
    "cifar10": (3, 32),
    "url": (3, 64),
    "folder": (3, 64),
}


@dataclass(frozen=True)
class DataConfig:
    dataset: Literal["mnist-5k", "mnist", "fashion-mnist", "cifar10", "url", "folder"] = "mnist-5k"
    channels: Optional[int] = None  # null: the data set's default (1 for MNIST-like, 3 otherwise)
    image_size: Optional[int] = None  # null: the data set's default (32, or 64 for image folders)
    limit: int = 0  # keep at most this many images (0: all), for quick experiments
    shuffle_seed: int = 0
    center_crop: bool = False  # square center crop before resizing (faces, as the FFHQ tutorial does)
    mirror: Optional[str] = None  # base URL replacing torchvision's mirrors for mnist/fashion-mnist/cifar10
    url: Optional[str] = None  # archive of images, for dataset: url
    sha256: Optional[str] = None  # the archive's checksum, required with dataset: url
    folder: Optional[str] = None  # local folder of images, for dataset: folder
    max_extract_mb: int = 20000  # refuse archives that would expand beyond this
    download_retries: int = 3

    @property
    def resolved_channels(self) -> int:
        return self.channels if self.channels is not None else DATASET_DEFAULTS[self.dataset][0]

    @property
    def resolved_image_size(self) -> int:
        return self.image_size if self.image_size is not None else DATASET_DEFAULTS[self.dataset][1]


@dataclass(frozen=True)
class ModelConfig:
    arch: Literal["dcgan", "mlp"] = "dcgan"
    nz: int = 100
    ngf: int = 64
    ndf: int = 64
    mlp_hidden: int = 256
    spectral_norm: bool = False  # spectral normalisation of the discriminator's layers (Miyato et al. 2018)


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = 20
    batch_size: int = 128
    lr: float = 2e-4
    beta1: float = 0.5
    beta2: float = 0.999
    seed: int = 42
    label_smoothing: float = 0.0  # one-sided: real targets become 1 - label_smoothing
    g_steps: int = 1  # generator steps per discriminator step
    hflip: bool = False
    log_every: int = 10  # steps between metric logs
    checkpoint_every: int = 1  # epochs between checkpoints
    eval_every: int = 5  # epochs between FID evaluations (the last epoch is always evaluated)
    eval_samples: int = 2000
    sample_grid: int = 64  # images in the fixed-noise grid
    device: Literal["auto", "cpu", "cuda"] = "auto"
    amp: bool = False  # bf16 autocast, on CUDA or the CPU
    channels_last: bool = True
    loss: str = "bce"  # bce (non-saturating) | hinge | lsgan | wgan-gp
    gp_weight: float = 10.0  # gradient-penalty weight, for loss: wgan-gp
    lr_d: Optional[float] = None  # discriminator learning rate (TTUR); null: lr
    lr_g: Optional[float] = None  # generator learning rate; null: lr
    ema: float = 0.0  # decay of the generator's weight average used for samples, FID and the saved model; 0: off
    diffaug: Optional[list[str]] = None  # DiffAugment policies: translation, cutout, color (3 channels); null: off

    @property
    def resolved_lr_d(self) -> float:
        return self.lr if self.lr_d is None else self.lr_d

    @property
    def resolved_lr_g(self) -> float:
        return self.lr if self.lr_g is None else self.lr_g


@dataclass(frozen=True)
class FidConfig:
    extractor: Literal["classifier", "inception"] = "classifier"
    inception_weights: Optional[str] = None  # file of pytorch-fid's FID Inception weights
    classifier_epochs: int = 3
    classifier_width: int = 32
    batch_size: int = 250


@dataclass(frozen=True)
class EvaluateConfig:
    samples: int = 5000
    kid_subsets: int = 50
    kid_subset_size: int = 1000


@dataclass(frozen=True)
class TrackingConfig:
    enabled: bool = True
    uri: str = "sqlite:///mlruns/mlflow.db"
    artifact_root: str = "mlruns/artifacts"
    experiment: Optional[str] = None  # null: ganops-<dataset>
    log_model: bool = True


@dataclass(frozen=True)
class TuneConfig:
    n_trials: int = 4
    timeout: Optional[int] = None  # seconds; null: no limit
    epochs: int = 3
    eval_every: int = 1
    eval_samples: int = 1000
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
    heartbeat_interval: int = 60
    max_retry: int = 2


@dataclass(frozen=True)
class Config:
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    fid: FidConfig = field(default_factory=FidConfig)
    evaluate: EvaluateConfig = field(default_factory=EvaluateConfig)
    tracking: TrackingConfig = field(default_factory=TrackingConfig)
    tune: TuneConfig = field(default_factory=TuneConfig)

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
# Paths shared by the stages and dvc.yaml (dvc.yaml templates the same names from params.yaml).

@dataclass(frozen=True)
class Paths:
    root: Path
    dataset: str
    extractor: str

    @property
    def raw_dir(self) -> Path:
        return self.root / "data" / "raw" / self.dataset

    @property
    def prepared(self) -> Path:
        return self.root / "data" / "prepared" / f"{self.dataset}.pt"

    @property
    def fid_stats(self) -> Path:
        return self.root / "data" / "fid" / f"{self.dataset}-{self.extractor}.npz"

    @property
    def feature_net(self) -> Path:
        return self.root / "models" / "feature_net.pt"

    @property
    def checkpoints(self) -> Path:
        return self.root / "models" / "checkpoints"

    @property
    def generator(self) -> Path:
        return self.root / "models" / "generator.pt"

    @property
    def run_info(self) -> Path:
        return self.root / "models" / "run.json"

    @property
    def metrics_dir(self) -> Path:
        return self.root / "metrics"

    @property
    def plots_dir(self) -> Path:
        return self.root / "plots"

    @property
    def tune_dir(self) -> Path:
        return self.root / "results" / "tune"


def paths_for(config: Config, root: str | Path = ".") -> Paths:
    return Paths(Path(root), config.data.dataset, config.fid.extractor)


# ---------------------------------------------------------------------------------------------------
# Loading and validation

def load_config(path: str | Path = "params.yaml") -> Config:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"params file not found: {path}")
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path} is not valid YAML: {_yaml_problem(exc)}") from exc
    if not isinstance(raw, dict):
        raise ConfigError(f"{path} must hold a mapping of sections, got {type(raw).__name__}")
    return from_dict(raw, require_all=True)


def _yaml_problem(exc: yaml.YAMLError) -> str:
    """What PyYAML found wrong and where (line and column counted from 1), on one line."""
    problem = getattr(exc, "problem", None) or str(exc).strip().splitlines()[0]
    mark = getattr(exc, "problem_mark", None)
    return f"{problem} at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else problem


def from_dict(raw: dict[str, Any], require_all: bool = False) -> Config:
    """Build and validate a Config. With `require_all`, every key must be present (a params file)."""
    sections = {f.name: f.type for f in dataclasses.fields(Config)}
    _reject_unknown(raw, sections, where="params")
    built = {}
    hints = typing.get_type_hints(Config)
    for name in sections:
        cls = hints[name]
        values = raw.get(name)
        if values is None:
            if require_all:
                raise ConfigError(f"missing params section '{name}' (expected keys: {_keys(cls)})")
            values = {}
        if not isinstance(values, dict):
            raise ConfigError(f"params section '{name}' must be a mapping, got {values!r}")
        built[name] = _build_section(name, cls, values, require_all)
    config = Config(**built)
    _validate(config)
    return config


def _keys(cls: type) -> str:
    return ", ".join(f.name for f in dataclasses.fields(cls))


def _reject_unknown(values: dict[str, Any], allowed: dict[str, Any], where: str) -> None:
    for key in values:
        if key not in allowed:
            close = difflib.get_close_matches(str(key), list(allowed), n=1)
            hint = f"; did you mean '{close[0]}'?" if close else ""
            raise ConfigError(f"unknown key '{where}.{key}'{hint} (allowed: {', '.join(allowed)})")


def _build_section(name: str, cls: type, values: dict[str, Any], require_all: bool) -> Any:
    hints = typing.get_type_hints(cls)
    _reject_unknown(values, hints, where=name)
    kwargs = {}
    for f in dataclasses.fields(cls):
        key = f"{name}.{f.name}"
        if f.name not in values:
            if require_all:
                raise ConfigError(f"missing params key '{key}'")
            continue
        kwargs[f.name] = _check_type(key, values[f.name], hints[f.name])
    return cls(**kwargs)


def _check_type(key: str, value: Any, hint: Any) -> Any:
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        return _check_type(key, value, inner[0])
    if origin is Literal:
        if value not in args:
            raise ConfigError(f"{key}: {value!r} is not allowed (allowed: {', '.join(map(str, args))})")
        return value
    if origin is list:
        if not isinstance(value, list) or not value:
            raise ConfigError(f"{key}: {value!r} must be a non-empty list")
        return [_check_type(f"{key}[{i}]", v, args[0]) for i, v in enumerate(value)]
    if hint is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{key}: {value!r} must be true or false")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{key}: {value!r} must be a whole number")
        return value
    if hint is float:
        if isinstance(value, str):  # YAML reads 2e-4 (no dot) as a string
            try:
                value = float(value)
            except ValueError:
                raise ConfigError(f"{key}: {value!r} must be a number") from None
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{key}: {value!r} must be a number")
        return float(value)
    if hint is str:
        if not isinstance(value, str) or not value:
            raise ConfigError(f"{key}: {value!r} must be a non-empty string")
        return value
    raise TypeError(f"unhandled type {hint} for {key}")  # a programming error, not a user's


def _require(ok: bool, key: str, value: Any, allowed: str) -> None:
    if not ok:
        raise ConfigError(f"{key}: {value!r} is not allowed ({allowed})")


def _validate(c: Config) -> None:
    d, m, t, f, e, k = c.data, c.model, c.train, c.fid, c.evaluate, c.tune
    _require(d.channels is None or d.channels in (1, 3), "data.channels", d.channels, "allowed: 1, 3 or null")
    _require(d.image_size is None or d.image_size in IMAGE_SIZES, "data.image_size", d.image_size,
             f"allowed: {', '.join(map(str, IMAGE_SIZES))} or null")
    _require(d.limit >= 0, "data.limit", d.limit, "must be >= 0; 0 keeps every image")
    _require(d.max_extract_mb > 0, "data.max_extract_mb", d.max_extract_mb, "must be > 0")
    _require(d.download_retries >= 0, "data.download_retries", d.download_retries, "must be >= 0")
    if d.dataset == "url":
        _require(bool(d.url), "data.url", d.url, "required when data.dataset is 'url'")
        _require(d.sha256 is not None and len(d.sha256) == 64 and all(ch in "0123456789abcdef" for ch in d.sha256.lower()),
                 "data.sha256", d.sha256, "a 64-character hex sha256 is required when data.dataset is 'url'")
    if d.dataset == "folder":
        _require(bool(d.folder), "data.folder", d.folder, "required when data.dataset is 'folder'")
    for key, value in (("model.nz", m.nz), ("model.ngf", m.ngf), ("model.ndf", m.ndf), ("model.mlp_hidden", m.mlp_hidden)):
        _require(value > 0, key, value, "must be > 0")
    _require(t.epochs > 0, "train.epochs", t.epochs, "must be > 0")
    _require(t.batch_size > 0, "train.batch_size", t.batch_size, "must be > 0")
    _require(t.lr > 0 and t.lr < 1, "train.lr", t.lr, "must be in (0, 1)")
    _require(0 <= t.beta1 < 1, "train.beta1", t.beta1, "must be in [0, 1)")
    _require(0 <= t.beta2 < 1, "train.beta2", t.beta2, "must be in [0, 1)")
    _require(0 <= t.label_smoothing < 0.5, "train.label_smoothing", t.label_smoothing, "must be in [0, 0.5)")
    for key, value in (("train.g_steps", t.g_steps), ("train.log_every", t.log_every),
                       ("train.checkpoint_every", t.checkpoint_every), ("train.eval_every", t.eval_every),
                       ("train.sample_grid", t.sample_grid)):
        _require(value > 0, key, value, "must be > 0")
    _require(t.eval_samples >= 2, "train.eval_samples", t.eval_samples, "must be >= 2")
    _require(f.classifier_epochs > 0, "fid.classifier_epochs", f.classifier_epochs, "must be > 0")
    _require(f.classifier_width > 0, "fid.classifier_width", f.classifier_width, "must be > 0")
    _require(f.batch_size > 0, "fid.batch_size", f.batch_size, "must be > 0")
    _require(e.samples >= 2, "evaluate.samples", e.samples, "must be >= 2")
    _require(e.kid_subsets > 0, "evaluate.kid_subsets", e.kid_subsets, "must be > 0")
    _require(e.kid_subset_size >= 2, "evaluate.kid_subset_size", e.kid_subset_size, "must be >= 2")
    _require(c.tracking.uri.startswith(TRACKING_SCHEMES), "tracking.uri", c.tracking.uri,
             "allowed: sqlite:///<file>, http(s)://<server>, postgresql://..., mysql://..., databricks, file:<folder>")
    _require(k.n_trials > 0, "tune.n_trials", k.n_trials, "must be > 0")
    _require(k.timeout is None or k.timeout > 0, "tune.timeout", k.timeout, "must be > 0 seconds or null")
    _require(k.epochs > 0, "tune.epochs", k.epochs, "must be > 0")
    _require(k.eval_every > 0, "tune.eval_every", k.eval_every, "must be > 0")
    _require(k.eval_samples >= 2, "tune.eval_samples", k.eval_samples, "must be >= 2")
    _require(0 < k.lr_min < k.lr_max < 1, "tune.lr_min/lr_max", (k.lr_min, k.lr_max), "need 0 < lr_min < lr_max < 1")
    _require(0 <= k.beta1_min < k.beta1_max < 1, "tune.beta1_min/beta1_max", (k.beta1_min, k.beta1_max),
             "need 0 <= beta1_min < beta1_max < 1")
    for key, choices in (("tune.ngf_choices", k.ngf_choices), ("tune.ndf_choices", k.ndf_choices)):
        for value in choices:
            _require(value > 0 and value & (value - 1) == 0, key, value, "each must be a power of two")
    _require(k.heartbeat_interval > 0, "tune.heartbeat_interval", k.heartbeat_interval, "must be > 0")
    _require(k.max_retry >= 0, "tune.max_retry", k.max_retry, "must be >= 0")
    _check_generator_extras(c)


# Kept in step with ganops.losses.LOSSES and ganops.augment.POLICIES (this module must not import torch).
LOSS_NAMES = ("bce", "hinge", "lsgan", "wgan-gp")
DIFFAUG_POLICIES = ("translation", "cutout", "color")


def _check_generator_extras(c: Config) -> None:
    """The loss, TTUR, EMA and DiffAugment keys."""
    t = c.train
    _require(t.loss in LOSS_NAMES, "train.loss", t.loss, f"allowed: {', '.join(LOSS_NAMES)}")
    _require(t.gp_weight >= 0, "train.gp_weight", t.gp_weight, "must be >= 0")
    for key, value in (("train.lr_d", t.lr_d), ("train.lr_g", t.lr_g)):
        _require(value is None or 0 < value < 1, key, value, "must be in (0, 1), or null for train.lr")
    _require(0 <= t.ema < 1, "train.ema", t.ema, "must be in [0, 1); 0 turns the average off")
    for policy in t.diffaug or []:
        _require(policy in DIFFAUG_POLICIES, "train.diffaug", policy, f"allowed: {', '.join(DIFFAUG_POLICIES)}")
    if "color" in (t.diffaug or []):
        _require(c.data.resolved_channels == 3, "train.diffaug", "color",
                 f"needs 3 channels, data has {c.data.resolved_channels}; use translation, cutout")
