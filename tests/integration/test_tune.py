"""The tune stage on tiny data: real Optuna storages, a real MLflow store, real training and FID.

Everything lives in a temporary folder used as the working directory (the stage's paths are relative).
"""

from __future__ import annotations

import contextlib
import math
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import optuna
import pandas as pd
import pytest
import torch
import yaml
from mlflow.tracking import MlflowClient

from ganops import tuning
from ganops.config import from_dict
from ganops.errors import GanopsError
from ganops.tracking import RunStatus
from ganops.tracking.mlflow_tracker import MLFLOW_STATUS
from ganops.training import Callback
from tests.integration.pipeline_repo import build_fid_inputs
from optuna.trial import TrialState

ROOT = Path(__file__).resolve().parents[2]
EXPERIMENT = "ganops-mnist-5k"
TINY = {
    "data": {"limit": 256},
    "model": {"nz": 16, "ngf": 8, "ndf": 8},
    "train": {"batch_size": 32, "log_every": 4, "sample_grid": 16, "device": "cpu"},
    "fid": {"classifier_epochs": 1, "classifier_width": 8, "batch_size": 128},
    "tracking": {"uri": "sqlite:///mlruns/mlflow.db", "artifact_root": "mlruns/artifacts", "log_model": False},
    "tune": {"n_trials": 3, "epochs": 2, "eval_every": 1, "eval_samples": 200, "lr_min": 1e-4, "lr_max": 3e-3,
             "ngf_choices": [4, 8], "ndf_choices": [4, 8], "storage": "sqlite:///results/tune/study.db",
             "study_name": "test-study"},
}
GOOD = [{"lr": 1e-3, "beta1": 0.5, "ngf": 8, "ndf": 8}, {"lr": 2e-3, "beta1": 0.5, "ngf": 8, "ndf": 4}]
BAD_LR = 1.2e-3
POISON_LR = 1.5e-3
# How a trial ends -> how its tracked run ends (a pruned trial's MLflow run shows FINISHED, tagged state=PRUNED).
TRIAL_RUN_STATUS = {TrialState.COMPLETE: RunStatus.FINISHED, TrialState.PRUNED: RunStatus.PRUNED,
                    TrialState.FAIL: RunStatus.FAILED}


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny models on a shared 2-core machine: one thread avoids OpenMP oversubscription (several times faster)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    """Prepared digits, the feature classifier, FID statistics and a migrated MLflow database, built once."""
    root = tmp_path_factory.mktemp("tune-project")
    config = from_dict(TINY)
    build_fid_inputs(config, root)
    from ganops.tracking.mlflow_tracker import connect  # MLflow migrates a new database for seconds: do it once

    connect(from_dict({"tracking": {"uri": f"sqlite:///{root}/mlflow-template.db"}}).tracking)
    return root


@pytest.fixture
def workdir(project, tmp_path, monkeypatch):
    for name in ("data", "models"):
        (tmp_path / name).symlink_to(project / name)
    (tmp_path / "mlruns").mkdir()
    shutil.copyfile(project / "mlflow-template.db", tmp_path / "mlruns" / "mlflow.db")
    monkeypatch.chdir(tmp_path)
    return tmp_path


def tiny_config(**tune):
    """The tiny params with tune overrides. MLflow caches its store by URI, so the URI is absolute (per test)."""
    config = from_dict(TINY).replace(tracking={"uri": f"sqlite:///{Path.cwd()}/mlruns/mlflow.db"})
    return config.replace(tune=tune) if tune else config


def mlflow_runs(config):
    """(parent runs, {parent run id: child runs}) of the tune stage."""
    client = MlflowClient(config.tracking.uri)
    experiment = client.get_experiment_by_name(EXPERIMENT)
    runs = client.search_runs([experiment.experiment_id],
                              f"tags.stage = 'tune' and tags.study_name = '{config.tune.study_name}'", max_results=1000)
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    children = {p.info.run_id: [r for r in runs if r.data.tags.get("mlflow.parentRunId") == p.info.run_id]
                for p in parents}
    return parents, children


def load_trials(config):
    return optuna.load_study(study_name=config.tune.study_name, storage=tuning.make_storage(config.tune)).trials


