"""Downloading with checksums, retries and a progress bar, and extracting archives safely.

Both write beside their target first and rename into place at the end, so an interrupted or refused
download or extraction leaves nothing behind: the target is complete and verified, or absent.
"""

from __future__ import annotations

import hashlib
import http.client
import logging
import os
import shutil
import stat
import sys
import tarfile
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
import zipfile
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Callable, Iterator, Optional, TypeVar

from tqdm import tqdm

from ganops.errors import GanopsError, one_line
from ganops.fileio import atomic_path, sha256_file

log = logging.getLogger(__name__)

T = TypeVar("T")

RETRY_BASE_DELAY_S = 0.5  # doubled after each failed attempt: 0.5 s, 1 s, 2 s, ...
TIMEOUT_S = 60  # per socket operation, so a stalled server fails (and is retried) instead of hanging
CHUNK = 1 << 20
USER_AGENT = "ganops"
URL_SCHEMES = ("http", "https", "file")  # file:// lets a user point at an archive fetched by other means
DEFAULT_HINT = "set data.mirror to a local mirror, or use data.dataset: folder with data.folder"
ARCHIVE_KINDS = ".zip, .tar, .tar.gz/.tgz (also .tar.bz2, .tar.xz)"


# ---------------------------------------------------------------------------------------------------
# Retries

def is_transient(exc: BaseException) -> bool:
    """Worth another try: connection failures, timeouts, cut-off bodies and server-side (5xx) answers.

    A client error such as 404 will not change by asking again, except 408 (timeout) and 429 (busy).
    """
    if isinstance(exc, urllib.error.HTTPError):
        return exc.code >= 500 or exc.code in (408, 429)
    return isinstance(exc, (urllib.error.URLError, http.client.HTTPException, OSError))


def with_retries(action: Callable[[], T], retries: int, transient: Callable[[BaseException], bool] = is_transient,
                 what: str = "download", base_delay: float = RETRY_BASE_DELAY_S) -> T:
    """Run `action`; after a transient failure wait (exponential backoff) and try again, `retries` times."""
    for attempt in range(retries + 1):
        try:
            return action()
        except Exception as exc:
            if attempt == retries or not transient(exc):
                raise
            delay = base_delay * 2 ** attempt
            log.warning("%s failed (%s); retrying in %.1f s (%d/%d)", what, one_line(exc), delay, attempt + 1, retries)
            time.sleep(delay)
    raise AssertionError("unreachable")  # the loop either returns or raises


# ---------------------------------------------------------------------------------------------------
# Download

def download(url: str, target: Path, sha256: Optional[str], retries: int, what: str,
             hint: str = DEFAULT_HINT) -> Path:
    """Fetch `url` into `target`, verified against `sha256` when given; skip it when already there.

    Network errors and 5xx answers are retried `retries` times with exponential backoff. `what` names
    the thing being fetched in messages (e.g. "data.url"); `hint` says what to do if it stays unreachable.
    """
    target = Path(target)
    expected = sha256.lower() if sha256 else None
    scheme = urllib.parse.urlsplit(url).scheme
    if scheme not in URL_SCHEMES:
        raise GanopsError(f"{what}: {url!r} is not a URL this can fetch (allowed schemes: {', '.join(URL_SCHEMES)})")
    if target.is_file():
        if expected and sha256_file(target) == expected:
            log.info("%s already downloaded and verified: %s", what, target)
            return target
        target.unlink()  # stale or unverifiable: never leave it where a reader could take it for the new file
    with atomic_path(target) as tmp:
        try:
            actual = with_retries(lambda: _fetch_to(url, tmp, label=target.name), retries, what=f"{what} {url}")
        except (urllib.error.URLError, http.client.HTTPException, OSError) as exc:
            if isinstance(exc, urllib.error.HTTPError) and not is_transient(exc):
                raise GanopsError(f"{what}: {url} answered HTTP {exc.code} {exc.reason}") from exc
            attempts = retries + 1
            raise GanopsError(f"{what}: could not download {url} after {attempts} attempt(s) ({one_line(exc)}); "
                              f"{hint}") from exc
        if expected and actual != expected:
            raise GanopsError(f"{what}: sha256 mismatch for {url}: expected {expected}, got {actual}; "
                              "the download was discarded")
    return target


