"""Several tune workers started at one moment on a new study storage: all join the one study, none dies.

The workers race to create the storage's schema and the study (Optuna leaves callers to tolerate that
race; ganops.races retries it): a new sqlite file, a new journal file, and a new PostgreSQL database on
the suite's own server.
"""

from __future__ import annotations

import os
import resource
import signal
import sqlite3
import subprocess
import sys
import uuid

import pytest
import torch
import yaml
from optuna.trial import TrialState

from ganops import tuning
from ganops.config import from_dict
from tests.integration.pipeline_repo import ROOT, build_fid_inputs, merge
from tests.integration.test_bad_inputs import BASE, CHECKPOINT
from tests.integration.test_tune import TINY, finish, start_tune

WORKERS = 4
TRIALS_EACH = 1


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    root = tmp_path_factory.mktemp("stores-project")
    build_fid_inputs(from_dict(TINY), root)
    return root


@pytest.mark.slow
@pytest.mark.parametrize("storage", ["sqlite:///results/tune/study.db", "journal:results/tune/study.log", "postgresql"])
def test_workers_started_together_on_a_new_storage_all_join_one_study(project, tmp_path, monkeypatch, storage, request):
    if storage == "postgresql":  # an empty database: the workers race to create Optuna's tables in it
        from ganops import servers

        storage = servers.create_database(request.getfixturevalue("local_servers"), f"race_{uuid.uuid4().hex[:12]}")
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


def test_a_table_another_worker_created_meanwhile_is_a_lost_race_and_retried(local_servers):
    """PostgreSQL's DuplicateTable (SQLAlchemy's ProgrammingError) is what a worker gets when it found Optuna's
    `alembic_version` table missing and another created it first: retried. Other ProgrammingErrors are not."""
    import sqlalchemy

    from ganops import servers
    from ganops.races import retry_race

    engine = sqlalchemy.create_engine(servers.create_database(local_servers, f"dup_{uuid.uuid4().hex[:12]}"))
    create = sqlalchemy.text("CREATE TABLE alembic_version (version_num VARCHAR(32) NOT NULL)")
    with engine.begin() as connection:  # the winner
        connection.execute(create)
    attempts = []

    def join_storage() -> str:
        attempts.append(len(attempts))
        if len(attempts) == 1:  # this worker looked before the winner's table existed
            with engine.begin() as connection:
                connection.execute(create)
        return "joined"

    try:
        assert retry_race(join_storage) == "joined" and len(attempts) == 2

        def broken() -> None:
            attempts.append(len(attempts))
            with engine.begin() as connection:
                connection.execute(sqlalchemy.text("SELECT no_such_column FROM alembic_version"))

        attempts.clear()
        with pytest.raises(sqlalchemy.exc.ProgrammingError, match="no_such_column"):
            retry_race(broken)
        assert len(attempts) == 1
    finally:
        engine.dispose()


def limit_file_size(limit: int):
    """A preexec_fn: files the child writes may grow to `limit` bytes; past it, a write fails with EFBIG
    (SIGXFSZ ignored, so it is an error and not a killed process), as on a full disk."""
    def apply() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    return apply


def train(work, epochs: int, preexec_fn=None, overrides=None) -> subprocess.CompletedProcess:
    values = merge(merge(BASE, overrides or {}), {"train": {"epochs": epochs}})
    (work / "params.yaml").write_text(yaml.safe_dump(values, sort_keys=False))
    env = dict(os.environ, GANOPS_PARAMS="params.yaml", PYTHONPATH=f"{ROOT}{os.pathsep}{ROOT / 'src'}",
               OMP_NUM_THREADS="1")
    return subprocess.run([sys.executable, "-m", "pipeline.train"], cwd=work, env=env, capture_output=True,
                          text=True, timeout=240, preexec_fn=preexec_fn)


@pytest.mark.slow
def test_a_full_disk_during_a_checkpoint_keeps_the_last_one_and_a_rerun_resumes(tmp_path):
    build_fid_inputs(from_dict(BASE), tmp_path)
    first = train(tmp_path, epochs=1)
    assert first.returncode == 0, first.stderr[-3000:]
    checkpoint = tmp_path / CHECKPOINT
    before = checkpoint.read_bytes()

    full = train(tmp_path, epochs=2, preexec_fn=limit_file_size(len(before) // 2))
    lines = [line for line in full.stderr.splitlines() if line.strip()]
    assert full.returncode == 2 and "Traceback" not in full.stderr, full.stderr[-3000:]
    assert lines[-1].startswith("ganops train: error: ") and "no space left" in lines[-1], lines[-1]
    print(lines[-1])
    assert checkpoint.read_bytes() == before
    assert torch.load(checkpoint, weights_only=True)  # still loads
    assert not list(checkpoint.parent.glob("*.tmp"))

    again = train(tmp_path, epochs=2)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "resum" in (again.stdout + again.stderr).lower(), again.stdout[-2000:] + again.stderr[-2000:]


CONNECT = """
import sys
from ganops.config import from_dict
from ganops.tracking import open_tracker
config = from_dict({"tracking": {"uri": sys.argv[1], "artifact_root": sys.argv[2], "experiment": "race"}})
print(open_tracker(config).experiment_id)
"""


@pytest.mark.slow
def test_workers_started_together_on_a_new_mlflow_store_all_open_it(tmp_path):
    uri = f"sqlite:///{tmp_path}/mlruns/mlflow.db"
    env = dict(os.environ, PYTHONPATH=f"{ROOT}{os.pathsep}{ROOT / 'src'}")
    workers = [subprocess.Popen([sys.executable, "-c", CONNECT, uri, str(tmp_path / "artifacts")], env=env,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) for _ in range(WORKERS)]
    outputs = [worker.communicate(timeout=240)[0] for worker in workers]
    assert [worker.returncode for worker in workers] == [0] * WORKERS, outputs
    assert len({output.strip().splitlines()[-1] for output in outputs}) == 1, outputs  # one experiment


@pytest.mark.slow
def test_a_full_disk_during_an_mlflow_write_is_one_line_and_a_rerun_continues_the_run(tmp_path):
    """The tracking store stops growing (a file-size limit at its current size): the metrics flushed after
    a checkpoint fail. One line naming the store; a re-run continues the same run with no step twice."""
    build_fid_inputs(from_dict(BASE), tmp_path)
    tracked = {"tracking": {"enabled": True, "log_model": False}, "train": {"log_every": 1}}
    first = train(tmp_path, epochs=1, overrides=tracked)
    assert first.returncode == 0, first.stderr[-3000:]
    db = tmp_path / "mlruns/mlflow.db"

    full = train(tmp_path, epochs=12, overrides=tracked, preexec_fn=limit_file_size(db.stat().st_size))
    lines = [line for line in full.stderr.splitlines() if line.strip()]
    assert full.returncode == 2 and "Traceback" not in full.stderr, full.stderr[-3000:]
    assert lines[-1].startswith("ganops train: error: mlruns/mlflow.db: the tracking store cannot be written"), lines[-1]
    print(lines[-1])

    again = train(tmp_path, epochs=12, overrides=tracked)
    assert again.returncode == 0, again.stderr[-3000:]
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
        runs = conn.execute("SELECT status FROM runs").fetchall()
        steps = [row[0] for row in conn.execute("SELECT step FROM metrics WHERE key = 'loss_d' ORDER BY step")]
    assert runs == [("FINISHED",)]
    assert steps == list(range(1, 12 * 8 + 1))  # every step once: none repeated, none lost
