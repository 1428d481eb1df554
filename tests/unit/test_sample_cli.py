"""`python -m ganops.sample`: images from a registered, logged or saved generator, and one-line errors."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ganops.config import ModelConfig
from ganops.fileio import torch_save
from ganops.models import build_generator, generator_record
from ganops.tracking.mlflow_tracker import MlflowTracker

ROOT = Path(__file__).resolve().parents[2]
MODEL = ModelConfig(nz=16, ngf=8, ndf=8)


def sample(cwd: Path, *args: str) -> subprocess.CompletedProcess:
    env = {"PYTHONPATH": f"{ROOT / 'src'}", "PATH": "/usr/bin:/bin", "MLFLOW_DISABLE_TELEMETRY": "true"}
    return subprocess.run([sys.executable, "-m", "ganops.sample", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=120)


@pytest.fixture(scope="module")
def champion(tmp_path_factory, mlflow_template_db):
    """A store with one logged generator registered as ganops-mnist-5k@champion: (uri, run id)."""
    import shutil

    from ganops.config import TrackingConfig

    folder = tmp_path_factory.mktemp("store")
    shutil.copyfile(mlflow_template_db, folder / "mlflow.db")
    tracking = TrackingConfig(uri=f"sqlite:///{folder}/mlflow.db", artifact_root=str(folder / "artifacts"))
    tracker = MlflowTracker.connect(tracking, "ganops-mnist-5k")
    run_id = tracker.start_run("tiny", {}, {})
    tracker.log_generator(run_id, build_generator(MODEL, 1, 32), MODEL.nz)
    tracker.register_generator(run_id, "ganops-mnist-5k", 10.0)
    tracker.finish_run(run_id)
    return tracking.uri, run_id


def test_champion_to_a_folder_and_run_id_to_npz(tmp_path, champion):
    uri, run_id = champion
    done = sample(tmp_path, "--model", "models:/ganops-mnist-5k@champion", "--n", "12", "--out", "samples/",
                  "--tracking-uri", uri)
    assert done.returncode == 0, done.stderr
    files = sorted((tmp_path / "samples").iterdir())
    assert [f.name for f in files][:2] == ["00000.png", "00001.png"] and len(files) == 12
    assert Image.open(files[0]).size == (32, 32)
    done = sample(tmp_path, "--model", run_id, "--n", "5", "--out", "s.npz", "--seed", "3", "--tracking-uri", uri)
    assert done.returncode == 0, done.stderr
    images = np.load(tmp_path / "s.npz")["images"]
    assert images.shape == (5, 32, 32, 1) and images.dtype == np.uint8


def test_generator_file_grid_and_interpolation_are_seeded(tmp_path):
    torch_save(generator_record(build_generator(MODEL, 1, 32), MODEL, 1, 32), tmp_path / "g.pt")
    for out in ("a.png", "b.png"):
        assert sample(tmp_path, "--model", "g.pt", "--n", "9", "--out", out, "--seed", "1").returncode == 0
    assert (tmp_path / "a.png").read_bytes() == (tmp_path / "b.png").read_bytes()
    done = sample(tmp_path, "--model", "g.pt", "--n", "3", "--interpolate", "5", "--out", "walk.gif")
    assert done.returncode == 0, done.stderr
    with Image.open(tmp_path / "walk.gif") as gif:
        assert gif.n_frames == 5
    assert Image.open(tmp_path / "walk.png").size == (5 * 34 + 2, 3 * 34 + 2)  # a column per step, a row per walk


@pytest.mark.parametrize("model, args, message", [
    ("0123456789abcdef0123456789abcdef", ["--n", "4", "--out", "x/"], "Run with id=0123456789abcdef0123456789abcdef not found"),
    ("models:/ganops-mnist-5k@nobody", ["--n", "4", "--out", "x/"], "alias nobody"),
    ("models:/ganops-mnist-5k@champion", ["--n", "0", "--out", "x/"], "--n 0 is not allowed"),
    ("models:/ganops-mnist-5k@champion", ["--n", "4", "--out", "a_file"], "is a file, not a folder"),
    ("models:/ganops-mnist-5k@champion", ["--n", "4", "--out", "full/"], "not empty; add --overwrite"),
])
def test_user_errors_are_one_line_with_exit_2(tmp_path, champion, model, args, message):
    (tmp_path / "a_file").write_text("")
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "keep.png").write_text("")
    done = sample(tmp_path, "--model", model, *args, "--tracking-uri", champion[0])
    assert done.returncode == 2
    assert message in done.stderr and done.stderr.count("\n") == 1, done.stderr
    assert (tmp_path / "full" / "keep.png").exists() and not (tmp_path / "x").exists()
