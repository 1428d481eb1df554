"""Choosing the device once, seeding, and facts about the checkout (git commit)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import torch

from ganops.errors import GanopsError


def resolve_device(name: str) -> torch.device:
    """`auto` picks CUDA when there is one; asking for CUDA where there is none is an error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise GanopsError("train.device: 'cuda' requested but no CUDA device is available (allowed here: auto, cpu)")
    if name not in ("cpu", "cuda"):
        raise GanopsError(f"device {name!r} is not allowed (allowed: auto, cpu, cuda)")
    return torch.device(name)


def configure_backends(device: torch.device) -> None:
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # fixed shapes every step: let cuDNN pick the fastest kernels
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True


def _git(root: str | Path, *args: str) -> str | None:
    try:
        out = subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def git_commit(root: str | Path = ".") -> str:
    return _git(root, "rev-parse", "HEAD") or "unknown"


def git_dirty(root: str | Path = ".") -> bool | None:
    """Whether tracked files differ from the commit (untracked files do not count); None outside git."""
    # DVC rewrites its lock file and the metrics and plots it keeps in git during every `dvc repro`: those
    # are results of the run, not changes to the code that made it.
    status = _git(root, "status", "--porcelain", "--untracked-files=no", "--", ".",
                  *(f":(exclude){p}" for p in ("dvc.lock", "metrics", "plots", "results")))
    return None if status is None else bool(status)
