import math

import pytest
import torch
from mlflow.tracking import MlflowClient

from ganops.tracking import flatten
from ganops.tracking.callback import TrackingCallback
from ganops.tracking.mlflow_tracker import MlflowTracker
from ganops.config import from_dict
from ganops.errors import DivergenceError, GanopsError
from ganops.training import METRIC_KEYS, Callback, Trainer

CPU = torch.device("cpu")


def tiny_config(tmp_path, tracking_config=None, **train):
    raw = {"model": {"nz": 16, "ngf": 8, "ndf": 8},
           "train": {"epochs": 1, "batch_size": 32, "log_every": 2, "sample_grid": 16, **train}}
    if tracking_config is not None:
        raw["tracking"] = {"uri": tracking_config.uri, "artifact_root": tracking_config.artifact_root}
    return from_dict(raw)


def logger_for(config, tmp_path):
    """A TrackingCallback over the real MLflow tracker, and a plain MlflowClient to read back what it wrote."""
    tracker = MlflowTracker.connect(config.tracking, "test")
    logger = TrackingCallback(tracker, "tiny", flatten(config.to_dict()), {"dataset": "mnist-5k"},
                              grids_dir=tmp_path / "grids")
    return MlflowClient(tracking_uri=config.tracking.uri), logger


def test_one_epoch_logs_metric_keys_and_an_image(tmp_path, tiny_digits, tracking_config):
    config = tiny_config(tmp_path, tracking_config)
    client, logger = logger_for(config, tmp_path)
    trainer = Trainer(config.model, config.train, tiny_digits, CPU, fid_fn=lambda g: 42.0, callbacks=[logger])
    state = trainer.fit()
    assert state.epoch == 1 and state.step == 256 // 32
    run = client.get_run(state.run_id)
    assert set(METRIC_KEYS) | {"fid", "epoch"} <= set(run.data.metrics)
    assert run.data.metrics["fid"] == 42.0
    assert run.data.params["train.lr"] == "0.0002"
    steps = [m.step for m in client.get_metric_history(state.run_id, "loss_d")]
    assert steps == sorted(set(steps)) and steps[-1] == state.step
    images = [a.path for a in client.list_artifacts(state.run_id, "images")]
    assert any(p.endswith(".png") and "samples" in p for p in images)


def test_batch_larger_than_data_set_is_a_clear_error(tiny_digits):
    config = from_dict({"train": {"batch_size": 1000}})
    with pytest.raises(GanopsError, match=r"train.batch_size 1000 is larger than the data set \(256 images\)"):
        Trainer(config.model, config.train, tiny_digits, CPU)


class PoisonDiscriminator(Callback):
    """Writes NaN into the discriminator after the first logged window, as a diverging run would."""

    def __init__(self):
        self.trainer = None

    def on_train_start(self, trainer, state):
        self.trainer = trainer

    def on_log(self, state, row):
        with torch.no_grad():
            next(self.trainer.discriminator.parameters()).fill_(math.nan)


def test_nan_loss_stops_the_run_and_marks_it_failed_with_the_step(tmp_path, tiny_digits, tracking_config):
    config = tiny_config(tmp_path, tracking_config)
    client, logger = logger_for(config, tmp_path)
    trainer = Trainer(config.model, config.train, tiny_digits, CPU, callbacks=[PoisonDiscriminator(), logger])
    with pytest.raises(DivergenceError, match=r"diverged at step 3 \(epoch 1\)") as info:
        trainer.fit()
    assert info.value.step == 3
    run = client.get_run(logger.run_id)
    assert run.info.status == "FAILED"
    assert run.data.tags["failed_at_step"] == "3"
    assert "diverged" in run.data.tags["failure_reason"]


def test_resume_continues_exactly_where_the_checkpoint_left_off(tmp_path, tiny_digits):
    config = tiny_config(tmp_path, epochs=2)
    straight = Trainer(config.model, config.train, tiny_digits, CPU, checkpoint_dir=tmp_path / "a")
    straight.fit()

    first = config.replace(train={"epochs": 1})
    Trainer(first.model, first.train, tiny_digits, CPU, checkpoint_dir=tmp_path / "b").fit()
    resumed = Trainer(config.model, config.train, tiny_digits, CPU, checkpoint_dir=tmp_path / "b")
    state = resumed.fit()
    assert state.resumed_from == 1 and state.epoch == 2
    for a, b in zip(straight.generator.state_dict().values(), resumed.generator.state_dict().values()):
        assert torch.equal(a, b)
    assert [r["step"] for r in state.history] == [r["step"] for r in straight.state.history]


def test_checkpoint_of_another_setup_is_not_resumed(tmp_path, tiny_digits):
    config = tiny_config(tmp_path)
    Trainer(config.model, config.train, tiny_digits, CPU, checkpoint_dir=tmp_path / "c").fit()
    other = config.replace(train={"lr": 1e-3})
    state = Trainer(other.model, other.train, tiny_digits, CPU, checkpoint_dir=tmp_path / "c").fit()
    assert state.resumed_from is None and state.epoch == 1


def test_truncated_checkpoint_is_a_clear_error(tmp_path, tiny_digits):
    config = tiny_config(tmp_path, epochs=1)
    trainer = Trainer(config.model, config.train, tiny_digits, CPU, checkpoint_dir=tmp_path / "d")
    trainer.fit()
    data = trainer.checkpoint_path.read_bytes()
    trainer.checkpoint_path.write_bytes(data[: len(data) // 2])
    again = Trainer(config.model, config.train, tiny_digits, CPU, checkpoint_dir=tmp_path / "d")
    with pytest.raises(GanopsError, match="training checkpoint is corrupt or truncated"):
        again.fit()


class CaptureGeneratorDtype(Callback):
    def __init__(self):
        self.dtypes = set()

    def on_train_start(self, trainer, state):
        trainer.generator.register_forward_hook(lambda module, args, output: self.dtypes.add(output.dtype))


@pytest.mark.parametrize("amp, dtype", [(False, torch.float32), (True, torch.bfloat16)])
def test_amp_runs_the_networks_in_bf16_on_the_cpu_too(tmp_path, tiny_digits, amp, dtype):
    config = tiny_config(tmp_path, amp=amp)
    capture = CaptureGeneratorDtype()
    state = Trainer(config.model, config.train, tiny_digits, CPU, callbacks=[capture]).fit()
    assert dtype in capture.dtypes
    assert all(math.isfinite(row["loss_d"]) and math.isfinite(row["loss_g"]) for row in state.history)
