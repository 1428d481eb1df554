"""Running a study: one invocation adds `tune.n_trials` trials, tracked when tracking is on, then writes results.

`run_study` runs the trials in this process; `run_parallel` (`tune.workers` > 1) supervises worker
processes that each call `run_study` on the same storage, nested under its MLflow parent run.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Optional, Sequence

import optuna
import torch
from optuna.trial import FrozenTrial

from ganops.config import Config
from ganops.paths import Paths, paths_for
from ganops.data import load_prepared
from ganops.errors import GanopsError
from ganops.evaluation import FidReference
from ganops.runtime import configure_backends, resolve_device
from ganops.tracking import open_tracker
from ganops.training import Callback
from ganops.tuning.dashboard import label_study
from ganops.tuning.objective import Objective, TrialSetup
from ganops.tuning.results import StudySummary, best_trial, count_states, save_study_plots, write_results
from ganops.tuning.storage import fail_dead_trials, open_study
from ganops.tuning.study_tracking import StudyTracker
from ganops.tuning.workers import plan_workers, run_workers, visible_gpus


def run_study(config: Config, root: str | Path = ".", extra_callbacks: Sequence[Callback] = (),
              parent_run_id: Optional[str] = None, supervised: bool = False) -> StudySummary:
    """Run `tune.n_trials` more trials of the study and write results/tune/{best_params.yaml,trials.csv}.

    `n_trials` counts the trials this invocation runs (Optuna's meaning), a retry of a dead worker's
    trial included; the study keeps growing over invocations. `extra_callbacks` join every trial's
    Trainer (tests use one to force a divergence). A worker of `run_parallel` is `supervised`: its
    trials nest under the supervisor's `parent_run_id`, and the supervisor writes the results.
    """
    started = time.monotonic()
    paths = paths_for(config, root)
    device = resolve_device(config.train.device)
    configure_backends(device)
    setup = TrialSetup(config, load_prepared(paths.prepared), FidReference.load(config, paths, device), device)
    study, study_tracker, closed = _open(config, device, parent_run_id)
    ran: list[FrozenTrial] = []
    try:
        study.optimize(Objective(setup, study_tracker, extra_callbacks), n_trials=config.tune.n_trials,
                       timeout=config.tune.timeout, callbacks=[lambda _study, trial: ran.append(trial)],
                       # A trial whose widths do not fit in device memory fails alone; the study goes on.
                       catch=(torch.OutOfMemoryError,))
        summary = _summary(config, study, study_tracker, ran, started, closed)
        if not supervised:
            _finish(study, summary, paths, study_tracker)
    except BaseException as error:
        if study_tracker and not supervised:
            study_tracker.abort(error)
        raise
    return summary


def run_parallel(config: Config, forwarded: Sequence[str], root: str | Path = ".") -> StudySummary:
    """`tune.workers` processes (`python -m pipeline.tune` with `forwarded` options) share `tune.n_trials`.

    The study and the MLflow parent run are made here first, so the workers only load them. Ctrl-C
    stops every worker (their running trials end as FAIL) and ends the parent run as KILLED.
    """
    started = time.monotonic()
    device = resolve_device(config.train.device)
    study, study_tracker, closed = _open(config, device, None)
    before = {t.number for t in study.get_trials(deepcopy=False)}
    plan = plan_workers(config.tune.workers, config.tune.n_trials, visible_gpus(config.train.device), os.cpu_count() or 1)
    print(f"tune: {plan.note}; " + ", ".join(f"worker {w.index + 1}: {w.n_trials} trial(s) on {w.where}"
                                               for w in plan.workers), file=sys.stderr)
    try:
        codes = run_workers(plan, forwarded, study_tracker.parent_run_id if study_tracker else None)
        failed = [f"worker {i} exit {code}" for i, code in enumerate(codes, 1) if code != 0]
        if failed:
            raise GanopsError(f"{len(failed)} of {len(codes)} tune workers failed ({', '.join(failed)}; their "
                              f"messages are above); the study keeps every finished trial: fix the cause and "
                              f"run the same command again")
        ran = [t for t in study.get_trials(deepcopy=False) if t.number not in before]
        summary = _summary(config, study, study_tracker, ran, started, closed)
        _finish(study, summary, paths_for(config, root), study_tracker)
    except BaseException as error:
        if study_tracker:
            study_tracker.abort(error)
        raise
    return summary


def _open(config: Config, device: torch.device,
          parent_run_id: Optional[str]) -> tuple[optuna.Study, Optional[StudyTracker], list[int]]:
    """The study (dead workers' trials failed and queued again) and its tracker, if tracking is on."""
    study = open_study(config.tune)
    fail_dead_trials(study)
    tracker = open_tracker(config)
    label_study(study, config, tracker.experiment_url() if tracker is not None else None)
    study_tracker = StudyTracker(tracker, config, device, parent_run_id) if tracker is not None else None
    closed = study_tracker.close_dead_trial_runs(study) if study_tracker else []
    return study, study_tracker, closed


def _summary(config: Config, study: optuna.Study, study_tracker: Optional[StudyTracker], ran: list[FrozenTrial],
             started: float, closed: list[int]) -> StudySummary:
    if study_tracker:  # trials of other workers that died while this one ran
        closed += study_tracker.close_dead_trial_runs(study)
    return StudySummary(config.tune.study_name, ran, count_states(study), best_trial(study),
                        time.monotonic() - started, closed)


def _finish(study: optuna.Study, summary: StudySummary, paths: Paths, study_tracker: Optional[StudyTracker]) -> None:
    """results/tune files, and the parent run closed with them and the study's plots."""
    with tempfile.TemporaryDirectory(prefix="ganops-tune-") as scratch:
        files = write_results(study, summary, paths.tune_dir)
        files += save_study_plots(study, Path(scratch))
        if study_tracker:
            study_tracker.finish(summary, files)
