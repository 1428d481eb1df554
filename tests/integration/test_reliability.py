"""A training killed with SIGKILL in the middle of an epoch, then `dvc repro` again: it must resume.

Through real git, DVC and MLflow: the stage and the dvc process above it die together (their process
group is killed, as an OOM killer or a lost machine would), DVC's leftover locks must not block the
next `dvc repro`, and the resumed training must continue the same MLflow run with every metric step
logged exactly once.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import time

import pytest
import yaml
from mlflow.tracking import MlflowClient

from tests.integration.pipeline_repo import BIN, dvc, make_repo, start

pytestmark = pytest.mark.slow

EPOCHS, BATCH, LIMIT, LOG_EVERY, EVAL_EVERY = 6, 32, 256, 4, 2
STEPS_PER_EPOCH = LIMIT // BATCH  # 8: a logged window never straddles an epoch
KILL_AFTER_EPOCH = 2  # checkpoints and MLflow hold epoch 2; the kill lands in epoch 3
OVERRIDES = {
    "model": {"ngf": 16, "ndf": 16},  # a few times slower than the tiny 8-channel nets: a wider window to kill in
    "train": {"epochs": EPOCHS, "batch_size": BATCH, "log_every": LOG_EVERY, "eval_every": EVAL_EVERY,
              "checkpoint_every": 1, "device": "cpu"},
    "tracking": {"log_model": False},
}
ONE_THREAD = {"OMP_NUM_THREADS": "1"}  # tiny models on a shared 2-core machine


def flushed_epoch(db) -> tuple[int, list[str]]:
    """(the highest `epoch` marker in MLflow's database, the run ids), read-only while training writes."""
    if not db.is_file():
        return 0, []
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=1) as conn:
            # The training runs only: `dvc repro train` runs the tune stage first (train reads its best trial).
            runs = [row[0] for row in conn.execute(
                "SELECT run_uuid FROM tags WHERE key = 'stage' AND value = 'train'")]
            marker = conn.execute("SELECT MAX(value) FROM metrics WHERE key = 'epoch'").fetchone()[0]
    except sqlite3.OperationalError:  # still being created or migrated, or locked by a write
        return 0, []
    return int(marker or 0), runs


def history(client, run_id, key):
    return sorted(((m.step, m.value) for m in client.get_metric_history(run_id, key)))


def test_sigkill_mid_epoch_then_repro_resumes_the_same_run_without_lost_or_repeated_steps(tmp_path):
    repo = make_repo(tmp_path / "repo", OVERRIDES)
    dvc(repo, "repro", "tune")  # train's upstream (its best trial feeds train.from_study), done before the kill
    db = repo / "mlruns" / "mlflow.db"

    log = tmp_path / "killed.log"
    job = start(repo, str(BIN / "dvc"), "repro", "train", log=log, env=ONE_THREAD)
    deadline = time.monotonic() + 240
    epoch, runs = 0, []
    while epoch < KILL_AFTER_EPOCH:
        assert job.poll() is None, f"training ended before the kill:\n{log.read_text()[-3000:]}"
        assert time.monotonic() < deadline, f"training never reached epoch {KILL_AFTER_EPOCH}:\n{log.read_text()[-3000:]}"
        time.sleep(0.02)
        epoch, runs = flushed_epoch(db)
    os.killpg(job.pid, signal.SIGKILL)  # dvc and the python stage under it, mid-epoch 3
    job.wait()
    killed_at, _ = flushed_epoch(db)
    assert killed_at < EPOCHS, "the kill came too late: training had finished"
    assert f"epoch {killed_at + 1}/{EPOCHS}" not in log.read_text()  # the next epoch had not finished: mid-epoch
    # The dead dvc left its lock on the stage's files behind; the next `dvc repro` must see through it.
    stale = json.loads((repo / ".dvc/tmp/rwlock").read_text())
    assert {info["pid"] for info in stale["write"].values()} == {job.pid}
    assert len(runs) == 1
    run_id = runs[0]
    client = MlflowClient(f"sqlite:///{db}")
    steps_before = [step for step, _ in history(client, run_id, "loss_d")]
    assert client.get_run(run_id).info.status == "RUNNING"  # a killed process closes nothing
    assert not (repo / "models/generator.pt").exists()

    resumed = dvc(repo, "repro", "train")  # must not be blocked by the dead processes' DVC locks
    output = resumed.stdout + resumed.stderr
    assert f"resuming from models/checkpoints/last.pt: epoch {killed_at}" in output, output[-3000:]

    # One run, the same one, finished.
    runs = client.search_runs([client.get_run(run_id).info.experiment_id], "tags.stage = 'train'")
    assert [r.info.run_id for r in runs] == [run_id]
    assert runs[0].info.status == "FINISHED"
    assert runs[0].data.tags["resumed_from_epoch"] == str(killed_at)
    assert json.loads((repo / "models/run.json").read_text())["run_id"] == run_id

    # Every output of the stage.
    lock = yaml.safe_load((repo / "dvc.lock").read_text())["stages"]["train"]
    outputs = [out["path"] for out in lock["outs"]]
    assert {"models/generator.pt", "metrics/train.json", "plots/train.csv", "plots/samples.gif"} <= set(outputs)
    assert not [path for path in outputs if not (repo / path).exists()]
    summary = json.loads((repo / "metrics/train.json").read_text())
    final_step = EPOCHS * STEPS_PER_EPOCH
    assert (summary["epochs"], summary["steps"]) == (EPOCHS, final_step)

    # Metric histories: each step once, none missing, up to the last step.
    for key in ("loss_d", "loss_g", "d_acc_real"):
        assert [step for step, _ in history(client, run_id, key)] == list(range(LOG_EVERY, final_step + 1, LOG_EVERY)), key
    assert history(client, run_id, "epoch") == [(e * STEPS_PER_EPOCH, float(e)) for e in range(1, EPOCHS + 1)]
    assert [step for step, _ in history(client, run_id, "fid")] == [
        e * STEPS_PER_EPOCH for e in range(EVAL_EVERY, EPOCHS + 1, EVAL_EVERY)]
    assert len(client.list_artifacts(run_id, "images")) > 0
    assert steps_before == list(range(LOG_EVERY, killed_at * STEPS_PER_EPOCH + 1, LOG_EVERY))
    print(f"run {run_id}: killed after epoch {killed_at} with loss_d steps {steps_before[0]}..{steps_before[-1]}; "
          f"resumed to {final_step}")

    assert "up to date" in dvc(repo, "status", "train").stdout
