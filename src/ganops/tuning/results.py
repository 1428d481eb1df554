"""A study's results: counts, the best trial, results/tune/{trials.csv,best_params.yaml}, plots, a summary."""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import optuna
from optuna.trial import FrozenTrial, TrialState

from ganops import best_params
from ganops.errors import GanopsError
from ganops.fileio import write_text
from ganops.reporting import save_csv
from ganops.tuning.space import as_params

log = logging.getLogger(__name__)


@dataclass
class StudySummary:
    study_name: str
    ran: list[FrozenTrial]  # the trials this invocation ran, in order
    study_counts: dict[str, int]  # complete / pruned / failed / running over the whole study
    best: Optional[FrozenTrial]
    wall_s: float
    closed_dead_runs: list[int] = field(default_factory=list)  # trials whose tracked runs were closed as FAILED

    def ran_count(self, state: TrialState) -> int:
        return sum(t.state == state for t in self.ran)


def count_states(study: optuna.Study) -> dict[str, int]:
    trials = study.get_trials(deepcopy=False)
    return {name.lower(): sum(t.state == state for t in trials)
            for name, state in (("complete", TrialState.COMPLETE), ("pruned", TrialState.PRUNED),
                                ("failed", TrialState.FAIL), ("running", TrialState.RUNNING))}


def best_trial(study: optuna.Study) -> Optional[FrozenTrial]:
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    return min(complete, key=lambda t: t.value) if complete else None


def write_results(study: optuna.Study, summary: StudySummary, tune_dir: Path) -> list[Path]:
    """trials.csv (every trial of the study) and best_params.yaml (mergeable into params.yaml)."""
    trials_csv, best_yaml = tune_dir / "trials.csv", tune_dir / "best_params.yaml"
    save_csv(study.trials_dataframe(), trials_csv)
    if summary.best is None:
        raise GanopsError(f"study '{summary.study_name}' has no completed trial yet ({summary.study_counts}); "
                          f"run more trials (--n-trials), widen tune.lr_min/lr_max, or use tune.pruner: none")
    write_text(best_yaml, best_params_text(summary.best, summary.study_name))
    return [trials_csv, best_yaml]


def best_params_text(best: FrozenTrial, study_name: str) -> str:
    """The best values as params.yaml sections; what they scored is in comments, so the file merges as is."""
    return best_params.best_params_text(as_params(best.params), study_name, best.number, best.value)


def save_study_plots(study: optuna.Study, folder: Path) -> list[Path]:
    """Optimization history and (from 2 completed trials) parameter importances, as PNGs."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from optuna.visualization import matplotlib as optuna_plots

    complete = len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)))
    wanted = [("optimization_history.png", optuna_plots.plot_optimization_history, 1),
              ("param_importances.png", optuna_plots.plot_param_importances, 2)]
    saved = []
    for name, plot, needed in wanted:
        if complete < needed:
            continue
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # Optuna marks its matplotlib plots experimental
                axes = plot(study)
            figure = axes.figure
            figure.tight_layout()
            figure.savefig(folder / name, dpi=100)
            plt.close(figure)
            saved.append(folder / name)
        except Exception as exc:  # a plot is a nicety: never lose a finished study over one
            log.warning("could not draw %s: %s", name, exc)
    return saved


def format_summary(summary: StudySummary) -> str:
    ran = summary.ran
    lines = [f"study '{summary.study_name}': this run {len(ran)} trials "
             f"({summary.ran_count(TrialState.COMPLETE)} complete, {summary.ran_count(TrialState.PRUNED)} pruned, "
             f"{summary.ran_count(TrialState.FAIL)} failed) in {summary.wall_s:.1f} s; "
             f"study total: " + ", ".join(f"{v} {k}" for k, v in summary.study_counts.items())]
    if summary.closed_dead_runs:
        lines.append(f"closed the MLflow runs of dead workers' trials {summary.closed_dead_runs} as FAILED")
    if summary.best is not None:
        params = ", ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in summary.best.params.items())
        lines.append(f"best: trial {summary.best.number}, FID {summary.best.value:.3f} ({params})")
    return "\n".join(lines)
