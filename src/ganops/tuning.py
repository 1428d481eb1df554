"""Hyper-parameter search with Optuna: search space, sampler, pruner, storage and the objective.

A trial is an ordinary training run (the same Trainer and FID as the train stage) of `tune.epochs`
epochs with the trial's learning rate, Adam beta1 and channel widths. Its FID after every evaluation
goes to the pruner; its final FID is the objective (lower is better).

The study lives in persistent storage, so a later invocation, or a second worker, adds trials to it.
A worker that dies leaves its trial RUNNING; the storage's heartbeat notices (after 2 x
`tune.heartbeat_interval` seconds of silence) and fails it, and the retry callback queues the same
parameters again (up to `tune.max_retry` times).

MLflow is optional: with tracking enabled, each invocation is one parent run and each trial one child
run under it (see StudyTracker). This module never imports mlflow itself; ganops.tracking does.
"""

from __future__ import annotations

import contextlib
import logging
import re
import tempfile
import time
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator, Optional, Sequence

import optuna
import torch
import yaml
from optuna.storages import BaseStorage, JournalStorage, RDBStorage, RetryHeartbeatStaleTrialCallback
from optuna.storages._heartbeat import BaseHeartbeat  # the documented way for a storage to offer a heartbeat
from optuna.storages.journal import JournalFileBackend
from optuna.trial import FrozenTrial, TrialState

from ganops.config import Config, TuneConfig, paths_for
from ganops.data import load_prepared
from ganops.data.tensorfile import Prepared
from ganops.errors import DivergenceError, GanopsError
from ganops.evaluation import FidReference
from ganops.fileio import write_text
from ganops.races import retry_race
from ganops.reporting import save_csv
from ganops.runtime import configure_backends, git_commit, resolve_device
from ganops.training import Callback, Trainer, TrainState

if TYPE_CHECKING:
    from ganops.tracking import MlflowLogger

log = logging.getLogger(__name__)

JOURNAL_PREFIX = "journal:"
RDB_PREFIXES = ("sqlite:///", "postgresql", "mysql")
MLFLOW_RUN_ATTR = "mlflow_run_id"  # trial user attr: the trial's child run
PRUNED_REASON_ATTR = "pruned_reason"  # trial user attr: why a trial was pruned
DEAD_WORKER_REASON = "worker died (heartbeat)"
# Optuna's name of a trial state -> the MLflow status its child run ends with.
RUN_STATUS = {"COMPLETE": "FINISHED", "PRUNED": "KILLED", "FAIL": "FAILED"}


# ---------------------------------------------------------------------------------------------------
# Search space: what a trial changes in the base config

def suggest(trial: optuna.Trial, tune: TuneConfig) -> dict[str, Any]:
    """The four searched values; a retried or enqueued trial gets its fixed values back."""
    try:
        return {
            "lr": trial.suggest_float("lr", tune.lr_min, tune.lr_max, log=True),
            "beta1": trial.suggest_float("beta1", tune.beta1_min, tune.beta1_max),
            "ngf": trial.suggest_categorical("ngf", list(tune.ngf_choices)),
            "ndf": trial.suggest_categorical("ndf", list(tune.ndf_choices)),
        }
    except ValueError as exc:  # Optuna refuses a search space that differs from the study's earlier trials
        raise GanopsError(f"the search space in params tune differs from the earlier trials of study "
                          f"'{tune.study_name}' ({exc}); keep it, or start a new study with another "
                          f"tune.study_name") from exc


