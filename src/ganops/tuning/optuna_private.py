"""Every use of Optuna's private API, in one place, for the Optuna version they were read against.

Optuna offers no public way to reseed TPE per trial, to read a live trial's system attrs, or to give a
non-RDB storage a heartbeat. When Optuna is upgraded, tests/unit/test_optuna_private.py fails on the
version check: re-read each hook below against the new source, then bump OPTUNA_VERSION_WRITTEN_FOR.
"""

from __future__ import annotations

from typing import Optional

import optuna
from optuna.storages import JournalStorage, RetryHeartbeatStaleTrialCallback
from optuna.storages._heartbeat import BaseHeartbeat  # private module: the heartbeat interface of storages
from optuna.trial import FrozenTrial

OPTUNA_VERSION_WRITTEN_FOR = "5.0.0"


def reseed_tpe(sampler: optuna.samplers.TPESampler, seed: int) -> None:
    """Reseed TPE's own candidate draws and those of its random start (the first n_startup_trials)."""
    sampler._rng.rng.seed(seed)
    sampler._random_sampler._rng.rng.seed(seed)


def retried_trial_number(trial: optuna.Trial) -> Optional[int]:
    """The trial this one retries (RetryHeartbeatStaleTrialCallback's system attr), if any."""
    from ganops.tuning.storage import experimental_features  # storage builds on this module

    frozen = trial.study._storage.get_trial(trial._trial_id)  # a live Trial exposes no system attrs
    with experimental_features():
        return RetryHeartbeatStaleTrialCallback.retried_trial_number(frozen)


def storage_trial_id(trial: FrozenTrial) -> int:
    """The storage's id of a trial (what storage methods take), as opposed to its study-wide number."""
    return trial._trial_id


class JournalHeartbeatBase(JournalStorage, BaseHeartbeat):
    """A journal storage that Optuna's heartbeat machinery (`fail_stale_trials`, `optimize`) accepts.

    Optuna finds stale trials through the private `_get_stale_trial_ids`; subclasses answer the public
    `stale_trial_ids` instead, so the private name lives only here.
    """

    def stale_trial_ids(self, study_id: int) -> list[int]:
        raise NotImplementedError

    def _get_stale_trial_ids(self, study_id: int) -> list[int]:
        return self.stale_trial_ids(study_id)
