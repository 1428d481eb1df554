"""The study <-> tracker mapping: one parent run per invocation, one child run per trial.

Everything goes through the `Tracker` protocol; which tracking library stores the runs is not this
module's business.
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Optional, Sequence

import optuna
import torch
from optuna.trial import TrialState

from ganops.config import Config
from ganops.errors import one_line
from ganops.tracking import TRAINING_PARAMS, RunStatus, Tracker, flatten, run_tags, stage_params
from ganops.tracking.callback import TrackingCallback
from ganops.tuning.objective import TRACKER_RUN_ATTR
from ganops.tuning.optuna_private import retried_trial_number
from ganops.tuning.space import as_params, describe
from ganops.tuning.storage import redact_url

if TYPE_CHECKING:
    from ganops.tuning.results import StudySummary

DEAD_WORKER_REASON = "worker died (heartbeat)"
# A trial run's `state` tag carries Optuna's name of how the trial ended.
TRIAL_STATE_TAG = {RunStatus.FINISHED: "COMPLETE", RunStatus.PRUNED: "PRUNED", RunStatus.FAILED: "FAIL"}


class StudyTracker:
    """Maps a study onto tracked runs.

    The parent run stands for this invocation (`study-<name>`, tags study_name and storage) and ends
    with the study's best FID, best params, trials.csv, best_params.yaml and plots. Each trial is a
    child run holding the params a training run reads, the `fid` curve (its last point is the trial's value)
    and a `state` tag; it ends FINISHED (complete, or pruned with `state` PRUNED and `pruned_reason`) or FAILED.
    """

    def __init__(self, tracker: Tracker, config: Config, device: torch.device, parent_run_id: Optional[str] = None):
        """A new parent run, or with `parent_run_id` the supervisor's (a worker of `--workers N`)."""
        self.tracker = tracker
        self.trial_tags = run_tags(config, "tune", device, study_name=config.tune.study_name)
        self.parent_run_id = parent_run_id or tracker.start_run(
            f"study-{config.tune.study_name}", flatten({"tune": asdict(config.tune)}),
            {**self.trial_tags, "storage": redact_url(config.tune.storage)})

    def trial_logger(self, trial: optuna.Trial, config: Config) -> TrackingCallback:
        tags = {**self.trial_tags, "trial_number": str(trial.number), "state": "RUNNING"}
        retried = retried_trial_number(trial)
        if retried is not None:
            tags["retry_of_trial"] = str(retried)
        name = f"trial-{trial.number}-{describe(trial.params)}"
        return TrackingCallback(self.tracker, name, stage_params(config, TRAINING_PARAMS), tags,
                                parent_run_id=self.parent_run_id)

    def close_trial_run(self, run_id: str, status: RunStatus, reason: Optional[str] = None) -> None:
        """The trial's FID is already the last point of its `fid` curve, the column it shares with training runs."""
        tags = {"state": TRIAL_STATE_TAG[status]}
        if reason:
            tags["pruned_reason" if status == RunStatus.PRUNED else "failure_reason"] = reason[:5000]
        self.tracker.set_tags(run_id, tags)
        # A failed trial's run was already ended by its TrackingCallback (FAILED, or KILLED on Ctrl-C): keep that.
        if status != RunStatus.FAILED or self.tracker.run_status(run_id) == RunStatus.RUNNING:
            self.tracker.finish_run(run_id, status)

    def close_dead_trial_runs(self, study: optuna.Study) -> list[int]:
        """End as FAILED the runs of failed trials that the tracker still shows RUNNING (their worker died)."""
        closed = []
        for trial in study.get_trials(deepcopy=False, states=(TrialState.FAIL,)):
            run_id = trial.user_attrs.get(TRACKER_RUN_ATTR)
            if run_id and self.tracker.run_status(run_id) == RunStatus.RUNNING:
                self.tracker.set_tags(run_id, {"state": TRIAL_STATE_TAG[RunStatus.FAILED]})
                self.tracker.finish_run(run_id, RunStatus.FAILED, DEAD_WORKER_REASON)
                closed.append(trial.number)
        return closed

    def finish(self, summary: "StudySummary", files: Sequence[Path]) -> None:
        tracker, run_id = self.tracker, self.parent_run_id
        if summary.best is not None:
            best = summary.best
            tracker.log_metrics(run_id, {"best_fid": best.value, "best_trial": best.number})
            tracker.log_params(run_id, flatten(as_params(best.params), prefix="best."))
        tracker.log_metrics(run_id, {f"trials_{k}": v for k, v in summary.study_counts.items()})
        tracker.log_artifacts(run_id, files)
        tracker.finish_run(run_id)

    def abort(self, error: BaseException) -> None:
        status = RunStatus.KILLED if isinstance(error, KeyboardInterrupt) else RunStatus.FAILED
        self.tracker.finish_run(self.parent_run_id, status, one_line(error, limit=5000))
