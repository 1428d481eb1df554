"""download() and safe_extract() against a real loopback HTTP server and real archives."""

from __future__ import annotations

import hashlib
import io
import stat
import struct
import tarfile
import zipfile
from pathlib import Path

import pytest

from ganops.data.download import download, safe_extract
from ganops.errors import GanopsError

PAYLOAD = b"ganops test payload\n" * 1000
PAYLOAD_SHA = hashlib.sha256(PAYLOAD).hexdigest()


@pytest.fixture
def served(tmp_path: Path) -> Path:
    folder = tmp_path / "www"
    folder.mkdir()
    (folder / "payload.bin").write_bytes(PAYLOAD)
    return folder


def test_download_verifies_and_places_the_file(http_server, served, tmp_path):
    base = http_server(served)
    target = tmp_path / "out" / "payload.bin"
    assert download(f"{base}/payload.bin", target, PAYLOAD_SHA, retries=0, what="test") == target
    assert target.read_bytes() == PAYLOAD
    assert sorted(p.name for p in target.parent.iterdir()) == ["payload.bin"]  # no temporary left


def test_download_is_skipped_when_the_target_already_matches(http_server, served, tmp_path):
    base = http_server(served)
    target = tmp_path / "payload.bin"
    download(f"{base}/payload.bin", target, PAYLOAD_SHA, retries=0, what="test")
    download(f"{base}/payload.bin", target, PAYLOAD_SHA, retries=0, what="test")
    assert http_server.requests == ["/payload.bin"]


def test_wrong_checksum_fails_clearly_and_leaves_nothing(http_server, served, tmp_path):
    base = http_server(served)
    out = tmp_path / "out"
    out.mkdir()
    (out / "payload.bin").write_bytes(b"stale file from an earlier run")
    wrong = "0" * 64
    with pytest.raises(GanopsError) as err:
        download(f"{base}/payload.bin", out / "payload.bin", wrong, retries=2, what="data.url")
    message = str(err.value)
    assert f"{base}/payload.bin" in message and wrong in message and PAYLOAD_SHA in message
    assert "\n" not in message
    assert list(out.iterdir()) == []
    assert len(http_server.requests) == 1  # a mismatch is not retried


def test_retries_after_server_errors(http_server, served, tmp_path):
    base = http_server(served, fail_first=2)
    target = tmp_path / "payload.bin"
    download(f"{base}/payload.bin", target, PAYLOAD_SHA, retries=3, what="test")
    assert target.read_bytes() == PAYLOAD
    assert http_server.requests == ["/payload.bin"] * 3


def test_server_errors_beyond_the_retries_give_up(http_server, served, tmp_path):
    base = http_server(served, fail_first=5)
    with pytest.raises(GanopsError, match="503"):
        download(f"{base}/payload.bin", tmp_path / "payload.bin", PAYLOAD_SHA, retries=1, what="test")
    assert len(http_server.requests) == 2
    assert list(tmp_path.iterdir()) == [tmp_path / "www"]


def test_not_found_is_not_retried(http_server, served, tmp_path):
    base = http_server(served)
    with pytest.raises(GanopsError, match="HTTP 404"):
        download(f"{base}/missing.bin", tmp_path / "missing.bin", None, retries=3, what="test")
    assert http_server.requests == ["/missing.bin"]


def test_unreachable_server_gives_one_line_naming_the_url_and_the_way_out(closed_port_url, tmp_path):
    url = f"{closed_port_url}/payload.bin"
    with pytest.raises(GanopsError) as err:
        download(url, tmp_path / "payload.bin", PAYLOAD_SHA, retries=1, what="test")
    message = str(err.value)
    assert url in message and "data.mirror" in message and "data.folder" in message
    assert "\n" not in message
    assert list(tmp_path.iterdir()) == []


def test_file_urls_work_for_archives_fetched_by_other_means(tmp_path):
    source = tmp_path / "payload.bin"
    source.write_bytes(PAYLOAD)
    target = tmp_path / "copy.bin"
    download(source.as_uri(), target, PAYLOAD_SHA, retries=0, what="test")
    assert target.read_bytes() == PAYLOAD


def test_unsupported_url_scheme_is_refused(tmp_path):
    with pytest.raises(GanopsError, match="allowed schemes"):
        download("example.com/data.zip", tmp_path / "x", None, retries=0, what="data.url")


# ---------------------------------------------------------------------------------------------------
# safe_extract: archives built here, in both formats