def _fetch_to(url: str, path: Path, label: str) -> str:
    """One attempt: stream the body into `path` (overwriting) and return its sha256."""
    digest = hashlib.sha256()
    request = urllib.request.Request(url, headers={"User-Agent": USER_AGENT})
    with urllib.request.urlopen(request, timeout=TIMEOUT_S) as response, open(path, "wb") as out:
        length = response.headers.get("Content-Length")
        total = int(length) if length and length.isdigit() else None
        # disable=None: a bar on a terminal, silence in logs and CI
        with tqdm(total=total, unit="B", unit_scale=True, desc=label, file=sys.stderr, disable=None,
                  leave=False) as bar:
            received = 0
            while block := response.read(CHUNK):
                out.write(block)
                digest.update(block)
                received += len(block)
                bar.update(len(block))
    if total is not None and received != total:  # a connection cut off early, seen as a transient failure
        raise http.client.IncompleteRead(b"", total - received)
    return digest.hexdigest()


# ---------------------------------------------------------------------------------------------------
# Safe extraction

@dataclass(frozen=True)
class _Member:
    """What every archive format has in common, enough to vet a member before writing it."""

    name: str
    is_dir: bool
    is_file: bool  # neither: a link, device, FIFO... which are refused
    size: int
    open: Callable[[], IO[bytes]]
    vet: Callable[[Path], object] = lambda root: None  # a format's own safety check, given the extraction root


def safe_extract(archive: Path, dest: Path, max_bytes: int) -> list[Path]:
    """Extract a zip or tar archive into `dest` (replacing it) and return the files written.

    Refused with a GanopsError, before anything reaches `dest`: members with absolute paths or `..`
    components, links and device files, and archives expanding beyond `max_bytes` (checked from the
    declared sizes first, then by counting while writing, so a lying header cannot get past it).
    """
    archive, dest = Path(archive), Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", suffix=".tmp", dir=dest.parent))
    try:
        with _archive_members(archive) as members:
            checked = [_check_member(m, archive, staging) for m in members]
            declared = sum(m.size for m in checked if m.is_file)
            if declared > max_bytes:
                raise GanopsError(f"archive {archive} would expand to {declared} bytes, more than the "
                                  f"{max_bytes} allowed (raise data.max_extract_mb if it is expected)")
            written = _write_members(checked, staging, archive, max_bytes)
        _replace_dir(staging, dest)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return sorted(dest / p.relative_to(staging) for p in written)


@contextmanager
def _archive_members(archive: Path) -> Iterator[list[_Member]]:
    """An archive's members as `_Member`s, whatever the format; the archive stays open inside the block."""
    with _open_archive(archive) as handle:
        try:
            if isinstance(handle, zipfile.ZipFile):
                members = [_zip_member(handle, info) for info in handle.infolist()]
            else:
                members = [_tar_member(handle, info) for info in handle.getmembers()]
        except (zipfile.BadZipFile, tarfile.TarError, EOFError, OSError) as exc:
            raise GanopsError(f"archive {archive} is damaged: {one_line(exc)}") from exc
        yield members


def _open_archive(archive: Path) -> zipfile.ZipFile | tarfile.TarFile:
    """Open by content, not by name: a URL's archive is saved without its suffix."""
    try:
        if zipfile.is_zipfile(archive):
            return zipfile.ZipFile(archive)
        if tarfile.is_tarfile(archive):
            return tarfile.open(archive, "r:*")  # plain, gzip, bzip2 or xz
    except (zipfile.BadZipFile, tarfile.TarError, EOFError, OSError) as exc:
        raise GanopsError(f"archive {archive} is damaged: {one_line(exc)}") from exc
    raise GanopsError(f"{archive} is not an archive this can extract (allowed: {ARCHIVE_KINDS})")


