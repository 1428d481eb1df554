"""`python -m pipeline.tune --workers N` for real: worker processes on a PostgreSQL study (the suite's own
server, tests/conftest.py), trials tracked over HTTP by the MLflow server, Ctrl-C, bad storages."""

from __future__ import annotations

import contextlib
import signal
import time
import uuid

import pytest
from mlflow.tracking import MlflowClient
from optuna.trial import TrialState

from ganops import servers, tuning
from ganops.errors import GanopsError
from tests.integration.test_tune import (communicate, finish, load_trials, mlflow_runs, one_thread, project, start_tune,  # noqa: F401
                                         tiny_config, workdir, write_params)


def team(local_servers, **tune):
    """Tiny tune params on a fresh PostgreSQL database, tracked by the MLflow server."""
    name = f"study_{uuid.uuid4().hex[:12]}"  # also the study's name: the server's database is shared by the tests
    config = tiny_config(storage=servers.create_database(local_servers, name), study_name=name, **tune)
    return config.replace(tracking={"uri": local_servers.tracking_uri})


def write_team_params(workdir, config):
    import yaml

    path = workdir / "params.yaml"
    path.write_text(yaml.safe_dump(config.to_dict(), sort_keys=False))
    return path


@pytest.mark.slow
def test_three_workers_fill_one_postgresql_study_with_no_trial_lost_or_repeated(workdir, local_servers):
    config = team(local_servers, n_trials=6, workers=3, pruner="none")
    output = finish(start_tune(workdir, write_team_params(workdir, config)), timeout=240)
    assert "3 workers on the CPU" in output and "worker 3: 2 trial(s)" in output

    trials = load_trials(config)
    assert sorted(t.number for t in trials) == list(range(6))  # nothing lost, nothing counted twice
    assert all(t.state == TrialState.COMPLETE for t in trials), [t.state for t in trials]
    assert len({tuple(sorted(t.params.items())) for t in trials}) == 6  # no two workers tried the same values
    parents, children = mlflow_runs(config)
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"  # the supervisor's run
    kids = children[parents[0].info.run_id]
    assert sorted(int(r.data.tags["trial_number"]) for r in kids) == list(range(6))
    assert {t.user_attrs["mlflow_run_id"] for t in trials} == {r.info.run_id for r in kids}
    assert (workdir / "results" / "tune" / "best_params.yaml").is_file()
    assert parents[0].data.metrics["trials_complete"] == 6


@pytest.mark.slow
def test_ctrl_c_stops_every_worker_their_trials_fail_and_runs_close(workdir, local_servers):
    config = team(local_servers, n_trials=2, workers=2, epochs=500, heartbeat_interval=1)
    supervisor = start_tune(workdir, write_team_params(workdir, config))
    deadline = time.monotonic() + 120
    running = []
    while len(running) < 2:  # both workers train, each with its MLflow run
        assert supervisor.poll() is None and time.monotonic() < deadline, "the workers never started their trials"
        time.sleep(0.5)
        with contextlib.suppress(KeyError):
            running = [t for t in load_trials(config) if t.state == TrialState.RUNNING and "mlflow_run_id" in t.user_attrs]
    supervisor.send_signal(signal.SIGINT)
    output = communicate(supervisor, timeout=150)
    assert supervisor.returncode == 130 and output.rstrip().endswith("ganops tune: interrupted"), output[-3000:]

    assert [t.state for t in load_trials(config)] == [TrialState.FAIL, TrialState.FAIL]
    client = MlflowClient(config.tracking.uri)
    assert {client.get_run(t.user_attrs["mlflow_run_id"]).info.status for t in running} == {"KILLED"}
    parents, _ = mlflow_runs(config)
    assert [p.info.status for p in parents] == ["KILLED"]


def test_unreachable_postgresql_and_a_wrong_password_are_one_line_without_the_password(workdir, local_servers):
    wrong = local_servers.postgres_url("optuna", password="not-the-password")
    with pytest.raises(GanopsError) as info:
        tuning.make_storage(tiny_config(storage=wrong).tune)
    message = str(info.value)
    assert "password authentication failed" in message and "not-the-password" not in message and "\n" not in message
    assert "ganops:***@" in message

    nowhere = "postgresql://ganops:secret@/optuna?host=/nonexistent-socket-dir"
    with pytest.raises(GanopsError, match=r"^tune.storage 'postgresql://ganops:\*\*\*@/optuna\?host=/nonexistent-socket-dir'"):
        tuning.make_storage(tiny_config(storage=nowhere).tune)
