"""The search space: which values a trial changes in the base config, and how they map onto params.yaml.

Always the learning rate, Adam's beta1 and the channel widths; `tune.search` adds switches: the loss,
the generator's weight average (EMA), the DiffAugment policy, and TTUR (separate learning rates for the
discriminator and the generator in place of the shared one).
"""

from __future__ import annotations

from typing import Any

import optuna

from ganops.config import Config, TuneConfig, diffaug_policies
from ganops.errors import GanopsError


def suggest(trial: optuna.Trial, tune: TuneConfig) -> dict[str, Any]:
    """The searched values by Optuna parameter name; a retried or enqueued trial gets its fixed values back."""
    search = tune.search or []
    try:
        if "ttur" in search:
            values: dict[str, Any] = {name: trial.suggest_float(name, tune.lr_min, tune.lr_max, log=True)
                                      for name in ("lr_d", "lr_g")}
        else:
            values = {"lr": trial.suggest_float("lr", tune.lr_min, tune.lr_max, log=True)}
        values["beta1"] = trial.suggest_float("beta1", tune.beta1_min, tune.beta1_max)
        values["ngf"] = trial.suggest_categorical("ngf", list(tune.ngf_choices))
        values["ndf"] = trial.suggest_categorical("ndf", list(tune.ndf_choices))
        choices = {"loss": tune.loss_choices, "ema": tune.ema_choices, "diffaug": tune.diffaug_choices}
        for name in ("loss", "ema", "diffaug"):
            if name in search:
                values[name] = trial.suggest_categorical(name, list(choices[name]))
        return values
    except ValueError as exc:  # Optuna refuses a search space that differs from the study's earlier trials
        raise GanopsError(f"the search space in params tune differs from the earlier trials of study "
                          f"'{tune.study_name}' ({exc}); keep it, or start a new study with another "
                          f"tune.study_name") from exc


def as_params(values: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Searched values as params.yaml sections: what best_params.yaml holds and Config.replace takes.

    A searched shared learning rate clears lr_d/lr_g, so that it is the rate both networks train with.
    """
    if "lr_d" in values:
        train: dict[str, Any] = {"lr_d": float(values["lr_d"]), "lr_g": float(values["lr_g"])}
    else:
        train = {"lr": float(values["lr"]), "lr_d": None, "lr_g": None}
    train["beta1"] = float(values["beta1"])
    if "loss" in values:
        train["loss"] = str(values["loss"])
    if "ema" in values:
        train["ema"] = float(values["ema"])
    if "diffaug" in values:
        train["diffaug"] = diffaug_policies(str(values["diffaug"]))
    return {"model": {"ngf": int(values["ngf"]), "ndf": int(values["ndf"])}, "train": train}


def describe(values: dict[str, Any]) -> str:
    """A trial's values for its run name: lr2e-04-b0.50-ngf32-ndf32[-hinge][-ema0.999][-translation]."""
    rates = (f"lrd{values['lr_d']:.2g}-lrg{values['lr_g']:.2g}" if "lr_d" in values else f"lr{values['lr']:.2g}")
    parts = [rates, f"b{values['beta1']:.2f}", f"ngf{values['ngf']}", f"ndf{values['ndf']}"]
    if "loss" in values:
        parts.append(str(values["loss"]))
    if "ema" in values:
        parts.append(f"ema{values['ema']:g}")
    if "diffaug" in values:
        parts.append(f"aug-{str(values['diffaug']).replace(',', '+')}")
    return "-".join(parts)


def trial_config(base: Config, values: dict[str, Any]) -> Config:
    """The base config with the trial's values and the tune section's (shorter) training schedule."""
    params = as_params(values)
    tune = base.tune
    schedule = {"epochs": tune.epochs, "eval_every": tune.eval_every, "eval_samples": tune.eval_samples}
    return base.replace(model=params["model"], train={**params["train"], **schedule})
