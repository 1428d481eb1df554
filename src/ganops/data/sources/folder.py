"""folder: a local folder of images, read in place.

Nothing to verify: they are the user's own files. The listing written to raw_dir (path, size and
modification time of every image) lets DVC notice when the folder changes.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from ganops.config_schema import require
from ganops.data.sources.registry import DataSource, files_under
from ganops.errors import GanopsError

if TYPE_CHECKING:
    import torch

    from ganops.config import DataConfig

FOLDER_LISTING = "folder.json"


def check(data: DataConfig) -> None:
    require(bool(data.folder), "data.folder", data.folder, "required when data.dataset is 'folder'")


def fetch(data: DataConfig, raw_dir: Path) -> list[Path]:
    """Write the folder's image list (path, size, mtime) to raw_dir, so DVC re-runs when it changes."""
    from ganops.data.sources.images import IMAGE_EXTENSIONS, image_files
    from ganops.fileio import write_json

    folder = _user_folder(data)
    files = image_files(folder)
    if not files:
        raise GanopsError(f"data.folder {folder} holds no image files (allowed: {' '.join(IMAGE_EXTENSIONS)})")
    entries = [{"path": str(p.relative_to(folder)), "size": p.stat().st_size, "mtime_ns": p.stat().st_mtime_ns}
               for p in files]
    write_json(raw_dir / FOLDER_LISTING, {"folder": str(folder), "files": entries})
    return files_under(raw_dir)


def read(data: DataConfig, raw_dir: Path) -> tuple[torch.Tensor, None]:
    from ganops.data.sources.images import read_images
    from ganops.fileio import read_json

    listing = read_json(raw_dir / FOLDER_LISTING, "image folder listing")
    folder = Path(listing["folder"])
    if folder != _user_folder(data, must_exist=False):
        raise GanopsError(f"{raw_dir / FOLDER_LISTING} lists {folder} but data.folder is {data.folder}; "
                          "run `dvc repro download` again")
    files = [folder / entry["path"] for entry in listing["files"]]
    return read_images(files, folder, data.resolved_channels, data.resolved_image_size, data.center_crop), None


def _user_folder(data: DataConfig, must_exist: bool = True) -> Path:
    from ganops.data.sources.images import IMAGE_EXTENSIONS

    assert data.folder is not None  # check() requires it
    folder = Path(data.folder).expanduser().resolve()
    if must_exist and not folder.is_dir():
        raise GanopsError(f"data.folder {data.folder} is not a folder (it should hold images: "
                          f"{' '.join(IMAGE_EXTENSIONS)})")
    return folder


SOURCE = DataSource("folder", channels=3, image_size=64, fetch=fetch, read=read, check=check)
