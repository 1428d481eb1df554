"""Sampler and pruner: how the next trial's values are chosen, and when a trial is given up on."""

from __future__ import annotations

import optuna
from optuna.trial import FrozenTrial

from ganops.config import TuneConfig
from ganops.tuning.optuna_private import reseed_tpe


class TrialSeededTPESampler(optuna.samplers.TPESampler):
    """TPE whose random draws for trial n depend only on (seed, n) and the finished trials.

    A plain TPESampler(seed=s) restarts the same random sequence in every process: a second invocation
    would replay the first one's opening trials, and two workers would try identical values side by
    side. Trial numbers are unique within a study, so seeding by them keeps a single worker's search
    reproducible and every trial distinct.
    """

    def __init__(self, seed: int):
        super().__init__(seed=seed)
        self._base_seed = seed

    def before_trial(self, study: optuna.Study, trial: FrozenTrial) -> None:
        reseed_tpe(self, (self._base_seed * 1_000_003 + trial.number) % 2**32)
        super().before_trial(study, trial)


def make_sampler(tune: TuneConfig) -> optuna.samplers.BaseSampler:
    return TrialSeededTPESampler(tune.sampler_seed)


def make_pruner(tune: TuneConfig) -> optuna.pruners.BasePruner:
    """Pruners set for a handful of short trials (steps are epochs, starting at 1)."""
    if tune.pruner == "median":
        # Two finished trials give a median to compare with; the first third of a trial's epochs is
        # warm-up, since a GAN's early FID says little (3 epochs: pruning from epoch 2; 2 epochs: from 1).
        return optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=tune.epochs // 3 + 1)
    if tune.pruner == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=1, max_resource=tune.epochs, reduction_factor=3)
    return optuna.pruners.NopPruner()
