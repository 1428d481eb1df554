"""results/tune/best_params.yaml: a study's best values as params.yaml sections, and the trial they came from.

The tune stage writes it; the train stage reads it with `train.from_study: true`. The values are plain
params.yaml sections (the file merges into params.yaml as is); the study and trial are in the header
comment, which this module both writes and parses, so the two cannot drift apart.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from ganops.errors import GanopsError

if TYPE_CHECKING:
    from ganops.config import Config

FILE_NAME = "best_params.yaml"
_HEADER = re.compile(r"^# Best trial (\d+) of Optuna study '(.*)': FID (\S+)$", re.MULTILINE)


@dataclass(frozen=True)
class BestParams:
    sections: dict[str, dict[str, Any]]  # {"model": {...}, "train": {...}}
    study_name: str
    trial_number: int

    @property
    def tags(self) -> dict[str, str]:
        """What a run trained with these values is tagged with: the study and trial it came from."""
        return {"from_study": self.study_name, "from_trial": str(self.trial_number)}


def best_params_text(sections: dict[str, dict[str, Any]], study_name: str, trial_number: int, value: float) -> str:
    header = (f"# Best trial {trial_number} of Optuna study '{study_name}': FID {value:.4f}\n"
              f"# Merge into params.yaml (the model and train keys below), or train with them: "
              f"`dvc exp run -S train.from_study=true`.\n")
    return header + yaml.safe_dump(sections, sort_keys=False)


def read_best_params(path: Path) -> BestParams:
    if not path.is_file():
        raise GanopsError(f"train.from_study is true but {path} does not exist; run the tune stage first "
                          f"(`dvc repro tune`), or set train.from_study: false")
    text = path.read_text()
    header = _HEADER.search(text)
    try:
        sections = yaml.safe_load(text)
    except yaml.YAMLError:
        sections = None
    if header is None or not isinstance(sections, dict) or set(sections) - {"model", "train"}:
        raise GanopsError(f"{path} is not a best_params.yaml written by the tune stage (expected its header "
                          f"line and model/train sections); run `dvc repro -f tune`")
    return BestParams(sections, header.group(2), int(header.group(1)))


def apply_best_params(config: "Config", path: Path) -> tuple["Config", BestParams]:
    """The config with the study's best values in place of its own (everything else unchanged)."""
    best = read_best_params(path)
    return config.replace(**best.sections), best
