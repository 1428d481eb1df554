"""The objective: a trial is an ordinary training run (the train stage's Trainer and FID), scored by its FID.

A trial trains `tune.epochs` epochs with the trial's learning rate, Adam beta1 and channel widths. Its
FID after every evaluation goes to the pruner; its final FID is the objective (lower is better).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Optional, Sequence

import optuna
import torch

from ganops.config import Config
from ganops.data.tensorfile import Prepared
from ganops.errors import DivergenceError
from ganops.evaluation import FidReference
from ganops.tracking import RunStatus
from ganops.tracking.callback import StopRun, TrackingCallback
from ganops.training import Callback, Trainer, TrainState
from ganops.tuning.space import suggest, trial_config

if TYPE_CHECKING:
    from ganops.tuning.study_tracking import StudyTracker

TRACKER_RUN_ATTR = "mlflow_run_id"  # trial user attr: the trial's tracked run (name kept for existing studies)
PRUNED_REASON_ATTR = "pruned_reason"  # trial user attr: why a trial was pruned


class PrunedByPruner(StopRun):
    """The pruner gave up on the trial: training stops on purpose, and the objective reports it to Optuna."""


@dataclass
class TrialSetup:
    """What every trial of an invocation shares, loaded once."""

    config: Config
    prepared: Prepared
    reference: FidReference
    device: torch.device


class FidReporter(Callback):
    """Reports each FID to Optuna (step = epoch) and stops a trial the pruner gives up on."""

    def __init__(self, trial: optuna.Trial, pruner_name: str, run_logger: Optional[TrackingCallback] = None):
        self.trial, self.pruner_name, self.run_logger = trial, pruner_name, run_logger

    def on_train_start(self, trainer: Any, state: TrainState) -> None:
        if state.run_id:  # stored at once, so the run of a trial whose worker dies can be found and closed
            self.trial.set_user_attr(TRACKER_RUN_ATTR, state.run_id)

    def on_evaluation(self, state: TrainState, fid: float) -> None:
        if self.run_logger is not None:
            # Trials keep no checkpoint, so nothing resumes: send the curve now, which keeps it when pruned.
            self.run_logger.flush(state)
        self.trial.report(fid, step=state.epoch)
        if self.trial.should_prune():
            raise PrunedByPruner(f"pruned by the {self.pruner_name} pruner at epoch {state.epoch} (FID {fid:.3f})")


class Objective:
    """trial -> final FID of a short training run with the trial's values."""

    def __init__(self, setup: TrialSetup, study_tracker: Optional["StudyTracker"] = None,
                 extra_callbacks: Sequence[Callback] = ()):
        self.setup, self.study_tracker, self.extra_callbacks = setup, study_tracker, list(extra_callbacks)

    def __call__(self, trial: optuna.Trial) -> float:
        setup = self.setup
        values = suggest(trial, setup.config.tune)
        config = trial_config(setup.config, values)
        run_logger = self.study_tracker.trial_logger(trial, config) if self.study_tracker else None
        reporter = FidReporter(trial, setup.config.tune.pruner, run_logger)
        callbacks = [c for c in (run_logger, reporter) if c is not None] + self.extra_callbacks
        fid_fn = setup.reference.fid_function(config.train.eval_samples, config.model.nz, setup.device)
        try:
            trainer = Trainer(config.model, config.train, setup.prepared, setup.device, fid_fn=fid_fn,
                              checkpoint_dir=None, callbacks=callbacks, show_progress=False)
            state = trainer.fit()
        except DivergenceError as error:
            # A learning rate too high for these widths: a result about the search space, not a crash.
            raise self._pruned(trial, run_logger, f"diverged at step {error.step}: {error}") from error
        except PrunedByPruner as stop:
            raise self._pruned(trial, run_logger, str(stop)) from stop
        except BaseException:
            self._close(run_logger, RunStatus.FAILED)
            raise
        fid = state.fid_history[-1]["fid"]
        self._close(run_logger, RunStatus.FINISHED, fid=fid)
        return fid

    def _pruned(self, trial: optuna.Trial, run_logger: Optional[TrackingCallback], reason: str) -> optuna.TrialPruned:
        trial.set_user_attr(PRUNED_REASON_ATTR, reason)
        self._close(run_logger, RunStatus.PRUNED, reason=reason)
        return optuna.TrialPruned(reason)

    def _close(self, run_logger: Optional[TrackingCallback], status: RunStatus, fid: Optional[float] = None,
               reason: Optional[str] = None) -> None:
        if self.study_tracker is not None and run_logger is not None and run_logger.run_id is not None:
            self.study_tracker.close_trial_run(run_logger.run_id, status, fid=fid, reason=reason)
