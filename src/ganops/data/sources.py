"""Downloaded and local data sets: MNIST, Fashion-MNIST, CIFAR-10, an archive at a URL, an image folder.

`fetch_source` puts a source's files into raw_dir; `read_source` turns them into uint8 N x C x H x W
images (any size; `prepare` resizes) and int64 labels, or None for sources without labels.

What is verified, per source:
- mnist, fashion-mnist, cifar10: torchvision downloads and checks every file against the md5 of the
  official release that it hard-codes. `data.mirror` only changes where the files come from, so a
  mirror must serve byte-identical copies of the official files; anything else is refused (and the bad
  file deleted) before it is read. The train split is used (60,000 or 50,000 images); the test split
  is downloaded too, because torchvision ships both in the same files or fetches both.
- url: the archive must match `data.sha256` (required by the config) before it is extracted.
- folder: nothing to verify: the user's own files, read in place. The listing written to raw_dir
  (path, size, modification time of every image) lets DVC notice when the folder changes.
"""

from __future__ import annotations

import logging
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, NoReturn, Optional

import numpy as np
import torch
from PIL import Image
from torchvision import datasets
from torchvision.datasets.utils import check_integrity

from ganops.config import DATASETS, DataConfig
from ganops.data.download import download, is_transient, safe_extract, with_retries
from ganops.data.transforms import to_square_uint8
from ganops.errors import GanopsError, one_line
from ganops.fileio import read_json, write_json

log = logging.getLogger(__name__)

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".gif")
ARCHIVE_NAME = "archive"  # data.url is saved under this name; its format is detected from the content
EXTRACTED_DIR = "images"
FOLDER_LISTING = "folder.json"
SOCKET_TIMEOUT_S = 60
NETWORK_HINT = "set data.mirror to a local mirror of the official files, or use data.dataset: folder with data.folder"
MIRROR_HINT = "check that data.mirror is up and serves the official files, or use data.dataset: folder with data.folder"
URL_HINT = ("copy the archive somewhere reachable and point data.url at it (file:///path/to/archive works), "
            "or use data.dataset: folder with data.folder")


def fetch_source(data: DataConfig, raw_dir: Path) -> list[Path]:
    """Download (or list) the source's files into raw_dir and return the files now there."""
    raw_dir.mkdir(parents=True, exist_ok=True)
    if data.dataset in TORCHVISION_SOURCES:
        _fetch_torchvision(TORCHVISION_SOURCES[data.dataset], data, raw_dir)
    elif data.dataset == "url":
        _fetch_url(data, raw_dir)
    elif data.dataset == "folder":
        _record_folder(data, raw_dir)
    else:
        _unknown(data.dataset)
    return _files_under(raw_dir)


def read_source(data: DataConfig, raw_dir: Path) -> tuple[torch.Tensor, Optional[torch.Tensor]]:
    """The fetched images as uint8 N x C x H x W and their int64 labels (None for url and folder)."""
    if data.dataset in TORCHVISION_SOURCES:
        return _read_torchvision(TORCHVISION_SOURCES[data.dataset], raw_dir)
    if data.dataset == "url":
        extracted = raw_dir / EXTRACTED_DIR
        return _read_images(_image_files(extracted), extracted, data), None
    if data.dataset == "folder":
        folder, files = _read_folder_listing(data, raw_dir)
        return _read_images(files, folder, data), None
    _unknown(data.dataset)


def _unknown(dataset: str) -> NoReturn:
    raise GanopsError(f"data.dataset: {dataset!r} is not allowed (allowed: {', '.join(DATASETS)})")


def _files_under(root: Path) -> list[Path]:
    from ganops.data import CHECKSUM_FILE  # here, not at the top: ganops.data imports this module

    return sorted(p for p in root.rglob("*") if p.is_file() and p.name != CHECKSUM_FILE)


# ---------------------------------------------------------------------------------------------------
# torchvision data sets: MNIST, Fashion-MNIST, CIFAR-10

@dataclass(frozen=True)
class TorchvisionSource:
    """How ganops drives one torchvision data set class; the three differ only in these few places."""

    dataset_class: type[datasets.VisionDataset]
    locations: Callable[[type], list[str]]  # where the class downloads from, for messages
    mirror_attributes: Callable[[type, str], dict[str, Any]]  # class attributes pointing it at a mirror
    archives: Callable[[type, Path], list[tuple[Path, str]]]  # (downloaded file, its official md5)
    tensors: Callable[[Any], tuple[torch.Tensor, torch.Tensor]]  # a loaded instance's images and labels


def _mnist_locations(cls: type) -> list[str]:
    return list(cls.mirrors)