def as_params(values: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Searched values as params.yaml sections: what best_params.yaml holds and Config.replace takes."""
    return {"model": {"ngf": int(values["ngf"]), "ndf": int(values["ndf"])},
            "train": {"lr": float(values["lr"]), "beta1": float(values["beta1"])}}


def trial_config(base: Config, values: dict[str, Any]) -> Config:
    """The base config with the trial's values and the tune section's (shorter) training schedule."""
    params = as_params(values)
    tune = base.tune
    schedule = {"epochs": tune.epochs, "eval_every": tune.eval_every, "eval_samples": tune.eval_samples}
    return base.replace(model=params["model"], train={**params["train"], **schedule})


# ---------------------------------------------------------------------------------------------------
# Sampler and pruner

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
        seed = (self._base_seed * 1_000_003 + trial.number) % 2**32
        self._rng.rng.seed(seed)  # TPE's own candidates
        self._random_sampler._rng.rng.seed(seed)  # the random start (the first n_startup_trials)
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


# ---------------------------------------------------------------------------------------------------
# Storage

class HeartbeatJournalStorage(JournalStorage, BaseHeartbeat):
    """Optuna's journal file storage plus the heartbeat that only its RDB storage has.

    The journal file is Optuna's recommended storage for several worker processes on one machine
    (no database locks); without a heartbeat, though, a killed worker's trial would stay RUNNING
    forever. Heartbeats are trial system attrs holding a Unix time.
    """

    HEARTBEAT_ATTR = "ganops:heartbeat"

    def __init__(self, backend: JournalFileBackend, heartbeat_interval: int, grace_period: int,
                 stale_trial_callback: Any = None):
        super().__init__(backend)
        self._heartbeat_interval = heartbeat_interval
        self._grace_period = grace_period
        self._stale_trial_callback = stale_trial_callback

    def record_heartbeat(self, trial_id: int) -> None:
        try:
            self.set_trial_system_attr(trial_id, self.HEARTBEAT_ATTR, time.time())
        except optuna.exceptions.UpdateFinishedTrialError:
            pass  # another worker already failed it as stale; Optuna's tell reports that

    def _get_stale_trial_ids(self, study_id: int) -> list[int]:
        now = time.time()
        stale = []
        for trial in self.get_all_trials(study_id, deepcopy=False, states=(TrialState.RUNNING,)):
            beat = trial.system_attrs.get(self.HEARTBEAT_ATTR)
            if beat is None:
                continue  # as RDBStorage: a trial that never beat is not judged
            # A retried trial inherits its predecessor's old heartbeat: count from its own start too.
            started = trial.datetime_start.timestamp() if trial.datetime_start else 0.0
            if now - max(beat, started) > self._grace_period:
                stale.append(trial._trial_id)
        return stale

    def get_heartbeat_interval(self) -> int:
        return self._heartbeat_interval

    def get_heartbeat_stale_trial_callback(self) -> Any:
        return self._stale_trial_callback


@contextlib.contextmanager
def experimental_features() -> Iterator[None]:
    """Use Optuna's heartbeat and retry API without its ExperimentalWarning on every call."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        yield


def redact_url(url: str) -> str:
    """A storage URL fit for logs and MLflow tags: the password replaced by ***."""
    return re.sub(r"(://[^:/@]+:)[^@]*@", r"\1***@", url)


def make_storage(tune: TuneConfig) -> BaseStorage:
    """`sqlite:///file`, `postgresql://...`, `mysql://...` (RDB) or `journal:<file>` (several workers)."""
    url = tune.storage
    interval = tune.heartbeat_interval
    with experimental_features():
        retry = RetryHeartbeatStaleTrialCallback(max_retry=tune.max_retry)
        if url.startswith(JOURNAL_PREFIX):
            path = _storage_file(url, url[len(JOURNAL_PREFIX):])
            return HeartbeatJournalStorage(JournalFileBackend(str(path)), interval, 2 * interval, retry)
        if not url.startswith(RDB_PREFIXES):
            raise GanopsError(f"tune.storage {redact_url(url)!r} is not allowed (allowed: sqlite:///<file>, "
                              f"journal:<file>, postgresql://..., mysql://...)")
        engine_kwargs = {}
        if url.startswith("sqlite:///"):
            _storage_file(url, url[len("sqlite:///"):])
            # Several workers on one sqlite file wait for each other's writes instead of failing.
            engine_kwargs = {"connect_args": {"timeout": 60}}
        try:
            return retry_race(lambda: RDBStorage(url, engine_kwargs=engine_kwargs, heartbeat_interval=interval,
                                                  grace_period=2 * interval, heartbeat_stale_trial_callback=retry))
        except Exception as exc:  # SQLAlchemy raises many types for a bad URL or an unreachable server
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise GanopsError(f"tune.storage {redact_url(url)!r} cannot be opened ({first[:200]})") from exc


def _storage_file(url: str, name: str) -> Path:
    path = Path(name)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise GanopsError(f"tune.storage {url!r}: cannot create {path.parent} ({exc.strerror})") from exc
    return path


def open_study(tune: TuneConfig) -> optuna.Study:
    """Create the study, or load it when it exists: later invocations and other workers add trials."""
    storage = make_storage(tune)
    return retry_race(lambda: optuna.create_study(
        storage=storage, study_name=tune.study_name, sampler=make_sampler(tune), pruner=make_pruner(tune),
        direction="minimize", load_if_exists=True))


def fail_dead_trials(study: optuna.Study) -> None:
    """Fail (and queue retries of) trials whose worker stopped beating, before new trials start.

    Optuna also does this before each trial it starts; doing it first lets the MLflow runs of those
    trials be closed even when this invocation starts no trial at all.
    """
    with experimental_features():
        optuna.storages.fail_stale_trials(study)


# ---------------------------------------------------------------------------------------------------
# The objective

@dataclass
class TrialSetup:
    """What every trial of an invocation shares, loaded once."""

    config: Config
    prepared: Prepared
    reference: FidReference
    device: torch.device


class FidReporter(Callback):
    """Reports each FID to Optuna (step = epoch) and stops a trial the pruner gives up on."""

    def __init__(self, trial: optuna.Trial, pruner_name: str, logger: Optional["MlflowLogger"] = None):
        self.trial, self.pruner_name, self.logger = trial, pruner_name, logger

    def on_train_start(self, trainer: Any, state: TrainState) -> None:
        if state.run_id:  # stored at once, so the run of a trial whose worker dies can be found and closed
            self.trial.set_user_attr(MLFLOW_RUN_ATTR, state.run_id)

    def on_evaluation(self, state: TrainState, fid: float) -> None:
        if self.logger is not None:
            # Trials keep no checkpoint, so nothing resumes: send the curve now, which keeps it when pruned.
            self.logger.flush(state)
        self.trial.report(fid, step=state.epoch)
        if self.trial.should_prune():
            raise optuna.TrialPruned(f"pruned by the {self.pruner_name} pruner at epoch {state.epoch} (FID {fid:.3f})")


class Objective:
    """trial -> final FID of a short training run with the trial's values."""

    def __init__(self, setup: TrialSetup, tracker: Optional["StudyTracker"] = None,
                 extra_callbacks: Sequence[Callback] = ()):
        self.setup, self.tracker, self.extra_callbacks = setup, tracker, list(extra_callbacks)

    def __call__(self, trial: optuna.Trial) -> float:
        setup = self.setup
        values = suggest(trial, setup.config.tune)
        config = trial_config(setup.config, values)
        logger = self.tracker.trial_logger(trial, config) if self.tracker else None
        reporter = FidReporter(trial, setup.config.tune.pruner, logger)
        callbacks = [c for c in (logger, reporter) if c is not None] + self.extra_callbacks
        fid_fn = setup.reference.fid_function(config.train.eval_samples, config.model.nz, setup.device)
        try:
            trainer = Trainer(config.model, config.train, setup.prepared, setup.device, fid_fn=fid_fn,
                              checkpoint_dir=None, callbacks=callbacks, show_progress=False)
            state = trainer.fit()
        except DivergenceError as error:
            # A learning rate too high for these widths: a result about the search space, not a crash.
            reason = f"diverged at step {error.step}: {error}"
            trial.set_user_attr(PRUNED_REASON_ATTR, reason)
            self._close(logger, "PRUNED", reason=reason)
            raise optuna.TrialPruned(reason) from error
        except optuna.TrialPruned as pruned:
            trial.set_user_attr(PRUNED_REASON_ATTR, str(pruned))
            self._close(logger, "PRUNED", reason=str(pruned))
            raise
        except BaseException:
            self._close(logger, "FAIL")
            raise
        fid = state.fid_history[-1]["fid"]
        self._close(logger, "COMPLETE", fid=fid)
        return fid

    def _close(self, logger: Optional["MlflowLogger"], state: str, fid: Optional[float] = None,
               reason: Optional[str] = None) -> None:
        if self.tracker is not None and logger is not None and logger.run_id is not None:
            self.tracker.close_trial_run(logger.run_id, state, fid=fid, reason=reason)


# ---------------------------------------------------------------------------------------------------
# MLflow: one parent run per invocation, one child run per trial

class StudyTracker:
    """Maps a study onto MLflow runs.

    The parent run stands for this invocation (`study-<name>`, tags study_name and storage) and ends
    with the study's best FID, best params, trials.csv, best_params.yaml and plots. Each trial is a
    child run (tag mlflow.parentRunId) holding the trial's config as params, the FID curve, final_fid
    and a `state` tag; it ends FINISHED (complete), KILLED (pruned) or FAILED.
    """

    def __init__(self, config: Config, device: torch.device):
        from ganops import tracking

        self.tracking = tracking
        self.study_name = config.tune.study_name
        self.client = tracking.connect(config.tracking)
        self.experiment_id = tracking.ensure_experiment(self.client, tracking.experiment_name(config),
                                                        config.tracking.artifact_root)
        self.base_tags = {"mlflow.source.git.commit": git_commit(), "dataset": config.data.dataset,
                          "device": str(device), "extractor": config.fid.extractor, "stage": "tune",
                          "study_name": self.study_name}
        self.parent_run_id = tracking.start_run(
            self.client, self.experiment_id, f"study-{self.study_name}",
            tracking.flatten({"tune": asdict(config.tune)}),
            {**self.base_tags, "storage": redact_url(config.tune.storage)})

    def trial_logger(self, trial: optuna.Trial, config: Config) -> "MlflowLogger":
        tags = {**self.base_tags, "trial_number": str(trial.number), "state": "RUNNING"}
        retried = _retried_trial_number(trial)
        if retried is not None:
            tags["retry_of_trial"] = str(retried)
        return self.tracking.MlflowLogger(self.client, self.experiment_id, f"trial-{trial.number}",
                                          self.tracking.flatten(config.to_dict()), tags,
                                          parent_run_id=self.parent_run_id)

    def close_trial_run(self, run_id: str, state: str, fid: Optional[float] = None,
                        reason: Optional[str] = None) -> None:
        if fid is not None:
            self.tracking.log_metrics(self.client, run_id, {"final_fid": fid})
        tags = {"state": state}
        if reason:
            tags["pruned_reason" if state == "PRUNED" else "failure_reason"] = reason[:5000]
        self.tracking.set_tags(self.client, run_id, tags)
        # A failed trial's run was already ended by the logger (FAILED, or KILLED on Ctrl-C): keep that.
        if state != "FAIL" or self.tracking.run_status(self.client, run_id) == "RUNNING":
            self.tracking.finish_run(self.client, run_id, RUN_STATUS[state])

    def close_dead_trial_runs(self, study: optuna.Study) -> list[int]:
        """End as FAILED the runs of failed trials that MLflow still shows RUNNING (their worker died)."""
        closed = []
        for trial in study.get_trials(deepcopy=False, states=(TrialState.FAIL,)):
            run_id = trial.user_attrs.get(MLFLOW_RUN_ATTR)
            if run_id and self.tracking.run_status(self.client, run_id) == "RUNNING":
                self.tracking.set_tags(self.client, run_id, {"state": "FAIL"})
                self.tracking.finish_run(self.client, run_id, "FAILED", DEAD_WORKER_REASON)
                closed.append(trial.number)
        return closed

    def finish(self, summary: "StudySummary", files: Sequence[Path]) -> None:
        tracking, run_id = self.tracking, self.parent_run_id
        if summary.best is not None:
            best = summary.best
            tracking.log_metrics(self.client, run_id, {"best_fid": best.value, "best_trial": best.number})
            tracking.log_params(self.client, run_id, tracking.flatten(as_params(best.params), prefix="best."))
        tracking.log_metrics(self.client, run_id, {f"trials_{k}": v for k, v in summary.study_counts.items()})
        tracking.log_artifacts(self.client, run_id, files)
        tracking.finish_run(self.client, run_id)

    def abort(self, error: BaseException) -> None:
        status = "KILLED" if isinstance(error, KeyboardInterrupt) else "FAILED"
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        self.tracking.finish_run(self.client, self.parent_run_id, status, reason)


def _retried_trial_number(trial: optuna.Trial) -> Optional[int]:
    """The trial this one retries (RetryHeartbeatStaleTrialCallback's system attr), if any."""
    frozen = trial.study._storage.get_trial(trial._trial_id)  # Trial exposes no system attrs
    with experimental_features():
        return RetryHeartbeatStaleTrialCallback.retried_trial_number(frozen)


# ---------------------------------------------------------------------------------------------------
# Running a study and writing its results

@dataclass
class StudySummary:
    study_name: str
    ran: list[FrozenTrial]  # the trials this invocation ran, in order
    study_counts: dict[str, int]  # complete / pruned / failed / running over the whole study
    best: Optional[FrozenTrial]
    wall_s: float
    closed_dead_runs: list[int] = field(default_factory=list)  # trials whose MLflow runs were closed as FAILED

    def ran_count(self, state: TrialState) -> int:
        return sum(t.state == state for t in self.ran)


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
    tracker = StudyTracker(config, device) if config.tracking.enabled else None
    closed = tracker.close_dead_trial_runs(study) if tracker else []
    ran: list[FrozenTrial] = []
    try:
        study.optimize(Objective(setup, tracker, extra_callbacks), n_trials=config.tune.n_trials,
                       timeout=config.tune.timeout, callbacks=[lambda _study, trial: ran.append(trial)],
                       # A trial whose widths do not fit in device memory fails alone; the study goes on.
                       catch=(torch.OutOfMemoryError,))
        if tracker:  # trials of other workers that died while this one ran
            closed += tracker.close_dead_trial_runs(study)
        summary = StudySummary(config.tune.study_name, ran, count_states(study), best_trial(study),
                               time.monotonic() - started, closed)
        with tempfile.TemporaryDirectory(prefix="ganops-tune-") as scratch:
            files = write_results(study, summary, paths.tune_dir)
            files += save_study_plots(study, Path(scratch))
            if tracker:
                tracker.finish(summary, files)
    except BaseException as error:
        if tracker:
            tracker.abort(error)
        raise
    return summary


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
    header = (f"# Best trial {best.number} of Optuna study '{study_name}': FID {best.value:.4f}\n"
              f"# Merge into params.yaml (model.ngf/ndf, train.lr/beta1), then `dvc repro train`.\n")
    return header + yaml.safe_dump(as_params(best.params), sort_keys=False)


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