def _zip(path: Path, members: list[tuple[str, bytes, int]]) -> Path:
    """members: (name, data, unix mode); a mode of 0 leaves the mode unrecorded."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data, mode in members:
            info = zipfile.ZipInfo(name)
            info.external_attr = mode << 16
            zf.writestr(info, data)
    return path


def _tar(path: Path, members: list[tuple[str, bytes, int]], link: tuple[str, str, bytes] | None = None) -> Path:
    """members: (name, data, mode); `link` adds (name, target, tarfile type) as a link or device."""
    with tarfile.open(path, "w:gz" if path.name.endswith("gz") else "w") as tf:
        for name, data, mode in members:
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(data), mode or 0o644
            tf.addfile(info, io.BytesIO(data))
        if link:
            info = tarfile.TarInfo(link[0])
            info.type, info.linkname = link[2], link[1]
            tf.addfile(info)
    return path


# c.txt records permissions without a file type, as zipfile.writestr(name, ...) does
GOOD = [("images/a.txt", b"alpha", 0o100644), ("images/sub/b.txt", b"beta" * 100, 0o100644),
        ("images/c.txt", b"gamma", 0o600)]


def _assert_nothing_extracted(dest: Path) -> None:
    assert not dest.exists()
    assert [p.name for p in dest.parent.iterdir() if p.name.startswith(f".{dest.name}")] == []


@pytest.mark.parametrize("kind", ["zip", "tar", "tar.gz"])
def test_a_good_archive_extracts_and_replaces_the_old_folder(tmp_path, kind):
    archive = tmp_path / f"good.{kind}"
    _zip(archive, GOOD) if kind == "zip" else _tar(archive, GOOD)
    dest = tmp_path / "dest"
    (dest / "old").mkdir(parents=True)
    files = safe_extract(archive, dest, max_bytes=10_000)
    assert files == [dest / "images" / name for name in ("a.txt", "c.txt", "sub/b.txt")]
    assert (dest / "images" / "sub" / "b.txt").read_bytes() == b"beta" * 100
    assert not (dest / "old").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dest", f"good.{kind}"]


BAD_MEMBERS = {
    "dotdot": [("images/../../evil.txt", b"x", 0o100644)],
    "absolute": [("/tmp/evil.txt", b"x", 0o100644)],
    "too big": [("images/big.bin", b"\0" * 20_000, 0o100644)],
}


@pytest.mark.parametrize("kind", ["zip", "tar"])
@pytest.mark.parametrize("bad", sorted(BAD_MEMBERS))
def test_unsafe_members_are_refused_and_nothing_is_extracted(tmp_path, kind, bad):
    members = GOOD + BAD_MEMBERS[bad]
    archive = tmp_path / f"bad.{kind}"
    _zip(archive, members) if kind == "zip" else _tar(archive, members)
    dest = tmp_path / "dest"
    with pytest.raises(GanopsError) as err:
        safe_extract(archive, dest, max_bytes=10_000)
    assert str(archive) in str(err.value) and "\n" not in str(err.value)
    _assert_nothing_extracted(dest)
    assert not (tmp_path.parent / "evil.txt").exists()


def test_a_zip_that_understates_its_sizes_is_refused(tmp_path):
    """Headers claiming 100 bytes for 50,000: stopped while writing, not trusted."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("big.bin", b"\0" * 50_000)
    data = bytearray(buffer.getvalue())
    for signature, offset in ((b"PK\x03\x04", 22), (b"PK\x01\x02", 24)):  # local and central headers
        at = data.find(signature) + offset
        data[at:at + 4] = struct.pack("<I", 100)
    archive = tmp_path / "lying.zip"
    archive.write_bytes(data)
    with pytest.raises(GanopsError, match="lying.zip"):
        safe_extract(archive, tmp_path / "dest", max_bytes=1000)
    _assert_nothing_extracted(tmp_path / "dest")


def test_zip_symlink_is_refused(tmp_path):
    archive = _zip(tmp_path / "link.zip", GOOD + [("images/link", b"/etc/passwd", stat.S_IFLNK | 0o777)])
    with pytest.raises(GanopsError, match="link or special file"):
        safe_extract(archive, tmp_path / "dest", max_bytes=10_000)
    _assert_nothing_extracted(tmp_path / "dest")


@pytest.mark.parametrize("link_type", [tarfile.SYMTYPE, tarfile.LNKTYPE, tarfile.CHRTYPE])
def test_tar_links_and_devices_are_refused(tmp_path, link_type):
    archive = _tar(tmp_path / "link.tar", GOOD, link=("images/link", "images/a.txt", link_type))
    with pytest.raises(GanopsError, match="link or special file"):
        safe_extract(archive, tmp_path / "dest", max_bytes=10_000)
    _assert_nothing_extracted(tmp_path / "dest")


def test_a_file_that_is_not_an_archive_is_refused(tmp_path):
    not_archive = tmp_path / "data.zip"
    not_archive.write_bytes(b"this is not an archive")
    with pytest.raises(GanopsError, match="not an archive"):
        safe_extract(not_archive, tmp_path / "dest", max_bytes=10_000)
    _assert_nothing_extracted(tmp_path / "dest")
