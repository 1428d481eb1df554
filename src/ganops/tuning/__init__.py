"""Hyper-parameter search with Optuna, one module per job.

space (what a trial changes), sampling (sampler and pruner), storage (persistent study, heartbeat),
objective (a trial is a short training run scored by FID), study_tracking (parent and child runs in
the Tracker), results (files and summary), runner (one invocation), workers (`--workers N`: worker
processes on one storage). Optuna's private API is used only in optuna_private, pinned to the Optuna
version it was read against.
"""

from ganops.tuning.objective import FidReporter, Objective, PrunedByPruner, TrialSetup
from ganops.tuning.results import StudySummary, best_params_text, best_trial, count_states, format_summary, write_results
from ganops.tuning.runner import run_parallel, run_study
from ganops.tuning.sampling import TrialSeededTPESampler, make_pruner, make_sampler
from ganops.tuning.space import as_params, suggest, trial_config
from ganops.tuning.storage import HeartbeatJournalStorage, fail_dead_trials, make_storage, open_study, redact_url

__all__ = ["FidReporter", "HeartbeatJournalStorage", "Objective", "PrunedByPruner", "StudySummary", "TrialSeededTPESampler",
           "TrialSetup", "as_params", "best_params_text", "best_trial", "count_states", "fail_dead_trials",
           "format_summary", "make_pruner", "make_sampler", "make_storage", "open_study", "redact_url", "run_parallel",
           "run_study",
           "suggest", "trial_config", "write_results"]
