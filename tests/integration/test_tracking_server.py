"""Tracking over HTTP, for real: PostgreSQL and `mlflow server` with proxied artifacts, started by the suite
(the session fixture `local_servers` in tests/conftest.py, the same code as `make servers`)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from mlflow.tracking import MlflowClient

from ganops import servers
from ganops.best_params import best_params_text
from ganops.config import from_dict
from ganops.fileio import write_text
from ganops.reporting import SampleGridSaver
from ganops.tracking import TrackerUnavailable, flatten
from ganops.tracking.callback import TrackingCallback
from ganops.tracking.mlflow_tracker import MlflowTracker
from ganops.training import Callback, Trainer
from tests.integration.pipeline_repo import TINY, build_fid_inputs, merge, write_params

ROOT = Path(__file__).resolve().parents[2]
CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    """Prepared digits, feature net and FID statistics for the tiny params (what fid_stats leaves)."""
    root = tmp_path_factory.mktemp("server-project")
    build_fid_inputs(from_dict(TINY), root)
    return root


def run_stage(root: Path, stage: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=f"{ROOT / 'src'}{os.pathsep}{ROOT}", OMP_NUM_THREADS="1")
    env.pop("GANOPS_PARAMS", None)
    return subprocess.run([sys.executable, "-m", f"pipeline.{stage}"], cwd=root, env=env, capture_output=True,
                          text=True, timeout=300)


def image_steps(client: MlflowClient, run_id: str) -> list[int]:
    """The steps of the image card's grids (MLflow's own names), not the step-named copies beside them."""
    found = [re.search(r"[%+]step[%+](\d+)[%+]", a.path) for a in client.list_artifacts(run_id, "images")
             if a.path.endswith(".png")]
    return sorted(int(match.group(1)) for match in found if match)


@pytest.mark.slow
def test_train_stage_logs_over_http_and_the_model_loads_in_another_process(project, local_servers):
    """Also the path from a study to the final model: train.from_study takes the best trial's values."""
    uri = local_servers.tracking_uri
    best = {"model": {"ngf": 4, "ndf": 8}, "train": {"lr": 0.0007, "beta1": 0.6}}
    write_text(project / "results" / "tune" / "best_params.yaml", best_params_text(best, "the-study", 7, 123.0))
    write_params(project, merge(TINY, {"train": {"device": "cpu", "from_study": True},
                                       "tracking": {"uri": uri, "experiment": "over-http", "log_model": True}}))
    result = run_stage(project, "train")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "training with trial 7 of study 'the-study'" in result.stderr

    run_id = json.loads((project / "models" / "run.json").read_text())["run_id"]
    client = MlflowClient(uri)
    run = client.get_run(run_id)
    assert run.info.status == "FINISHED" and run.info.artifact_uri.startswith("mlflow-artifacts:")  # proxied
    assert (run.data.tags["from_study"], run.data.tags["from_trial"]) == ("the-study", "7")
    assert (run.data.params["train.lr"], run.data.params["model.ngf"], run.data.params["train.epochs"]) == ("0.0007", "4", "2")
    assert [m.step for m in client.get_metric_history(run_id, "fid")] == [8, 16]  # 2 epochs of 8 steps
    assert image_steps(client, run_id) == [0, 1, 2]  # 0: the untrained generator
    assert "plots/samples.gif" in {a.path for a in client.list_artifacts(run_id, "plots")}
    # Proxied: the server wrote the files into its --artifacts-destination; the client kept none locally.
    assert client.get_experiment(run.info.experiment_id).artifact_location.startswith("mlflow-artifacts:")
    assert list(Path(local_servers.folder, "artifacts").rglob("samples.gif"))
    assert not (project / "mlruns" / "artifacts").exists()

    loader = ("import sys, mlflow, torch; mlflow.set_tracking_uri(sys.argv[1]); "
              "g = mlflow.pytorch.load_model(f'runs:/{sys.argv[2]}/generator'); "
              "print(tuple(g(torch.randn(3, 16, 1, 1)).shape))")
    loaded = subprocess.run([sys.executable, "-c", loader, uri, run_id], capture_output=True, text=True, timeout=120,
                            env=dict(os.environ, PYTHONPATH=str(ROOT / "src")))
    assert loaded.returncode == 0, loaded.stderr[-3000:]
    assert loaded.stdout.strip().splitlines()[-1] == "(3, 1, 32, 32)"


class StopServerAfterCheckpoint(Callback):
    """Stops the MLflow server once the checkpoint of `epoch` is written and flushed."""

    def __init__(self, pid: int, epoch: int):
        self.pid, self.epoch = pid, epoch

    def on_checkpoint(self, state):
        if state.epoch == self.epoch:
            servers.stop_process(self.pid)


@pytest.mark.slow
def test_server_down_mid_run_training_goes_on_and_resumes_with_nothing_lost_or_repeated(
        project, local_servers, tmp_path, monkeypatch):
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")  # fail fast while the server is down
    from ganops.data import load_prepared
    from ganops.paths import paths_for

    prepared = load_prepared(paths_for(from_dict(TINY), project).prepared)
    port = servers.free_port()
    backend, artifacts = local_servers.postgres_url("mlflow"), Path(local_servers.folder) / "artifacts"
    config = from_dict(merge(TINY, {"train": {"epochs": 3, "log_every": 2, "eval_every": 1, "device": "cpu"},
                                    "tracking": {"uri": f"http://127.0.0.1:{port}", "experiment": "server-down"}}))
    grids = SampleGridSaver(tmp_path / "grids")

    def trainer(*callbacks: Callback) -> Trainer:
        return Trainer(config.model, config.train, prepared, CPU, fid_fn=lambda g: 1.0,
                       checkpoint_dir=tmp_path / "ck", callbacks=[grids, *callbacks])

    def logger() -> TrackingCallback:
        return TrackingCallback(MlflowTracker.connect(config.tracking, "server-down"), "down",
                                flatten(config.to_dict()), {"stage": "train"}, grids_dir=tmp_path / "grids")

    server = servers.start_mlflow_server(backend, artifacts, port, tmp_path / "mlflow.log")
    try:
        first_logger = logger()
        first = trainer(first_logger, StopServerAfterCheckpoint(server.pid, epoch=1))
        with pytest.raises(TrackerUnavailable, match=r"^the MLflow tracking server http://127\.0\.0\.1:\d+ does not "
                                                     r"answer \(Connection refused\); start it again and rerun the same command"):
            first.fit()
        assert first.state.epoch == 3  # training went on through the outage; only the last flush failed

        server = servers.start_mlflow_server(backend, artifacts, port, tmp_path / "mlflow.log")
        resumed_logger = logger()
        state = trainer(resumed_logger).fit()
        assert state.resumed_from == 3 and resumed_logger.run_id == first_logger.run_id
    finally:
        servers.stop_process(server.pid)
    client = MlflowClient(local_servers.tracking_uri)  # the same database, read through the session's server
    run_id = first_logger.run_id
    steps = lambda key: sorted(m.step for m in client.get_metric_history(run_id, key))  # noqa: E731
    assert steps("loss_d") == list(range(2, 25, 2))  # every step once: epoch 1 sent live, 2-3 after the outage
    assert steps("fid") == [8, 16, 24]
    assert steps("epoch") == [8, 24]  # the marker of each flush: epoch 1, then 2-3 together after the outage
    assert image_steps(client, run_id) == [0, 1, 2, 3]
