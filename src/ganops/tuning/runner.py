"""Running a study: one invocation adds `tune.n_trials` trials, tracked when tracking is on, then writes results."""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Sequence

import torch
from optuna.trial import FrozenTrial

from ganops.config import Config, paths_for
from ganops.data import load_prepared
from ganops.evaluation import FidReference
from ganops.runtime import configure_backends, resolve_device
from ganops.tracking import open_tracker
from ganops.training import Callback
from ganops.tuning.objective import Objective, TrialSetup
from ganops.tuning.results import StudySummary, best_trial, count_states, save_study_plots, write_results
from ganops.tuning.storage import fail_dead_trials, open_study
from ganops.tuning.study_tracking import StudyTracker


def run_study(config: Config, root: str | Path = ".", extra_callbacks: Sequence[Callback] = ()) -> StudySummary:
    """Run `tune.n_trials` more trials of the study and write results/tune/{best_params.yaml,trials.csv}.

    `n_trials` counts the trials this invocation runs (Optuna's meaning), a retry of a dead worker's
    trial included; the study keeps growing over invocations. `extra_callbacks` join every trial's
    Trainer (tests use one to force a divergence).
    """
    started = time.monotonic()
    paths = paths_for(config, root)
    device = resolve_device(config.train.device)
    configure_backends(device)
    setup = TrialSetup(config, load_prepared(paths.prepared), FidReference.load(config, paths, device), device)
    study = open_study(config.tune)
    fail_dead_trials(study)
    tracker = open_tracker(config)
    study_tracker = StudyTracker(tracker, config, device) if tracker is not None else None
    closed = study_tracker.close_dead_trial_runs(study) if study_tracker else []
    ran: list[FrozenTrial] = []
    try:
        study.optimize(Objective(setup, study_tracker, extra_callbacks), n_trials=config.tune.n_trials,
                       timeout=config.tune.timeout, callbacks=[lambda _study, trial: ran.append(trial)],
                       # A trial whose widths do not fit in device memory fails alone; the study goes on.
                       catch=(torch.OutOfMemoryError,))
        if study_tracker:  # trials of other workers that died while this one ran
            closed += study_tracker.close_dead_trial_runs(study)
        summary = StudySummary(config.tune.study_name, ran, count_states(study), best_trial(study),
                               time.monotonic() - started, closed)
        with tempfile.TemporaryDirectory(prefix="ganops-tune-") as scratch:
            files = write_results(study, summary, paths.tune_dir)
            files += save_study_plots(study, Path(scratch))
            if study_tracker:
                study_tracker.finish(summary, files)
    except BaseException as error:
        if study_tracker:
            study_tracker.abort(error)
        raise
    return summary
