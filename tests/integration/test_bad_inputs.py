"""Bad inputs through the real command line: `python -m pipeline.<stage>` with a broken params file or file.

Every case must end the same way: exit code 2, one line `ganops <stage>: error: ...` last on stderr that
names the bad value and what is allowed, no traceback, and no output half-written (the stage's declared
outputs are absent or unchanged, and no temporary file is left behind).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import sqlite3
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

import numpy as np
import pytest
import torch
import yaml

from ganops.config import from_dict
from ganops.paths import paths_for
from ganops.fileio import torch_save
from ganops.training import Trainer
from tests.integration.pipeline_repo import ROOT, TINY, build_fid_inputs, merge

pytestmark = pytest.mark.slow

# The tiny setup, on the CPU and without tracking unless a case turns it on (no MLflow database to migrate).
BASE = merge(yaml.safe_load((ROOT / "params.yaml").read_text()),
             merge(TINY, {"train": {"device": "cpu"}, "tracking": {"enabled": False}}))
CHECKPOINT = "models/checkpoints/last.pt"
STATS = "data/fid/mnist-5k-classifier.npz"


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    """What the later stages read, built once through the library: prepared digits, the feature classifier,
    FID statistics, and a one-epoch checkpoint and generator."""
    root = tmp_path_factory.mktemp("bad-inputs-project")
    config = from_dict(BASE)
    paths = paths_for(config, root)
    cpu = torch.device("cpu")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        prepared = build_fid_inputs(config, root)
        one_epoch = config.replace(train={"epochs": 1})
        trainer = Trainer(one_epoch.model, one_epoch.train, prepared, cpu, checkpoint_dir=paths.checkpoints)
        trainer.fit()
        torch_save(trainer.generator_record(), paths.generator)
    finally:
        torch.set_num_threads(threads)
    shutil.rmtree(paths.raw_dir)
    return root


# ---------------------------------------------------------------------------------------------------
# The cases

Params = dict
Setup = Callable[[Path], None]


@dataclass
class Case:
    id: str
    stage: str
    expect: tuple[str, ...]  # substrings of the error line: the bad value and what is allowed
    edit: Optional[Callable[[Params], None]] = None  # changes the tiny params in place
    text: Optional[str] = None  # a params file's whole text instead
    setup: Optional[Setup] = None  # breaks a file in the working folder
    copy: tuple[str, ...] = ("data/prepared", "data/fid", "models/feature_net.pt")
    extra: dict = field(default_factory=dict)  # environment


def put(section: str, key: str, value) -> Callable[[Params], None]:
    def edit(params: Params) -> None:
        params[section][key] = value
    return edit


def delete(section: str, key: str) -> Callable[[Params], None]:
    def edit(params: Params) -> None:
        del params[section][key]
    return edit


def rename_section(old: str, new: str) -> Callable[[Params], None]:
    def edit(params: Params) -> None:
        params[new] = params.pop(old)
    return edit


def closed_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def unreachable_tracking(params: Params) -> None:
    params["tracking"].update(enabled=True, uri=f"http://127.0.0.1:{CLOSED_PORT}")


def truncate(relative: str) -> Setup:
    def setup(work: Path) -> None:
        path = work / relative
        data = path.read_bytes()
        path.write_bytes(data[: len(data) // 2])
    return setup


def overwrite(relative: str, data: bytes) -> Setup:
    def setup(work: Path) -> None:
        (work / relative).parent.mkdir(parents=True, exist_ok=True)
        (work / relative).write_bytes(data)
    return setup


def statistics(**arrays: np.ndarray) -> Setup:
    def setup(work: Path) -> None:
        with open(work / STATS, "wb") as fh:
            np.savez(fh, **arrays)
        (work / "metrics").mkdir(exist_ok=True)  # an earlier evaluation's result, which must survive
        (work / "metrics/eval.json").write_text('{"fid": 1.0}\n')
    return setup


def remove(relative: str) -> Setup:
    def setup(work: Path) -> None:
        target = work / relative
        shutil.rmtree(target) if target.is_dir() else target.unlink()
    return setup


def damaged_store(revision: str, cut: bool) -> Setup:
    """mlruns/mlflow.db shaped like MLflow's (its alembic_version table and a few pages of runs), cut in
    half as a full disk or a file-system crash leaves it, or whole at another schema revision."""
    def setup(work: Path) -> None:
        path = work / "mlruns" / "mlflow.db"
        path.parent.mkdir(parents=True, exist_ok=True)
        with contextlib.closing(sqlite3.connect(path)) as db:
            db.execute("CREATE TABLE alembic_version (version_num VARCHAR(32) NOT NULL PRIMARY KEY)")
            db.execute("INSERT INTO alembic_version VALUES (?)", (revision,))
            db.execute("CREATE TABLE runs (run_uuid VARCHAR(32) PRIMARY KEY, name TEXT)")
            db.executemany("INSERT INTO runs VALUES (?, ?)", [(f"{i:032x}", "x" * 200) for i in range(200)])
            db.commit()
        if cut:
            truncate("mlruns/mlflow.db")(work)
        (work / "models").mkdir(exist_ok=True)  # the record of the training run that evaluate logs into
        (work / "models" / "run.json").write_text('{"run_id": "0123456789abcdef0123456789abcdef"}\n')
    return setup


def with_store(params: Params) -> None:
    params["tracking"].update(enabled=True, uri="sqlite:///mlruns/mlflow.db")


CLOSED_PORT = closed_port()
CORRUPT_STORE = ("tracking store mlruns/mlflow.db is corrupt (database disk image is malformed)",
                 "restore a copy of it, or move mlruns/mlflow.db aside to start a fresh store")
WITH_RUN = ("data/prepared", "data/fid", "models/feature_net.pt", "models/generator.pt")
WITH_CHECKPOINT = ("data/prepared", "data/fid", "models/feature_net.pt", "models/checkpoints")

CASES = [
    # params values
    Case("lr-zero", "train", ("train.lr: 0.0 is not allowed", "must be in (0, 1)"), put("train", "lr", 0)),
    Case("lr-negative", "train", ("train.lr: -0.001 is not allowed", "must be in (0, 1)"), put("train", "lr", -0.001)),
    Case("lr-not-a-number", "train", ("train.lr: 'fast' must be a number",), put("train", "lr", "fast")),
    Case("beta1-one", "train", ("train.beta1: 1.0 is not allowed", "must be in [0, 1)"), put("train", "beta1", 1.0)),
    Case("beta1-negative", "tune", ("train.beta1: -0.1 is not allowed", "must be in [0, 1)"), put("train", "beta1", -0.1)),
    Case("epochs-negative", "train", ("train.epochs: -3 is not allowed", "must be > 0"), put("train", "epochs", -3)),
    Case("eval-every-zero", "train", ("train.eval_every: 0 is not allowed", "must be > 0"), put("train", "eval_every", 0)),
    Case("unknown-dataset", "download", ("data.dataset: 'imagenet' is not allowed", "mnist-5k", "cifar10", "folder"),
         put("data", "dataset", "imagenet")),
    Case("image-size-48", "preprocess", ("data.image_size: 48 is not allowed", "32, 64, 128 or null"),
         put("data", "image_size", 48)),
    Case("channels-zero", "preprocess", ("data.channels: 0 is not allowed", "1, 3 or null"), put("data", "channels", 0)),
    Case("tune-pruner", "tune", ("tune.pruner: 'medain' is not allowed", "median, hyperband, none"),
         put("tune", "pruner", "medain")),
    Case("tracking-scheme", "train", ("tracking.uri: 'ftp://example.org/mlflow' is not allowed", "sqlite:///<file>",
                                      "http(s)://<server>"), put("tracking", "uri", "ftp://example.org/mlflow")),
    # params structure
    Case("missing-key", "train", ("missing params key 'train.lr'",), delete("train", "lr")),
    Case("typo-section", "train", ("unknown key 'params.trian'", "did you mean 'train'?", "allowed: data, model, train"),
         rename_section("train", "trian")),
    Case("typo-key", "evaluate", ("unknown key 'train.lrr'", "did you mean 'lr'?", "allowed: epochs, batch_size, lr"),
         put("train", "lrr", 1e-4)),
    Case("not-yaml", "fid_stats", ("params.yaml is not valid YAML", "at line 3, column"),
         text="data:\n  dataset: mnist-5k\n limit: [256\n"),
    Case("not-a-mapping", "preprocess", ("params.yaml must hold a mapping of sections, got list",), text="- data\n- model\n"),
    Case("params-missing", "train", ("params file not found", "nowhere.yaml"), extra={"GANOPS_PARAMS": "nowhere.yaml"}),
    # values that only the data can refute
    Case("batch-larger-than-data", "train", ("train.batch_size 512 is larger than the data set (256 images)",
                                             "allowed: 1 to 256"), put("train", "batch_size", 512)),
    # files
    Case("train-before-preprocess", "train", ("prepared data set not found: data/prepared/mnist-5k.pt",
                                              "dvc repro"), copy=("data/fid", "models/feature_net.pt")),
    Case("evaluate-before-train", "evaluate", ("trained generator not found: models/generator.pt",)),
    Case("truncated-checkpoint", "train", ("training checkpoint is corrupt or truncated: models/checkpoints/last.pt",
                                           "delete it and re-run"), setup=truncate(CHECKPOINT), copy=WITH_CHECKPOINT),
    Case("corrupt-statistics", "train", (f"FID statistics {STATS} are corrupt or not an .npz archive",
                                         "expected a zip of 'mu' and 'sigma'", "re-run `dvc repro fid_stats`"), setup=overwrite(STATS, b"not a zip archive" * 8)),
    Case("statistics-wrong-keys", "evaluate", (f"FID statistics {STATS} lack 'mu', 'sigma' (found: mean, cov)",
                                               "re-run `dvc repro fid_stats`"),
         setup=statistics(mean=np.zeros(8), cov=np.eye(8)), copy=WITH_RUN),
    Case("statistics-wrong-dims", "evaluate", (f"FID statistics in {STATS} have 5 dims but the extractor gives",
                                               "re-run `dvc repro fid_stats`"),
         setup=statistics(mu=np.zeros(5), sigma=np.eye(5)), copy=WITH_RUN),
    Case("output-folder-is-a-file", "download", ("data/raw/mnist-5k: Not a directory", "check the path"),
         setup=overwrite("data/raw", b"a file where a folder belongs"), copy=()),
    # services
    Case("store-truncated-train", "train", CORRUPT_STORE, with_store, setup=damaged_store("dc11669786a5", cut=True)),
    Case("store-truncated-evaluate", "evaluate", CORRUPT_STORE, with_store, setup=damaged_store("dc11669786a5", cut=True),
         copy=WITH_RUN),
    Case("store-truncated-tune", "tune", CORRUPT_STORE, with_store, setup=damaged_store("dc11669786a5", cut=True)),
    Case("store-too-old", "train", ("tracking store mlruns/mlflow.db has schema 75868b020152, older than MLflow",
                                    "then run `mlflow db upgrade sqlite:///mlruns/mlflow.db`"),
         with_store, setup=damaged_store("75868b020152", cut=False)),
    Case("store-too-new", "evaluate", ("tracking store mlruns/mlflow.db has schema ffff00000000, unknown to MLflow",
                                       "install the MLflow that wrote it"),
         with_store, setup=damaged_store("ffff00000000", cut=False), copy=WITH_RUN),
    Case("tracking-unreachable", "train", (f"tracking.uri 'http://127.0.0.1:{CLOSED_PORT}' is unreachable",
                                           "set tracking.enabled: false"), unreachable_tracking),
    Case("tune-storage", "tune", ("tune.storage 'redis://localhost:6379/0' is not allowed", "sqlite:///<file>",
                                  "journal:<file>"), put("tune", "storage", "redis://localhost:6379/0")),
]


# ---------------------------------------------------------------------------------------------------
# Running a case

def declared_outputs(stage: str) -> list[str]:
    """The stage's outs, metrics and plots from dvc.yaml, for the tiny params' data set and extractor."""
    spec = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"][stage]
    entries = [entry for kind in ("outs", "metrics", "plots") for entry in spec.get(kind, [])]
    names = [entry if isinstance(entry, str) else next(iter(entry)) for entry in entries]
    return [name.replace("${data.dataset}", BASE["data"]["dataset"]).replace("${fid.extractor}", BASE["fid"]["extractor"])
            for name in names]


def fingerprint(path: Path) -> Optional[dict[str, str]]:
    """{relative file: sha256} of a file or a folder; None when absent."""
    if not path.exists():
        return None
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    return {str(p.relative_to(path)): hashlib.sha256(p.read_bytes()).hexdigest() for p in files}


def prepare_workdir(case: Case, project: Path, work: Path) -> Path:
    for relative in case.copy:
        source, target = project / relative, work / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        (shutil.copytree if source.is_dir() else shutil.copyfile)(source, target)
    if case.setup:
        case.setup(work)
    params = work / "params.yaml"
    if case.text is not None:
        params.write_text(case.text)
    else:
        values = yaml.safe_load(yaml.safe_dump(BASE))  # a deep copy
        if case.edit:
            case.edit(values)
        params.write_text(yaml.safe_dump(values, sort_keys=False))
    return params


def run_stage(stage: str, work: Path, params: Path, extra: dict) -> subprocess.CompletedProcess:
    env = dict(os.environ, GANOPS_PARAMS=str(params.name), PYTHONPATH=f"{ROOT}{os.pathsep}{ROOT / 'src'}",
               OMP_NUM_THREADS="1")
    env.update(extra)
    return subprocess.run([sys.executable, "-m", f"pipeline.{stage}"], cwd=work, env=env, capture_output=True,
                          text=True, timeout=120)


@dataclass
class Outcome:
    work: Path
    outputs: list[str]
    before: dict[str, Optional[dict[str, str]]]
    result: subprocess.CompletedProcess


@pytest.fixture(scope="module")
def outcomes(project, tmp_path_factory) -> dict[str, Outcome]:
    """Every case run at once, a few processes at a time: most of a failing stage's time is importing torch."""
    from concurrent.futures import ThreadPoolExecutor

    def one(case: Case) -> Outcome:
        work = tmp_path_factory.mktemp(case.id)
        params = prepare_workdir(case, project, work)
        outputs = declared_outputs(case.stage) + ["mlruns/mlflow.db"]  # a failing stage leaves the store as it was
        before = {name: fingerprint(work / name) for name in outputs}
        return Outcome(work, outputs, before, run_stage(case.stage, work, params, case.extra))

    with ThreadPoolExecutor(max_workers=4) as pool:
        return dict(zip((case.id for case in CASES), pool.map(one, CASES)))


@pytest.mark.parametrize("case", [pytest.param(case, id=case.id) for case in CASES])
def test_bad_input_is_one_clear_line_and_exit_2_with_nothing_half_written(case, outcomes):
    outcome = outcomes[case.id]
    stderr = outcome.result.stderr
    assert outcome.result.returncode == 2, f"exit {outcome.result.returncode}\n{stderr[-3000:]}"
    assert "Traceback" not in stderr, stderr[-3000:]
    prefix = f"ganops {case.stage}: error: "
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert lines and lines[-1].startswith(prefix), stderr[-3000:]
    assert sum(line.startswith("ganops ") for line in lines) == 1, stderr[-3000:]
    message = lines[-1]
    for expected in case.expect:
        assert expected in message, f"{expected!r} not in {message!r}"
    after = {name: fingerprint(outcome.work / name) for name in outcome.outputs}
    assert after == outcome.before, f"outputs changed: {[n for n in outcome.outputs if after[n] != outcome.before[n]]}"
    assert not [str(p) for p in outcome.work.rglob("*.tmp")]
    print(f"{case.id}: {message}")  # -s shows the table of messages