class WorsenFid(Callback):
    """Ten times the FID for the trial with this learning rate: a trial that learns nothing, without luck.

    Tiny tests train for 16 steps, so real FIDs differ by noise only; the pruner needs a clear loser.
    """

    def __init__(self, lr: float):
        self.lr = lr

    def on_train_start(self, trainer, state):
        if math.isclose(trainer.cfg.lr, self.lr):
            real_fid = trainer.fid_fn
            trainer.fid_fn = lambda generator: 10 * real_fid(generator)


class PoisonDiscriminator(Callback):
    """NaN in a discriminator weight of the trial with this learning rate: a certain, immediate divergence."""

    def __init__(self, lr: float):
        self.lr = lr

    def on_train_start(self, trainer, state):
        if math.isclose(trainer.cfg.lr, self.lr):
            with torch.no_grad():
                next(trainer.discriminator.parameters()).fill_(float("nan"))


# ---------------------------------------------------------------------------------------------------
# In-process studies

def test_study_tracks_every_trial_in_mlflow_and_later_runs_continue_it(workdir):
    config = tiny_config()
    summary = tuning.run_study(config)
    assert len(summary.ran) == 3 and summary.best is not None

    parents, children = mlflow_runs(config)
    assert len(parents) == 1
    parent = parents[0]
    assert parent.info.status == "FINISHED" and parent.info.run_name == "study-test-study"
    assert parent.data.tags["study_name"] == "test-study" and parent.data.tags["storage"] == config.tune.storage
    assert parent.data.metrics["best_fid"] == pytest.approx(summary.best.value)
    assert parent.data.params["best.train.lr"] == str(summary.best.params["lr"])
    client = MlflowClient(config.tracking.uri)
    artifacts = {a.path for a in client.list_artifacts(parent.info.run_id)}
    assert {"trials.csv", "best_params.yaml", "optimization_history.png"} <= artifacts

    kids = children[parent.info.run_id]
    assert len(kids) == 3
    trials = {t.number: t for t in load_trials(config)}
    for run in kids:
        trial = trials[int(run.data.tags["trial_number"])]
        assert trial.user_attrs["mlflow_run_id"] == run.info.run_id
        assert run.data.tags["state"] == trial.state.name
        assert run.info.status == MLFLOW_STATUS[TRIAL_RUN_STATUS[trial.state]]
        assert run.data.params["train.lr"] == str(trial.params["lr"]) and run.data.params["train.epochs"] == "2"
        assert len(client.get_metric_history(run.info.run_id, "fid")) == len(trial.intermediate_values)
        if trial.state == TrialState.COMPLETE:  # the objective is the `fid` column training runs have too
            assert run.data.metrics["fid"] == pytest.approx(trial.value) and "final_fid" not in run.data.metrics
        assert run.info.run_name.startswith(f"trial-{trial.number}-lr")
        assert trial.user_attrs["mlflow_run_url"].endswith(f"/runs/{run.info.run_id}?workflowType=machine_learning")
        assert not any(key.startswith(("tune.", "tracking.")) for key in run.data.params)
    study = optuna.load_study(study_name=config.tune.study_name, storage=config.tune.storage)
    assert study.metric_names == ["fid"]  # optuna-dashboard's objective name
    assert study.user_attrs["mlflow_experiment_url"].endswith("?workflowType=machine_learning")

    assert len(pd.read_csv("results/tune/trials.csv")) == 3
    best = yaml.safe_load(Path("results/tune/best_params.yaml").read_text())
    merged = config.replace(**best)
    assert (merged.train.lr, merged.model.ngf) == (summary.best.params["lr"], summary.best.params["ngf"])
    assert merged.train.epochs == config.train.epochs  # only the searched keys change

    again = tuning.run_study(tiny_config(n_trials=1))
    assert len(again.ran) == 1 and len(load_trials(config)) == 4
    assert len(mlflow_runs(config)[0]) == 2
    # A fresh process does not replay the study's first suggestion (a plain seeded TPESampler would).
    assert again.ran[0].params != trials[0].params


