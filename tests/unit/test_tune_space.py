"""tune.search: which switches a trial varies, and how its values become params (best_params.yaml, from_study)."""

from __future__ import annotations

import optuna
import pytest

from ganops.best_params import apply_best_params, best_params_text
from ganops.config import from_dict
from ganops.tuning.space import as_params, describe, suggest, trial_config

CHOICES = {"loss_choices": ["hinge", "lsgan"], "ema_choices": [0.0, 0.999],
           "diffaug_choices": ["none", "translation,cutout"], "ngf_choices": [8], "ndf_choices": [16]}


def _trials(tune, n):
    """n trials of a real in-memory study (random sampler, so the categorical choices all get drawn)."""
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    values = []
    for _ in range(n):
        trial = study.ask()
        values.append(suggest(trial, tune))
        study.tell(trial, 1.0)
    return study, values


def test_without_search_trials_vary_lr_beta1_and_widths_only():
    base = from_dict({"train": {"lr_d": 3e-4, "loss": "hinge"}, "tune": CHOICES})
    study, values = _trials(base.tune, 2)
    assert set(study.trials[0].params) == {"lr", "beta1", "ngf", "ndf"}
    config = trial_config(base, values[0])
    # The searched lr is what both networks train with; the unsearched switches stay as params.yaml has them.
    assert config.train.resolved_lr_d == config.train.resolved_lr_g == values[0]["lr"]
    assert config.train.loss == "hinge" and config.train.epochs == base.tune.epochs
    assert describe(values[0]).startswith("lr") and "hinge" not in describe(values[0])


def test_searched_switches_reach_the_trial_config_and_best_params(tmp_path):
    base = from_dict({"tune": {**CHOICES, "search": ["loss", "ema", "diffaug", "ttur"]}})
    study, values = _trials(base.tune, 12)
    assert set(study.trials[0].params) == {"lr_d", "lr_g", "beta1", "ngf", "ndf", "loss", "ema", "diffaug"}
    assert {v["loss"] for v in values} == {"hinge", "lsgan"} and {v["ema"] for v in values} == {0.0, 0.999}
    assert {v["diffaug"] for v in values} == {"none", "translation,cutout"}
    for v in values:
        config = trial_config(base, v)
        train = config.train
        assert (train.resolved_lr_d, train.resolved_lr_g) == (v["lr_d"], v["lr_g"]) and train.lr_d != train.lr_g
        assert (train.loss, train.ema) == (v["loss"], v["ema"])
        assert train.diffaug == (None if v["diffaug"] == "none" else ["translation", "cutout"])
    augmented = next(v for v in values if v["diffaug"] != "none")
    assert describe(augmented).endswith("-aug-translation+cutout") and "lrd" in describe(augmented)

    # best_params.yaml -> train.from_study: the switches come back exactly, everything else stays.
    path = tmp_path / "best_params.yaml"
    path.write_text(best_params_text(as_params(augmented), "s", 3, 12.5))
    merged, best = apply_best_params(from_dict({"train": {"epochs": 7}}), path)
    assert merged.train.diffaug == ["translation", "cutout"] and merged.train.loss == augmented["loss"]
    assert merged.train.lr_d == pytest.approx(augmented["lr_d"]) and merged.train.epochs == 7
    assert best.trial_number == 3


def test_a_changed_choice_list_on_an_existing_study_is_one_line():
    from ganops.errors import GanopsError

    study, _ = _trials(from_dict({"tune": {**CHOICES, "search": ["loss"]}}).tune, 1)
    other = from_dict({"tune": {**CHOICES, "search": ["loss"], "loss_choices": ["bce", "hinge"]}}).tune
    with pytest.raises(GanopsError, match="differs from the earlier trials") as info:
        suggest(study.ask(), other)
    assert "\n" not in str(info.value)
