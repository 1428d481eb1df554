"""Picking a data set is a params change: `dvc repro preprocess` on a URL archive, then on a folder.

The archive is served by a real HTTP server on 127.0.0.1; DVC, the download and preprocess stages run
as subprocesses exactly as a user runs them. (MNIST, Fashion-MNIST and CIFAR-10 go through torchvision's
downloaders, whose md5 table of the official files a stand-in mirror cannot satisfy from a subprocess;
tests/integration/test_data_sources.py covers them through the same library calls the stages make.)
"""

from __future__ import annotations

import torch

from ganops.data.tensorfile import load_prepared
from tests.integration.pipeline_repo import TINY, dvc, make_repo, merge, write_params
from tests.integration.test_data_sources import COLOURS, make_archive, write_pngs


def test_url_then_folder_source_through_dvc_repro(tmp_path, http_server):
    write_pngs(tmp_path / "src" / "faces")
    (tmp_path / "www").mkdir()
    sha256 = make_archive(tmp_path / "src" / "faces", tmp_path / "www" / "faces.zip")
    base = http_server(tmp_path / "www")
    url_data = {"dataset": "url", "url": f"{base}/faces.zip", "sha256": sha256, "limit": 0}
    repo = make_repo(tmp_path / "repo", {"data": url_data})

    dvc(repo, "repro", "preprocess")

    prepared = load_prepared(repo / "data" / "prepared" / "url.pt")
    assert prepared.images.shape == (len(COLOURS), 3, 64, 64) and prepared.images.dtype == torch.uint8
    assert http_server.requests == ["/faces.zip"]
    assert "up to date" in dvc(repo, "status", "preprocess").stdout

    folder = tmp_path / "photos"
    write_pngs(folder)
    (folder / "corrupt.jpg").write_bytes(b"\xff\xd8 not a jpeg")
    folder_data = {"dataset": "folder", "folder": str(folder), "url": None, "sha256": None, "limit": 0,
                   "channels": 1, "image_size": 32, "center_crop": True}
    write_params(repo, merge(TINY, {"data": folder_data}))

    result = dvc(repo, "repro", "preprocess")

    prepared = load_prepared(repo / "data" / "prepared" / "folder.pt")
    assert prepared.images.shape == (len(COLOURS), 1, 32, 32)
    assert "skipped 1 unreadable image(s)" in result.stderr + result.stdout
    assert http_server.requests == ["/faces.zip"]  # the folder source needs no network
