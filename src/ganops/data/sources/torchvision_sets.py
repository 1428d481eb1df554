"""What mnist, fashion-mnist and cifar10 share: a torchvision data set class driven by ganops.

torchvision downloads and checks every file against the md5 of the official release that it hard-codes.
`data.mirror` only changes where the files come from, so a mirror must serve byte-identical copies of the
official files; anything else is refused (and the bad file deleted) before it is read. The train split is
used (60,000 or 50,000 images); the test split is downloaded too, because torchvision ships both in the
same files or fetches both.

torchvision is imported inside the functions that use it: the source modules build their TorchvisionSet
when config.py reads the registry, before torch may load (see registry.py).
"""

from __future__ import annotations

import socket
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Optional

from ganops.data.sources.registry import files_under
from ganops.errors import GanopsError, one_line

if TYPE_CHECKING:
    import torch

    from ganops.config import DataConfig

SOCKET_TIMEOUT_S = 60
NETWORK_HINT = "set data.mirror to a local mirror of the official files, or use data.dataset: folder with data.folder"
MIRROR_HINT = "check that data.mirror is up and serves the official files, or use data.dataset: folder with data.folder"


@dataclass(frozen=True)
class TorchvisionSet:
    """How ganops drives one torchvision data set class; the classes differ only in these few places."""

    class_name: str  # in torchvision.datasets; torchvision also names its folder after it (raw_dir/MNIST/...)
    locations: Callable[[type], list[str]]  # where the class downloads from, for messages
    mirror_attributes: Callable[[type, str], dict[str, Any]]  # class attributes pointing it at a mirror
    archives: Callable[[type, Path], list[tuple[Path, str]]]  # (downloaded file, its official md5)
    tensors: Callable[[Any], tuple[torch.Tensor, torch.Tensor]]  # a loaded instance's images and labels

    def fetch(self, data: DataConfig, raw_dir: Path) -> list[Path]:
        from ganops.data.download import with_retries

        cls = self._dataset_class(data.mirror)
        where = ", ".join(self.locations(cls))

        def attempt() -> None:
            # torchvision's urlopen has no timeout: a mirror that accepts and never answers would hang forever.
            previous = socket.getdefaulttimeout()
            socket.setdefaulttimeout(SOCKET_TIMEOUT_S)
            try:
                cls(root=raw_dir, train=True, download=True)  # downloads what is missing, checks md5s, extracts
            except Exception:
                self._refuse_corrupt_archives(cls, raw_dir, data)
                raise
            finally:
                socket.setdefaulttimeout(previous)

        try:
            # torchvision's download skips files already verified, so a retry resumes where the last stopped.
            # Its MNIST errors arrive flattened into a RuntimeError, so those are all retried.
            with_retries(attempt, data.download_retries, _transient, what=f"{data.dataset} download")
        except GanopsError:
            raise
        except Exception as exc:
            attempts = data.download_retries + 1
            hint = MIRROR_HINT if data.mirror else NETWORK_HINT
            raise GanopsError(f"could not download {data.dataset} from {where} after {attempts} attempt(s) "
                              f"({one_line(exc)}); {hint}") from exc
        return files_under(raw_dir)

    def read(self, data: DataConfig, raw_dir: Path) -> tuple[torch.Tensor, torch.Tensor]:
        try:
            dataset = self._dataset_class(None)(root=raw_dir, train=True, download=False)
        except RuntimeError as exc:  # torchvision: files missing or failing their md5
            raise GanopsError(f"raw files in {raw_dir} are missing or corrupt ({one_line(exc)}); "
                              "delete the folder and run `dvc repro download`") from exc
        return self.tensors(dataset)

    def _dataset_class(self, mirror: Optional[str]) -> type:
        """The torchvision class, or a subclass of the same name pointing at `mirror` (never patched globally).

        The name is kept because torchvision names its folder after the class (raw_dir/MNIST/raw/...).
        """
        from torchvision import datasets

        cls = getattr(datasets, self.class_name)
        if not mirror:
            return cls
        base = mirror.rstrip("/") + "/"
        return type(cls.__name__, (cls,), self.mirror_attributes(cls, base))

    def _refuse_corrupt_archives(self, cls: type, raw_dir: Path, data: DataConfig) -> None:
        """After a failed download: a file that arrived but fails the official md5 is deleted and reported.

        A checksum mismatch will not go away by retrying; torchvision would leave the file behind.
        """
        from torchvision.datasets.utils import check_integrity

        for path, md5 in self.archives(cls, raw_dir):
            if path.is_file() and not check_integrity(path, md5):
                path.unlink()
                origin = f"data.mirror {data.mirror}" if data.mirror else ", ".join(self.locations(cls))
                raise GanopsError(f"{path.name} from {origin} does not match the md5 of the official "
                                  f"{data.dataset} release ({md5}) and was deleted; a mirror must serve "
                                  "byte-identical copies of the official files")


def _transient(exc: BaseException) -> bool:
    from ganops.data.download import is_transient

    return isinstance(exc, RuntimeError) or is_transient(exc)


# ---------------------------------------------------------------------------------------------------
# The MNIST file format, shared by MNIST and Fashion-MNIST

def mnist_format(class_name: str) -> TorchvisionSet:
    return TorchvisionSet(class_name, _mnist_locations, _mnist_mirror, _mnist_archives, _mnist_tensors)


def _mnist_locations(cls: type) -> list[str]:
    return list(cls.mirrors)


def _mnist_mirror(cls: type, base: str) -> dict[str, Any]:
    return {"mirrors": [base]}  # torchvision requests f"{mirror}{filename}" and checks the md5 in `resources`


def _mnist_archives(cls: type, root: Path) -> list[tuple[Path, str]]:
    return [(root / cls.__name__ / "raw" / name, md5) for name, md5 in cls.resources]


def _mnist_tensors(dataset: Any) -> tuple[torch.Tensor, torch.Tensor]:
    return dataset.data.unsqueeze(1), dataset.targets.long()