def _mnist_mirror(cls: type, base: str) -> dict[str, Any]:
    return {"mirrors": [base]}  # torchvision requests f"{mirror}{filename}" and checks the md5 in `resources`


def _mnist_archives(cls: type, root: Path) -> list[tuple[Path, str]]:
    return [(root / cls.__name__ / "raw" / name, md5) for name, md5 in cls.resources]


def _mnist_tensors(dataset: Any) -> tuple[torch.Tensor, torch.Tensor]:
    return dataset.data.unsqueeze(1), dataset.targets.long()


def _cifar_locations(cls: type) -> list[str]:
    return [cls.url]


def _cifar_mirror(cls: type, base: str) -> dict[str, Any]:
    return {"url": base + cls.filename}  # the md5 stays torchvision's `tgz_md5`


def _cifar_archives(cls: type, root: Path) -> list[tuple[Path, str]]:
    return [(root / cls.filename, cls.tgz_md5)]


def _cifar_tensors(dataset: Any) -> tuple[torch.Tensor, torch.Tensor]:
    # torchvision reads CIFAR-10's batches with pickle: its own reader of the official archive, and it
    # only gets there after checking the md5 of the archive and of every batch file against the
    # official ones, so no file other than the official release is ever unpickled.
    images = torch.from_numpy(np.ascontiguousarray(dataset.data)).permute(0, 3, 1, 2).contiguous()
    return images, torch.as_tensor(dataset.targets, dtype=torch.int64)


_MNIST_LIKE = dict(locations=_mnist_locations, mirror_attributes=_mnist_mirror, archives=_mnist_archives,
                   tensors=_mnist_tensors)
TORCHVISION_SOURCES: dict[str, TorchvisionSource] = {
    "mnist": TorchvisionSource(datasets.MNIST, **_MNIST_LIKE),
    "fashion-mnist": TorchvisionSource(datasets.FashionMNIST, **_MNIST_LIKE),
    "cifar10": TorchvisionSource(datasets.CIFAR10, _cifar_locations, _cifar_mirror, _cifar_archives, _cifar_tensors),
}


def _dataset_class(source: TorchvisionSource, mirror: Optional[str]) -> type:
    """The torchvision class, or a subclass of the same name pointing at `mirror` (never patched globally).

    The name is kept because torchvision names its folder after the class (raw_dir/MNIST/raw/...).
    """
    cls = source.dataset_class
    if not mirror:
        return cls
    base = mirror.rstrip("/") + "/"
    return type(cls.__name__, (cls,), source.mirror_attributes(cls, base))


def _fetch_torchvision(source: TorchvisionSource, data: DataConfig, raw_dir: Path) -> None:
    cls = _dataset_class(source, data.mirror)
    where = ", ".join(source.locations(cls))

    def attempt() -> None:
        # torchvision's urlopen has no timeout: a mirror that accepts and never answers would hang forever.
        previous = socket.getdefaulttimeout()
        socket.setdefaulttimeout(SOCKET_TIMEOUT_S)
        try:
            cls(root=raw_dir, train=True, download=True)  # downloads what is missing, checks md5s, extracts
        except Exception:
            _refuse_corrupt_archives(source, cls, raw_dir, data)
            raise
        finally:
            socket.setdefaulttimeout(previous)

    try:
        # torchvision's download skips files already verified, so a retry resumes where the last stopped.
        # Its MNIST errors arrive flattened into a RuntimeError, so those are all retried.
        with_retries(attempt, data.download_retries, _torchvision_transient, what=f"{data.dataset} download")
    except GanopsError:
        raise
    except Exception as exc:
        attempts = data.download_retries + 1
        hint = MIRROR_HINT if data.mirror else NETWORK_HINT
        raise GanopsError(f"could not download {data.dataset} from {where} after {attempts} attempt(s) "
                          f"({one_line(exc)}); {hint}") from exc


def _torchvision_transient(exc: BaseException) -> bool:
    return isinstance(exc, RuntimeError) or is_transient(exc)


def _refuse_corrupt_archives(source: TorchvisionSource, cls: type, raw_dir: Path, data: DataConfig) -> None:
    """After a failed download: a file that arrived but fails the official md5 is deleted and reported.

    A checksum mismatch will not go away by retrying; torchvision would leave the file behind.
    """
    for path, md5 in source.archives(cls, raw_dir):
        if path.is_file() and not check_integrity(path, md5):
            path.unlink()
            origin = f"data.mirror {data.mirror}" if data.mirror else ", ".join(source.locations(cls))
            raise GanopsError(f"{path.name} from {origin} does not match the md5 of the official "
                              f"{data.dataset} release ({md5}) and was deleted; a mirror must serve "
                              "byte-identical copies of the official files")