def _zip_member(zf: zipfile.ZipFile, info: zipfile.ZipInfo) -> _Member:
    # The unix file type, when the archiver recorded one (some record only permissions: type 0)
    file_type = stat.S_IFMT(info.external_attr >> 16)
    special = file_type not in (0, stat.S_IFREG, stat.S_IFDIR)  # symlink, device, FIFO, socket
    return _Member(info.filename, info.is_dir(), not info.is_dir() and not special, info.file_size,
                   lambda: zf.open(info))


def _tar_member(tf: tarfile.TarFile, info: tarfile.TarInfo) -> _Member:
    # Python's own "data" filter (PEP 706) vets each member too, after the checks below
    return _Member(info.name, info.isdir(), info.isreg(), info.size, lambda: _tar_stream(tf, info),
                   vet=lambda root: tarfile.data_filter(info, str(root)))


def _tar_stream(tf: tarfile.TarFile, info: tarfile.TarInfo) -> IO[bytes]:
    stream = tf.extractfile(info)
    assert stream is not None  # only called for regular files
    return stream


def _check_member(member: _Member, archive: Path, root: Path) -> _Member:
    name = member.name
    parts = name.replace("\\", "/").split("/")  # archives made on Windows may use backslashes
    if name.startswith(("/", "\\")) or (len(name) > 1 and name[1] == ":"):
        raise GanopsError(f"archive {archive} holds a member with an absolute path: {name!r} (refused)")
    if ".." in parts:
        raise GanopsError(f"archive {archive} holds a member that climbs out with '..': {name!r} (refused)")
    if not (member.is_file or member.is_dir):
        raise GanopsError(f"archive {archive} holds a link or special file: {name!r} "
                          "(refused: only regular files and folders are extracted)")
    if "\0" in name or not name.strip("/"):
        raise GanopsError(f"archive {archive} holds a member with an invalid name: {name!r} (refused)")
    try:
        member.vet(root)
    except tarfile.FilterError as exc:
        raise GanopsError(f"archive {archive} holds an unsafe member {name!r}: {one_line(exc)} (refused)") from exc
    return member


def _write_members(members: list[_Member], staging: Path, archive: Path, max_bytes: int) -> list[Path]:
    root = staging.resolve()
    budget = _ByteBudget(max_bytes, archive)
    written: list[Path] = []
    for member in members:
        path = staging / member.name.replace("\\", "/")
        if not path.resolve().is_relative_to(root):  # belt and braces after _check_member
            raise GanopsError(f"archive {archive} member {member.name!r} would land outside {staging} (refused)")
        try:
            if member.is_dir:
                path.mkdir(parents=True, exist_ok=True)
                continue
            path.parent.mkdir(parents=True, exist_ok=True)
            with member.open() as source, open(path, "wb") as out:
                for block in _blocks(source):
                    budget.spend(len(block))
                    out.write(block)
        except (zipfile.BadZipFile, tarfile.TarError, EOFError, OSError, RuntimeError) as exc:
            # RuntimeError: zipfile's answer to an encrypted member
            raise GanopsError(f"cannot extract {member.name!r} from {archive}: {one_line(exc)}") from exc
        written.append(path)
    return written


def _blocks(stream: IO[bytes]) -> Iterator[bytes]:
    while block := stream.read(CHUNK):
        yield block


class _ByteBudget:
    """Counts bytes actually written, so an archive whose headers understate sizes is still stopped."""

    def __init__(self, limit: int, archive: Path):
        self.limit, self.archive, self.used = limit, archive, 0

    def spend(self, n: int) -> None:
        self.used += n
        if self.used > self.limit:
            raise GanopsError(f"archive {self.archive} expands beyond the {self.limit} bytes allowed "
                              "(raise data.max_extract_mb if it is expected)")


def _replace_dir(staging: Path, dest: Path) -> None:
    """Move the finished `staging` folder to `dest`, replacing an older one only once the new is complete."""
    if not dest.exists():
        os.replace(staging, dest)
        return
    old = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", suffix=".old", dir=dest.parent))
    os.replace(dest, old / dest.name)
    os.replace(staging, dest)
    shutil.rmtree(old, ignore_errors=True)