def test_bad_and_diverging_trials_are_pruned_and_the_study_goes_on(workdir):
    config = tiny_config(n_trials=5, pruner="median")
    study = tuning.open_study(config.tune)
    bad = {"lr": BAD_LR, "beta1": 0.9, "ngf": 4, "ndf": 4}
    poisoned = {"lr": POISON_LR, "beta1": 0.5, "ngf": 4, "ndf": 4}
    for params in (*GOOD, bad, poisoned, GOOD[1]):
        study.enqueue_trial(params)
    summary = tuning.run_study(config, extra_callbacks=[WorsenFid(BAD_LR), PoisonDiscriminator(POISON_LR)])

    states = [t.state for t in summary.ran]
    assert states[:4] == [TrialState.COMPLETE, TrialState.COMPLETE, TrialState.PRUNED, TrialState.PRUNED]
    assert states[4] in (TrialState.COMPLETE, TrialState.PRUNED)  # the study went on after the divergence
    pruned, diverged = summary.ran[2], summary.ran[3]
    assert pruned.user_attrs["pruned_reason"].startswith("pruned by the median pruner at epoch 1")
    assert diverged.user_attrs["pruned_reason"].startswith("diverged at step 1:")
    client = MlflowClient(config.tracking.uri)
    for trial in (pruned, diverged):
        run = client.get_run(trial.user_attrs["mlflow_run_id"])
        assert run.info.status == "FINISHED"  # not KILLED: the UI draws that red, as a failure
        assert run.data.tags["state"] == "PRUNED"
        assert run.data.tags["pruned_reason"] == trial.user_attrs["pruned_reason"]
    assert len(client.get_metric_history(pruned.user_attrs["mlflow_run_id"], "fid")) == 1  # the curve up to pruning


def test_searched_switches_are_tracked_per_trial_and_written_to_best_params(workdir):
    config = tiny_config(n_trials=3, pruner="none", search=["loss", "ema", "diffaug", "ttur"],
                         loss_choices=["hinge", "lsgan"], ema_choices=[0.0, 0.99],
                         diffaug_choices=["none", "translation,cutout"])
    summary = tuning.run_study(config)
    client = MlflowClient(config.tracking.uri)
    for trial in summary.ran:
        params = client.get_run(trial.user_attrs["mlflow_run_id"]).data.params
        assert params["train.loss"] == trial.params["loss"] and float(params["train.ema"]) == trial.params["ema"]
        assert params["train.lr_d"] == str(trial.params["lr_d"]) and params["train.lr_g"] == str(trial.params["lr_g"])
        expected_aug = None if trial.params["diffaug"] == "none" else str(["translation", "cutout"])
        assert params.get("train.diffaug") == expected_aug  # null params are left out
    best = yaml.safe_load(Path("results/tune/best_params.yaml").read_text())
    assert best["train"]["loss"] == summary.best.params["loss"] and best["train"]["lr_d"] == summary.best.params["lr_d"]
    merged = tiny_config().replace(**best)  # what train.from_study trains with
    assert (merged.train.loss, merged.train.ema) == (summary.best.params["loss"], summary.best.params["ema"])
    parent = mlflow_runs(config)[0][0]
    assert parent.data.params["best.train.loss"] == summary.best.params["loss"]
    assert parent.data.params["tune.search"] == str(["loss", "ema", "diffaug", "ttur"])


def test_journal_storage_heartbeat_fails_and_retries_a_silent_trial(workdir):
    config = tiny_config(storage="journal:results/tune/study.log", heartbeat_interval=1)
    study = tuning.open_study(config.tune)
    trial = study.ask()
    study._storage.record_heartbeat(trial._trial_id)
    tuning.fail_dead_trials(study)
    assert study.trials[0].state == TrialState.RUNNING  # beat just now: alive
    time.sleep(2.3)  # grace period: 2 x heartbeat_interval
    tuning.fail_dead_trials(study)
    dead, retry = study.trials
    assert dead.state == TrialState.FAIL and retry.state == TrialState.WAITING
    assert retry.system_attrs["retry_history"] == [0]


def test_storage_url_and_cli_errors_name_what_is_allowed(workdir):
    with pytest.raises(GanopsError, match=r"tune.storage 'redis://u:\*\*\*@host/0' is not allowed \(allowed: sqlite"):
        tuning.make_storage(tiny_config(storage="redis://u:secret@host/0").tune)
    from pipeline.tune import parse_overrides

    assert parse_overrides(["--n-trials", "2", "--storage", "journal:x.log"]) == {"n_trials": 2, "storage": "journal:x.log"}


# ---------------------------------------------------------------------------------------------------
# Real processes: `python -m pipeline.tune`

def write_params(path: Path, **tune) -> Path:
    path.write_text(yaml.safe_dump(tiny_config(**tune).to_dict(), sort_keys=False))
    return path