def _read_torchvision(source: TorchvisionSource, raw_dir: Path) -> tuple[torch.Tensor, torch.Tensor]:
    try:
        dataset = source.dataset_class(root=raw_dir, train=True, download=False)
    except RuntimeError as exc:  # torchvision: files missing or failing their md5
        raise GanopsError(f"raw files in {raw_dir} are missing or corrupt ({one_line(exc)}); "
                          "delete the folder and run `dvc repro download`") from exc
    return source.tensors(dataset)


# ---------------------------------------------------------------------------------------------------
# An archive of images at a URL

def _fetch_url(data: DataConfig, raw_dir: Path) -> None:
    assert data.url is not None  # the config requires it with dataset: url
    archive = download(data.url, raw_dir / ARCHIVE_NAME, data.sha256, data.download_retries, what="data.url",
                       hint=URL_HINT)
    safe_extract(archive, raw_dir / EXTRACTED_DIR, max_bytes=data.max_extract_mb * 2**20)


# ---------------------------------------------------------------------------------------------------
# A folder of images, read in place

def _record_folder(data: DataConfig, raw_dir: Path) -> None:
    """Write the folder's image list (path, size, mtime) to raw_dir, so DVC re-runs when it changes."""
    folder = _user_folder(data)
    files = _image_files(folder)
    if not files:
        raise GanopsError(f"data.folder {folder} holds no image files (allowed: {' '.join(IMAGE_EXTENSIONS)})")
    entries = [{"path": str(p.relative_to(folder)), "size": p.stat().st_size, "mtime_ns": p.stat().st_mtime_ns}
               for p in files]
    write_json(raw_dir / FOLDER_LISTING, {"folder": str(folder), "files": entries})


def _read_folder_listing(data: DataConfig, raw_dir: Path) -> tuple[Path, list[Path]]:
    listing = read_json(raw_dir / FOLDER_LISTING, "image folder listing")
    folder = Path(listing["folder"])
    if folder != _user_folder(data, must_exist=False):
        raise GanopsError(f"{raw_dir / FOLDER_LISTING} lists {folder} but data.folder is {data.folder}; "
                          "run `dvc repro download` again")
    return folder, [folder / entry["path"] for entry in listing["files"]]


def _user_folder(data: DataConfig, must_exist: bool = True) -> Path:
    assert data.folder is not None  # the config requires it with dataset: folder
    folder = Path(data.folder).expanduser().resolve()
    if must_exist and not folder.is_dir():
        raise GanopsError(f"data.folder {data.folder} is not a folder (it should hold images: "
                          f"{' '.join(IMAGE_EXTENSIONS)})")
    return folder


def _image_files(root: Path) -> list[Path]:
    """Image files under root, recursively and sorted; hidden files and macOS `__MACOSX` debris left out."""
    def wanted(p: Path) -> bool:
        parts = p.relative_to(root).parts
        hidden = any(part.startswith(".") or part == "__MACOSX" for part in parts)
        return not hidden and p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file()

    return sorted(p for p in root.rglob("*") if wanted(p)) if root.is_dir() else []


def _read_images(files: list[Path], where: Path, data: DataConfig) -> torch.Tensor:
    """Decode every readable image and bring it to the configured size, so images of any size stack."""
    channels, size = data.resolved_channels, data.resolved_image_size
    images, unreadable = [], []
    for path in files:
        image = _decode(path, channels)
        if image is None:
            unreadable.append(path)
        else:
            images.append(to_square_uint8(image, size, channels, data.center_crop))
    if unreadable:
        log.warning("skipped %d unreadable image(s) in %s (first: %s)", len(unreadable), where,
                    unreadable[0].relative_to(where))
    if not images:
        raise GanopsError(f"no readable image in {where} (allowed: {' '.join(IMAGE_EXTENSIONS)})")
    return torch.cat(images)


def _decode(path: Path, channels: int) -> Optional[torch.Tensor]:
    """One image as uint8 1 x C x H x W, or None when it cannot be read (missing, corrupt, not an image)."""
    try:
        with Image.open(path) as image:
            pixels = np.asarray(image.convert("L" if channels == 1 else "RGB"))
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError):
        # PIL reports a damaged or unknown file as OSError (UnidentifiedImageError), ValueError or SyntaxError
        return None
    tensor = torch.from_numpy(pixels.copy())
    return (tensor.unsqueeze(0) if tensor.ndim == 2 else tensor.permute(2, 0, 1)).unsqueeze(0)
