"""Data-parallel training through torchrun on this CPU machine (gloo, 2 processes), end to end.

Each case runs the real train stage in a work folder of its own: `torchrun ... -m pipeline.train`, or
`python -m pipeline.train` with `train.nproc_per_node: 2` (DVC's command: the stage starts torchrun's
launcher itself). Tiny setup: 256 digits, widths 8, two epochs, one thread per process.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml

from ganops.config import from_dict
from ganops.fileio import torch_load
from tests.integration.pipeline_repo import ROOT, TINY, build_fid_inputs, merge

pytestmark = pytest.mark.slow

BASE = merge(yaml.safe_load((ROOT / "params.yaml").read_text()),
             merge(TINY, {"train": {"device": "cpu", "amp": False, "diffaug": ["translation", "cutout"], "hflip": True},
                          "tracking": {"enabled": False}}))
TORCHRUN = [str(Path(sys.executable).parent / "torchrun")]
CHECKPOINT = "models/checkpoints/last.pt"


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    """Prepared digits, the feature classifier and its FID statistics, built once through the library."""
    root = tmp_path_factory.mktemp("ddp-project")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        build_fid_inputs(from_dict(BASE), root)
    finally:
        torch.set_num_threads(threads)
    shutil.rmtree(root / "data" / "raw")
    return root


def workdir(project: Path, target: Path, **train) -> Path:
    shutil.copytree(project, target)
    params = merge(BASE, {"train": train})
    (target / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    return target


def with_tracking(work: Path) -> str:
    uri = f"sqlite:///{work}/mlruns/mlflow.db"
    params = yaml.safe_load((work / "params.yaml").read_text())
    params["tracking"].update(enabled=True, uri=uri, artifact_root=str(work / "mlruns" / "artifacts"))
    (work / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    (work / "mlruns").mkdir()
    return uri


def env() -> dict[str, str]:
    return dict(os.environ, PYTHONPATH=f"{ROOT}{os.pathsep}{ROOT / 'src'}", OMP_NUM_THREADS="1")


def stage(work: Path, *args: str, torchrun: bool = False, timeout: int = 300) -> subprocess.CompletedProcess:
    command = [*TORCHRUN, *args, "-m", "pipeline.train"] if torchrun else [sys.executable, "-m", "pipeline.train", *args]
    return subprocess.run(command, cwd=work, env=env(), capture_output=True, text=True, timeout=timeout)


def error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("ganops train: error: ")]


def history(work: Path) -> list[dict[str, float]]:
    import pandas as pd

    return pd.read_csv(work / "plots" / "train.csv").to_dict("records")


# ---------------------------------------------------------------------------------------------------
# Two processes against one

def test_torchrun_two_processes_follow_the_one_process_run(project, tmp_path):
    """torchrun --nproc_per_node 2 against one process, same params (global batch 32, seed 42).

    Both ranks draw the one-process run's noise, flips and DiffAugment parameters for the global batch and
    keep their half, and train on their half of the same data batches; gradients are averaged before
    every step. What differs: the generator's BatchNorm normalises each half with its own statistics
    (16 rows instead of 32), and sums run in another order. So the runs are not equal, but close:
    - the logged losses and discriminator outputs within 2% (measured: < 0.1%);
    - the final weights, as the L2 distance between the runs over how far training moved the one-process
      run from its start: the discriminator (spectral norm, no BatchNorm) within 10% (measured: 2.5%),
      the generator (BatchNorm) within 50% (measured: 29%; Adam's step is about lr per weight whatever
      the gradient's size, so for weights with small gradients the slightly different batch statistics
      flip the step's sign). A different seed puts them 15 to 20 times that far apart.
    """
    one = workdir(project, tmp_path / "one")
    two = workdir(project, tmp_path / "two")
    single = stage(one)
    assert single.returncode == 0, single.stderr[-3000:]
    double = stage(two, "--nproc_per_node", "2", torchrun=True)
    assert double.returncode == 0, double.stderr[-3000:]
    assert double.stderr.count("trained 2 epochs (16 steps)") == 1  # rank 0 alone reports

    rows_one, rows_two = history(one), history(two)
    assert [r["step"] for r in rows_one] == [r["step"] for r in rows_two] == [4, 8, 12, 16]
    for a, b in zip(rows_one, rows_two):
        for key in ("loss_d", "loss_g", "d_x", "d_g_z"):
            assert abs(a[key] - b[key]) <= 0.02 * max(1.0, abs(a[key])), (key, a, b)

    from ganops.training import Trainer
    from ganops.data import load_prepared

    config = from_dict(yaml.safe_load((one / "params.yaml").read_text()))
    start = Trainer(config.model, config.train, load_prepared(one / "data/prepared/mnist-5k.pt"), torch.device("cpu"))
    ckpt_one, ckpt_two = torch_load(one / CHECKPOINT, "one"), torch_load(two / CHECKPOINT, "two")
    for name, net, share in (("generator", start.generator, 0.5), ("discriminator", start.discriminator, 0.1)):
        keys = [k for k, v in ckpt_one[name].items()  # weights, not BatchNorm's running or spectral norm's statistics
                if v.is_floating_point() and "running" not in k and not k.endswith(("_u", "_v"))]
        flat = lambda state: torch.cat([state[k].flatten().float() for k in keys])  # noqa: E731
        moved = (flat(ckpt_one[name]) - flat(net.state_dict())).norm()
        apart = (flat(ckpt_one[name]) - flat(ckpt_two[name])).norm()
        assert apart <= share * moved, f"{name}: {apart:.3g} apart, training moved it {moved:.3g}"
    for output in ("models/generator.pt", "metrics/train.json", "plots/samples.gif", "models/run.json"):
        assert (two / output).is_file(), output
    assert not list(two.rglob("*.tmp"))


# ---------------------------------------------------------------------------------------------------
# A rank killed, then resumed with another process count

def rank_pid(launcher: int, rank: int, timeout: float = 60) -> int:
    """The pid of the worker of `launcher` (its stage process) that holds RANK=`rank`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit() or int(entry.name) == launcher:
                continue
            try:
                environ = (entry / "environ").read_bytes().split(b"\0")
                status = (entry / "status").read_text()
            except OSError:
                continue
            parent = int(next(line.split()[1] for line in status.splitlines() if line.startswith("PPid:")))
            if f"RANK={rank}".encode() in environ and parent == launcher:
                return int(entry.name)
        time.sleep(0.1)
    raise AssertionError(f"no rank {rank} under {launcher}")


def test_a_sigkilled_rank_stops_the_job_and_a_rerun_resumes_into_the_same_run(project, tmp_path):
    from mlflow.tracking import MlflowClient

    work = workdir(project, tmp_path / "work", epochs=3, batch_size=8, log_every=4, nproc_per_node=2, dist_timeout=30)
    uri = with_tracking(work)
    log = open(tmp_path / "first.log", "w")
    first = subprocess.Popen([sys.executable, "-m", "pipeline.train"], cwd=work, env=env(), stdout=log,
                             stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 240
        while not (work / CHECKPOINT).exists() and first.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert first.poll() is None, (tmp_path / "first.log").read_text()[-3000:]
        victim = rank_pid(first.pid, 1)
        time.sleep(0.5)  # into epoch 2 (32 steps an epoch)
        os.kill(victim, signal.SIGKILL)
        killed = time.monotonic()
        code = first.wait(timeout=60)  # bounded: torchrun's agent stops the others; a peer's collective fails at once
        ended_after = time.monotonic() - killed
    finally:
        if first.poll() is None:
            first.kill()
        log.close()
    output = (tmp_path / "first.log").read_text()
    assert code == 1 and ended_after < 30, output[-3000:]
    assert error_lines(output) == [error_lines(output)[-1]] and "rank 1" in error_lines(output)[-1], output[-3000:]
    assert "killed by SIGKILL" in output and "Traceback" not in output, output[-3000:]
    kept = torch_load(work / CHECKPOINT, "training checkpoint")  # the last good one, whole
    assert 1 <= kept["state"]["epoch"] < 3
    assert not list(work.rglob("*.tmp"))

    # Resumed by one process (a different count): the same MLflow run, every step logged once.
    params = yaml.safe_load((work / "params.yaml").read_text())
    params["train"]["nproc_per_node"] = 1
    (work / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    second = stage(work)
    assert second.returncode == 0, second.stderr[-3000:]
    client = MlflowClient(tracking_uri=uri)
    runs = [run for experiment in client.search_experiments() for run in client.search_runs([experiment.experiment_id])]
    assert len(runs) == 1 and runs[0].info.status == "FINISHED"
    run_id = runs[0].info.run_id
    steps = sorted(m.step for m in client.get_metric_history(run_id, "loss_d"))
    assert steps == list(range(4, 3 * 32 + 1, 4))  # each once, none missing
    assert sorted((m.step, m.value) for m in client.get_metric_history(run_id, "epoch")) == [(32, 1.0), (64, 2.0), (96, 3.0)]
    assert runs[0].data.tags["world_size"] == "2" and runs[0].data.tags["resumed_from_epoch"] == str(kept["state"]["epoch"])
    assert not any("nproc" in key or "dist_timeout" in key for key in runs[0].data.params)


# ---------------------------------------------------------------------------------------------------
# Bad input: one line, exit 2, nothing written


def closed_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


BAD = [
    ("nproc-over-batch", {"nproc_per_node": 64}, (), "train.nproc_per_node: 64 is not allowed (at most train.batch_size (32)"),
    ("batch-not-divisible", {"nproc_per_node": 3}, (), "train.nproc_per_node: 3 is not allowed (must divide the global "
                                                       "train.batch_size 32 evenly; allowed: 1, 2, 4, 8, 16, 32)"),
    ("torchrun-option-not-divisible", {}, ("--nproc_per_node", "3"), "world size (torchrun: --nnodes x --nproc_per_node): 3"),
    ("rendezvous-unreachable", {"dist_timeout": 3}, ("--nnodes", "2", "--rdzv_backend", "c10d", "--rdzv_conf", "is_host=false",
                                                     "--rdzv_endpoint", "127.0.0.1:{port}"),
     "torchrun rendezvous at 127.0.0.1:{port} (c10d) failed within 3 s (train.dist_timeout)"),
]


@pytest.mark.parametrize("name, train, args, expect", BAD, ids=[case[0] for case in BAD])
def test_bad_distributed_input_is_one_line(project, tmp_path, name, train, args, expect):
    port = closed_port()
    work = workdir(project, tmp_path / name, **train)
    started = time.monotonic()
    result = stage(work, *(a.format(port=port) for a in args), timeout=120)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode == 2, result.stderr[-3000:]
    assert "Traceback" not in result.stderr and lines and lines[-1] == error_lines(result.stderr)[0], result.stderr[-3000:]
    assert expect.format(port=port) in lines[-1], lines[-1]
    assert not (work / "models" / "checkpoints").exists() and not (work / "plots").exists()
    assert time.monotonic() - started < 60
    print(f"{name}: {lines[-1]}")


def test_plain_torchrun_with_a_world_that_does_not_divide_the_batch_prints_the_line_once(project, tmp_path):
    """Under the torchrun command every rank fails alike; rank 0 alone prints the line (torchrun adds its report)."""
    work = workdir(project, tmp_path / "work")
    result = stage(work, "--nproc_per_node", "3", torchrun=True)
    assert result.returncode != 0
    assert error_lines(result.stderr) == ["ganops train: error: world size (torchrun: --nnodes x --nproc_per_node): 3 "
                                          "is not allowed (must divide the global train.batch_size 32 evenly; allowed: "
                                          "1, 2, 4, 8, 16, 32)"], result.stderr[-3000:]
    assert not (work / "models" / "checkpoints").exists()