def start_tune(workdir: Path, params: Path, *args: str) -> subprocess.Popen:
    # PYTHONFAULTHANDLER: a process that hangs prints every thread's stack on the SIGABRT of `communicate`.
    env = dict(os.environ, GANOPS_PARAMS=str(params), PYTHONPATH=f"{ROOT}{os.pathsep}{ROOT / 'src'}",
               OMP_NUM_THREADS="1", PYTHONFAULTHANDLER="1")
    return subprocess.Popen([sys.executable, "-m", "pipeline.tune", *args], cwd=workdir, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def descendants(pid: int) -> list[int]:
    """The processes below `pid` (a supervisor's workers, which run in their own sessions), deepest first."""
    found = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        with contextlib.suppress(OSError, ValueError):
            for child in (task / "children").read_text().split():
                found += descendants(int(child)) + [int(child)]
    return found


def communicate(process: subprocess.Popen, timeout: float) -> str:
    """The process's output once it ends; past `timeout`, it and its workers are stopped with SIGABRT (their
    stacks in the output, see start_tune) and the test fails with the output's end: nothing keeps running."""
    try:
        return process.communicate(timeout=timeout)[0]
    except subprocess.TimeoutExpired:
        for pid in descendants(process.pid) + [process.pid]:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGABRT)
        output = process.communicate(timeout=30)[0]
        pytest.fail(f"pipeline.tune still running after {timeout} s; its output and stacks:\n{output[-12000:]}")


def finish(process: subprocess.Popen, timeout: float = 80) -> str:
    output = communicate(process, timeout)
    assert process.returncode == 0, output[-4000:]
    return output


@pytest.mark.slow
def test_two_workers_share_one_study_and_lose_no_trial(workdir):
    params = write_params(workdir / "params.yaml", n_trials=2, storage="journal:results/tune/study.log")
    workers = [start_tune(workdir, params) for _ in range(2)]
    outputs = [finish(worker) for worker in workers]

    config = tiny_config(storage="journal:results/tune/study.log")
    trials = load_trials(config)
    assert len(trials) == 4, outputs
    assert all(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in trials)
    assert len({tuple(sorted(t.params.items())) for t in trials}) == 4  # no two workers tried the same values
    parents, children = mlflow_runs(config)
    assert len(parents) == 2 and sorted(len(c) for c in children.values()) == [2, 2]


@pytest.fixture(params=["sqlite", "postgresql"])
def storage(request) -> str:
    """The study's storage: the sqlite file, or a fresh database on the suite's real PostgreSQL server."""
    if request.param == "sqlite":
        return TINY["tune"]["storage"]
    from ganops.servers import create_database

    return create_database(request.getfixturevalue("local_servers"), f"study_{uuid.uuid4().hex[:12]}")


@pytest.mark.slow
def test_killed_worker_trial_is_failed_retried_and_its_run_closed(workdir, storage):
    """A worker killed by SIGKILL: the heartbeat fails its trial, and a second invocation retries it and goes on."""
    long_trials = write_params(workdir / "long.yaml", n_trials=2, epochs=500, heartbeat_interval=1, storage=storage)
    worker = start_tune(workdir, long_trials)
    config = tiny_config(heartbeat_interval=1, storage=storage)
    deadline = time.monotonic() + 60
    running = []
    while not running:  # wait until a trial trains and its MLflow run exists
        assert worker.poll() is None and time.monotonic() < deadline, "the worker never started a trial"
        time.sleep(0.5)
        with contextlib.suppress(KeyError):  # no study yet
            running = [t for t in load_trials(config)
                       if t.state == TrialState.RUNNING and "mlflow_run_id" in t.user_attrs]
    os.kill(worker.pid, signal.SIGKILL)
    worker.wait()
    dead = running[0]
    time.sleep(2.5)  # past the grace period (2 x heartbeat_interval) since the last heartbeat

    output = finish(start_tune(workdir, write_params(workdir / "short.yaml", n_trials=2, heartbeat_interval=1,
                                                     storage=storage)))
    trials = load_trials(config)
    assert [t.state for t in trials][0] == TrialState.FAIL
    retried = [t for t in trials if t.system_attrs.get("retry_history") == [dead.number]]
    assert len(retried) == 1 and retried[0].params == dead.params
    assert sum(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in trials) == 2  # this run's n_trials
    run = MlflowClient(config.tracking.uri).get_run(dead.user_attrs["mlflow_run_id"])
    assert run.info.status == "FAILED" and run.data.tags["failure_reason"] == "worker died (heartbeat)"
    assert f"closed the MLflow runs of dead workers' trials [{dead.number}]" in output
