"""Several tune workers started at one moment on a new study storage: all join the one study, none dies.

The workers race to create the storage's schema and the study (Optuna leaves callers to tolerate that
race; ganops.races retries it). PostgreSQL is not in the suite yet, so only sqlite and the journal file.
"""

from __future__ import annotations

import pytest
import yaml
from optuna.trial import TrialState

from ganops import tuning
from ganops.config import from_dict
from tests.integration.pipeline_repo import build_fid_inputs
from tests.integration.test_tune import TINY, finish, start_tune

WORKERS = 4
TRIALS_EACH = 1


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    root = tmp_path_factory.mktemp("stores-project")
    build_fid_inputs(from_dict(TINY), root)
    return root


@pytest.mark.slow
@pytest.mark.parametrize("storage", ["sqlite:///results/tune/study.db", "journal:results/tune/study.log"])
def test_workers_started_together_on_a_new_storage_all_join_one_study(project, tmp_path, monkeypatch, storage):
    for name in ("data", "models"):
        (tmp_path / name).symlink_to(project / name)
    config = from_dict(TINY).replace(tracking={"enabled": False},
                                     tune={"storage": storage, "n_trials": TRIALS_EACH, "epochs": 1})
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump(config.to_dict(), sort_keys=False))

    workers = [start_tune(tmp_path, params) for _ in range(WORKERS)]
    outputs = [finish(worker, timeout=240) for worker in workers]  # each asserts exit 0

    monkeypatch.chdir(tmp_path)
    trials = tuning.open_study(config.tune).trials
    assert len(trials) == WORKERS * TRIALS_EACH, outputs
    assert all(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in trials), outputs
