"""Optuna's private API, pinned: an Optuna upgrade fails here first, so the hooks are re-read before use.

Each hook in ganops.tuning.optuna_private is exercised on a real in-memory or journal study.
"""

from __future__ import annotations

import optuna
import pytest
from optuna.storages import RetryHeartbeatStaleTrialCallback
from optuna.storages.journal import JournalFileBackend
from optuna.trial import TrialState

from ganops.tuning import optuna_private
from ganops.tuning.sampling import TrialSeededTPESampler
from ganops.tuning.storage import HeartbeatJournalStorage, experimental_features, fail_dead_trials


def test_optuna_is_the_version_the_private_hooks_were_read_against():
    assert optuna.__version__ == optuna_private.OPTUNA_VERSION_WRITTEN_FOR, (
        "Optuna changed: re-read every hook in ganops/tuning/optuna_private.py against the new source, "
        "then update OPTUNA_VERSION_WRITTEN_FOR")


def test_reseed_tpe_makes_the_random_start_repeat():
    def first_values(seed):
        sampler = optuna.samplers.TPESampler(seed=0)
        study = optuna.create_study(sampler=sampler)
        optuna_private.reseed_tpe(sampler, seed)
        trial = study.ask()
        return trial.suggest_float("x", 0.0, 1.0)

    assert first_values(7) == first_values(7) != first_values(8)


def test_trial_seeded_sampler_gives_trial_n_the_same_values_in_every_process():
    def values(n_trials):
        study = optuna.create_study(sampler=TrialSeededTPESampler(3))
        study.optimize(lambda t: t.suggest_float("x", 0.0, 1.0), n_trials=n_trials)
        return [t.params["x"] for t in study.trials]

    first, second = values(3), values(3)
    assert first == second and len(set(first)) == 3


@pytest.mark.filterwarnings("ignore:Heartbeat of storage")
def test_retried_trial_number_reads_the_live_trials_system_attrs(tmp_path):
    with experimental_features():
        storage = HeartbeatJournalStorage(JournalFileBackend(str(tmp_path / "j.log")), 1, 0,
                                          RetryHeartbeatStaleTrialCallback(max_retry=1))
    study = optuna.create_study(storage=storage)
    dead = study.ask()
    dead.suggest_float("x", 0.0, 1.0)
    storage.record_heartbeat(optuna_private.storage_trial_id(study.trials[0]))
    assert optuna_private.retried_trial_number(dead) is None
    fail_dead_trials(study)  # grace period 0: the trial that beat once is stale; the retry is queued
    states = [t.state for t in study.trials]
    assert states == [TrialState.FAIL, TrialState.WAITING]
    retry = study.ask()
    assert optuna_private.retried_trial_number(retry) == dead.number


def test_storage_trial_id_is_what_storage_methods_take():
    study = optuna.create_study()
    study.ask()
    frozen = study.trials[0]
    assert study._storage.get_trial(optuna_private.storage_trial_id(frozen)).number == frozen.number


def test_optuna_finds_stale_trials_through_the_public_stale_trial_ids(tmp_path):
    asked = []

    class Recording(HeartbeatJournalStorage):
        def stale_trial_ids(self, study_id):
            asked.append(study_id)
            return []

    study = optuna.create_study(storage=Recording(JournalFileBackend(str(tmp_path / "j.log")), 60, 120))
    fail_dead_trials(study)
    assert len(asked) == 1
