"""A throwaway copy of the project as a real git + DVC repository with tiny params, for end-to-end tests."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent

TINY = {
    "data": {"limit": 256},
    "model": {"nz": 16, "ngf": 8, "ndf": 8, "mlp_hidden": 16},
    "train": {"epochs": 2, "batch_size": 32, "log_every": 4, "eval_every": 1, "eval_samples": 64, "sample_grid": 16},
    "fid": {"classifier_epochs": 1, "classifier_width": 8, "batch_size": 128},
    "evaluate": {"samples": 128, "kid_subsets": 4, "kid_subset_size": 64},
    "tune": {"n_trials": 2, "epochs": 1, "eval_samples": 64, "ngf_choices": [8], "ndf_choices": [8]},
}


def merge(base: dict, update: dict) -> dict:
    out = dict(base)
    for key, value in update.items():
        out[key] = merge(base[key], value) if isinstance(value, dict) and isinstance(base.get(key), dict) else value
    return out


def write_params(repo: Path, overrides: dict) -> dict:
    params = merge(yaml.safe_load((ROOT / "params.yaml").read_text()), overrides)
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    return params


def make_repo(target: Path, overrides: dict | None = None) -> Path:
    for name in ("src", "pipeline"):
        shutil.copytree(ROOT / name, target / name, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    for name in ("dvc.yaml", ".gitignore"):
        shutil.copy(ROOT / name, target / name)
    shutil.copytree(ROOT / ".dvc", target / ".dvc", ignore=shutil.ignore_patterns("tmp", "cache"))
    (target / "mlruns").mkdir()
    write_params(target, merge(TINY, overrides or {}))
    for args in (["init", "-q"], ["add", "-A"], ["-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "init"]):
        subprocess.run(["git", *args], cwd=target, check=True)
    return target


def env_for(repo: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["PATH"] = f"{BIN}{os.pathsep}{env['PATH']}"
    env["PYTHONPATH"] = str(repo / "src")  # the copy's library, not the checkout's
    env["DVC_NO_ANALYTICS"] = "1"
    env.pop("GANOPS_PARAMS", None)
    return env


def run(repo: Path, *args: str, check: bool = True, timeout: int = 600) -> subprocess.CompletedProcess:
    result = subprocess.run(list(args), cwd=repo, env=env_for(repo), capture_output=True, text=True, timeout=timeout)
    if check and result.returncode != 0:
        raise AssertionError(f"{' '.join(args)} failed ({result.returncode}):\n{result.stdout[-3000:]}\n{result.stderr[-5000:]}")
    return result


def dvc(repo: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    return run(repo, str(BIN / "dvc"), *args, check=check)


def start(repo: Path, *args: str, log: Path, env: dict[str, str] | None = None) -> subprocess.Popen:
    """Start a command in a process group of its own, output to `log`: `os.killpg` then stops it and every
    process it started (dvc and the stage's python), as a crash or an OOM kill of the job would."""
    with open(log, "w") as out:
        return subprocess.Popen(list(args), cwd=repo, env={**env_for(repo), **(env or {})}, stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True)


def build_fid_inputs(config, root: Path):
    """Through the library, what `download` .. `fid_stats` write: prepared data, feature net, statistics.

    Cheaper than `dvc repro` for tests that start at a later stage. Returns the prepared data set.
    """
    import torch

    from ganops.paths import paths_for
    from ganops.data import fetch, prepare, save_prepared
    from ganops.fileio import torch_save
    from ganops.metrics import build_extractor, classifier_record, feature_statistics, save_statistics, train_classifier

    paths = paths_for(config, root)
    cpu = torch.device("cpu")
    fetch(config.data, paths.raw_dir)
    prepared = prepare(config.data, paths.raw_dir)
    save_prepared(prepared, paths.prepared)
    net, _ = train_classifier(prepared, config.fid.classifier_epochs, config.fid.classifier_width, cpu, seed=0)
    torch_save(classifier_record(net), paths.feature_net)
    extractor = build_extractor(config.fid, paths.feature_net, cpu)
    features = extractor.features(prepared.images)
    save_statistics(paths.fid_stats, *feature_statistics(features), real_features=features)
    return prepared
