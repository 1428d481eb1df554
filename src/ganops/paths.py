"""Where every output lives: one place for the stages, the tests and dvc.yaml's templated names."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ganops.config import Config


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
