"""`dvc repro` of the whole pipeline on a tiny config, through real DVC, MLflow and git."""

import json
import re

import pytest
import yaml
from mlflow.tracking import MlflowClient

from tests.integration.pipeline_repo import dvc, make_repo

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def repo(tmp_path_factory):
    repo = make_repo(tmp_path_factory.mktemp("pipeline"))
    dvc(repo, "repro")
    return repo


def declared_outputs(repo):
    lock = yaml.safe_load((repo / "dvc.lock").read_text())
    return {out["path"] for stage in lock["stages"].values() for out in stage.get("outs", [])}


def test_repro_produces_every_declared_output(repo):
    outputs = declared_outputs(repo)
    assert {"data/prepared/mnist-5k.pt", "data/fid/mnist-5k-classifier.npz", "models/generator.pt",
            "metrics/eval.json", "metrics/train.json", "plots/train.csv", "plots/samples.gif",
            "results/tune/best_params.yaml", "results/tune/trials.csv"} <= outputs
    missing = [path for path in outputs if not (repo / path).exists()]
    assert not missing
    evaluation = json.loads((repo / "metrics/eval.json").read_text())
    assert evaluation["fid"] > 0 and evaluation["samples"] == 128
    accuracy = json.loads((repo / "metrics/fid_stats.json").read_text())["classifier_accuracy"]
    assert 0 <= accuracy <= 1


def test_training_run_in_mlflow_has_metrics_images_gif_and_model(repo):
    run_id = json.loads((repo / "models/run.json").read_text())["run_id"]
    client = MlflowClient(f"sqlite:///{repo}/mlruns/mlflow.db")
    run = client.get_run(run_id)
    assert run.info.status == "FINISHED"
    assert {"loss_d", "loss_g", "d_acc_real", "d_acc_fake", "fid", "eval_fid", "eval_kid_mean"} <= set(run.data.metrics)
    assert run.data.tags["dataset"] == "mnist-5k"
    assert len(run.data.tags["mlflow.source.git.commit"]) == 40
    artifacts = {a.path for a in client.list_artifacts(run_id)}
    assert {"images", "plots", "evaluation"} <= artifacts
    assert "plots/samples.gif" in {a.path for a in client.list_artifacts(run_id, "plots")}
    experiment = client.get_experiment(run.info.experiment_id)
    assert experiment.name == "ganops-mnist-5k"
    models = client.search_logged_models(experiment_ids=[run.info.experiment_id])
    assert any(m.source_run_id == run_id and m.name == "generator" for m in models)
    # What the run page shows: a name telling runs apart, lineage, a description, the registered version.
    assert experiment.tags["mlflow.experimentKind"] == "custom_model_development"
    lr = yaml.safe_load((repo / "params.yaml").read_text())["train"]["lr"]  # the name shows what differs from the code's defaults
    assert run.info.run_name == f"dcgan-mnist-5k-lr{lr:g}-ngf8-ndf8-ep2"
    assert not any(key.startswith(("tune.", "tracking.")) for key in run.data.params)
    (dataset,) = run.inputs.dataset_inputs
    lock = yaml.safe_load((repo / "dvc.lock").read_text())
    assert dataset.dataset.digest == lock["stages"]["preprocess"]["outs"][0]["md5"] == run.data.tags["data_dvc_md5"]
    assert run.data.tags["git_dirty"] == "false" and run.data.tags["mlflow.source.name"] == "pipeline/train.py"
    assert "evaluation (128 samples)" in run.data.tags["mlflow.note.content"]
    champion = client.get_model_version_by_alias("ganops-mnist-5k", "champion")
    assert champion.run_id == run_id and float(champion.tags["fid"]) == pytest.approx(run.data.metrics["eval_fid"])
    images = {a.path for a in client.list_artifacts(run_id, "images")}
    assert {"images/samples_e000.png", "images/samples_e002.png"} <= images


def test_second_repro_skips_every_stage(repo):
    again = dvc(repo, "repro")
    assert "Running stage" not in again.stdout
    assert "up to date" in dvc(repo, "status").stdout


def test_changing_lr_reruns_only_train_and_evaluate_in_a_run_named_after_the_experiment(repo):
    output = dvc(repo, "exp", "run", "-n", "lr-small", "-S", "train.lr=0.0001").stdout
    ran = set(re.findall(r"Running stage '(\w+)'", output))
    assert ran == {"train", "evaluate"}
    client = MlflowClient(f"sqlite:///{repo}/mlruns/mlflow.db")
    run_id = json.loads((repo / "models/run.json").read_text())["run_id"]
    assert client.get_run(run_id).info.run_name == "lr-small"  # DVC_EXP_NAME, as `dvc exp show` lists it
    versions = client.search_model_versions("name='ganops-mnist-5k'")
    assert run_id in {v.run_id for v in versions} and len(versions) == 2
    champion = client.get_model_version_by_alias("ganops-mnist-5k", "champion")
    assert float(champion.tags["fid"]) == min(float(v.tags["fid"]) for v in versions)
