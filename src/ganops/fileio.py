"""Atomic writes and safe loads: an output is either complete or absent, never half-written."""

from __future__ import annotations

import errno
import hashlib
import json
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, BinaryIO, Iterator

import torch
import yaml

from ganops.errors import GanopsError, one_line


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside `path`; rename it into place only if the block succeeds."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        os.replace(tmp, target)
    except OSError as exc:
        if exc.errno not in DISK_FULL:
            raise
        raise GanopsError(f"{target}: no space left on the device ({one_line(exc, limit=80)}); the previous "
                          f"{target.name} is intact: free space and re-run, it resumes from the last "
                          f"checkpoint") from exc
    finally:
        if tmp.exists():
            tmp.unlink()


DISK_FULL = (errno.ENOSPC, errno.EFBIG, errno.EDQUOT)  # no space, a file-size limit, a quota


class _WriteErrors:
    """A file handle that remembers the OSError of a failed write: torch.save reports it as a RuntimeError
    ("unexpected pos ...") that has lost the errno, so a full disk would not be told from a bug."""

    def __init__(self, handle: BinaryIO):
        self.handle, self.error = handle, None

    def write(self, data: Any) -> int:
        try:
            return self.handle.write(data)
        except OSError as exc:
            self.error = exc
            raise

    def __getattr__(self, name: str) -> Any:
        return getattr(self.handle, name)


@contextmanager
def atomic_binary(path: str | os.PathLike) -> Iterator[BinaryIO]:
    """An open binary file beside `path`, renamed into place when the block succeeds.

    A handle, not a name, for writers that derive something from the name they are given: torch.save
    names its archive after the file (a random temporary name would make equal tensors differ byte for
    byte, and DVC would see a changed output) and numpy appends .npz to names without it.
    """
    with atomic_path(path) as tmp, open(tmp, "wb") as handle:
        recorder = _WriteErrors(handle)
        try:
            yield recorder  # type: ignore[misc]
        except RuntimeError as exc:
            if recorder.error is not None:
                raise recorder.error from exc
            raise


def write_text(path: str | os.PathLike, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def write_json(path: str | os.PathLike, data: Any) -> None:
    write_text(path, json.dumps(data, indent=2, sort_keys=True) + "\n")


def write_yaml(path: str | os.PathLike, data: Any) -> None:
    write_text(path, yaml.safe_dump(data, sort_keys=False))


def read_json(path: str | os.PathLike, what: str) -> Any:
    path = Path(path)
    if not path.is_file():
        raise GanopsError(f"{what} not found: {path} (run the stage that writes it first, e.g. `dvc repro`)")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise GanopsError(f"{what} is not valid JSON: {path} ({exc})") from exc


def torch_save(obj: Any, path: str | os.PathLike) -> None:
    with atomic_binary(path) as handle:
        torch.save(obj, handle)


def torch_load(path: str | os.PathLike, what: str, map_location: str | torch.device = "cpu") -> Any:
    """Load a tensor file written by ganops; `weights_only=True` so no pickled code ever runs."""
    path = Path(path)
    if not path.is_file():
        raise GanopsError(f"{what} not found: {path} (run the stage that writes it first, e.g. `dvc repro`)")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # torch raises RuntimeError, EOFError, UnpicklingError... for damaged files
        detail = str(exc).strip().split(". ")[0].splitlines()[0] if str(exc).strip() else type(exc).__name__
        if "weights only load failed" in detail.lower():
            raise GanopsError(f"{what} {path} holds Python objects, not only tensors, and ganops loads tensor files "
                              f"with weights_only=True (never unpickling code); delete it and re-run") from exc
        raise GanopsError(f"{what} is corrupt or truncated: {path} ({detail}); delete it and re-run") from exc


def copy_file(source: str | os.PathLike, target: str | os.PathLike) -> None:
    import shutil

    with atomic_path(target) as tmp:
        shutil.copyfile(source, tmp)


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    return file_digest(path, "sha256", chunk)


def file_digest(path: str | os.PathLike, algorithm: str, chunk: int = 1 << 20) -> str:
    digest = hashlib.new(algorithm)
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def make_parent_dir(path: str | os.PathLike, key: str, value: str) -> Path:
    """Create the folder a params value (`key: value`) puts a file in; a one-line error when that fails."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise GanopsError(f"{key} {value!r}: cannot create {path.parent} ({exc.strerror})") from exc
    return path
