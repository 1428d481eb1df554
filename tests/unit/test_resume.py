"""Resuming into the same MLflow run after a crash at the worst moment: the checkpoint is on disk, MLflow's
copy of the epoch is not (the logger sends an epoch only after its checkpoint)."""

import re

import pytest
import torch

from ganops.reporting import SampleGridSaver
from ganops.training import Callback, Trainer
from tests.unit.test_training import logger_for, tiny_config

CPU = torch.device("cpu")


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny models on a shared 2-core machine: two threads spin against other processes (several times slower)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


class Crash(BaseException):
    """A process dying: not an error the loop could handle."""


class CrashAfterCheckpoint(Callback):
    """Dies once the checkpoint of `epoch` is written, before the callbacks after it (the logger) hear of it."""

    def __init__(self, epoch: int):
        self.epoch = epoch

    def on_checkpoint(self, state):
        if state.epoch == self.epoch:
            raise Crash()


def test_crash_between_checkpoint_and_mlflow_flush_loses_and_repeats_nothing(tmp_path, tiny_digits, tracking_config):
    config = tiny_config(tmp_path, tracking_config, epochs=3, log_every=2, eval_every=1)
    grids = SampleGridSaver(tmp_path / "grids")
    client, logger = logger_for(config, tmp_path)
    first = Trainer(config.model, config.train, tiny_digits, CPU, fid_fn=lambda g: 1.0, checkpoint_dir=tmp_path / "ck",
                    callbacks=[grids, CrashAfterCheckpoint(2), logger])
    try:
        first.fit()
        raise AssertionError("no crash")
    except Crash:
        pass
    run_id = logger.run_id
    steps = lambda key: [(m.step, m.value) for m in sorted(client.get_metric_history(run_id, key), key=lambda m: m.step)]
    assert [s for s, _ in steps("loss_d")] == [2, 4, 6, 8]  # epoch 1 only: epoch 2 never reached MLflow

    _, resumed_logger = logger_for(config, tmp_path)
    state = Trainer(config.model, config.train, tiny_digits, CPU, fid_fn=lambda g: 1.0, checkpoint_dir=tmp_path / "ck",
                    callbacks=[grids, resumed_logger]).fit()
    assert state.resumed_from == 2 and state.run_id == run_id == resumed_logger.run_id
    assert [s for s, _ in steps("loss_d")] == list(range(2, 25, 2))
    assert steps("epoch") == [(8, 1.0), (16, 2.0), (24, 3.0)]
    assert [s for s, _ in steps("fid")] == [8, 16, 24]
    images = [a.path for a in client.list_artifacts(run_id, "images")]
    steps_in = [re.search(r"[%+]step[%+](\d+)[%+]", p) for p in images if p.endswith(".png")]
    image_steps = sorted(int(found.group(1)) for found in steps_in if found)
    assert image_steps == [0, 1, 2, 3]  # 0: the untrained generator; epoch 2's grid read back from disk, once
    assert sorted(p for p in images if "_e0" in p) == [f"images/samples_e00{e}.png" for e in range(4)]



def test_resumed_run_continues_the_ema_average_exactly(tmp_path, tiny_digits):
    """N epochs straight vs N/2, a new process (a new Trainer), then resume: the same averaged weights."""
    straight_cfg = tiny_config(tmp_path, epochs=4, ema=0.95, diffaug=["translation"], eval_every=100)
    straight = Trainer(straight_cfg.model, straight_cfg.train, tiny_digits, CPU, checkpoint_dir=tmp_path / "a")
    straight.fit()

    half_cfg = tiny_config(tmp_path, epochs=2, ema=0.95, diffaug=["translation"], eval_every=100)
    Trainer(half_cfg.model, half_cfg.train, tiny_digits, CPU, checkpoint_dir=tmp_path / "b").fit()
    torch.manual_seed(12345)  # a new process starts with other RNG state; the checkpoint must restore it
    resumed = Trainer(straight_cfg.model, straight_cfg.train, tiny_digits, CPU, checkpoint_dir=tmp_path / "b")
    state = resumed.fit()
    assert state.resumed_from == 2 and resumed.ema.updates == straight.ema.updates == 4 * 8
    for key, value in straight.ema.state_dict()["average"].items():
        assert torch.equal(value, resumed.ema.state_dict()["average"][key]), key
    assert torch.equal(straight.sample_grid(), resumed.sample_grid())
