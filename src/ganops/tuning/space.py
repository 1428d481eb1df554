"""The search space: which values a trial changes in the base config, and how they map onto params.yaml."""

from __future__ import annotations

from typing import Any

import optuna

from ganops.config import Config, TuneConfig
from ganops.errors import GanopsError


def suggest(trial: optuna.Trial, tune: TuneConfig) -> dict[str, Any]:
    """The four searched values; a retried or enqueued trial gets its fixed values back."""
    try:
        return {
            "lr": trial.suggest_float("lr", tune.lr_min, tune.lr_max, log=True),
            "beta1": trial.suggest_float("beta1", tune.beta1_min, tune.beta1_max),
            "ngf": trial.suggest_categorical("ngf", list(tune.ngf_choices)),
            "ndf": trial.suggest_categorical("ndf", list(tune.ndf_choices)),
        }
    except ValueError as exc:  # Optuna refuses a search space that differs from the study's earlier trials
        raise GanopsError(f"the search space in params tune differs from the earlier trials of study "
                          f"'{tune.study_name}' ({exc}); keep it, or start a new study with another "
                          f"tune.study_name") from exc


def as_params(values: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Searched values as params.yaml sections: what best_params.yaml holds and Config.replace takes."""
    return {"model": {"ngf": int(values["ngf"]), "ndf": int(values["ndf"])},
            "train": {"lr": float(values["lr"]), "beta1": float(values["beta1"])}}


def trial_config(base: Config, values: dict[str, Any]) -> Config:
    """The base config with the trial's values and the tune section's (shorter) training schedule."""
    params = as_params(values)
    tune = base.tune
    schedule = {"epochs": tune.epochs, "eval_every": tune.eval_every, "eval_samples": tune.eval_samples}
    return base.replace(model=params["model"], train={**params["train"], **schedule})
