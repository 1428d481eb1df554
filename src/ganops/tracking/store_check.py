"""Check an MLflow sqlite store before MLflow opens it, and create a new one under a lock.

MLflow meets a damaged database with a long SQLAlchemy traceback, and several workers that start on a
new file race on its schema. Here the file is read with sqlite3 (read-only; written only to roll back the
hot journal of a killed writer): corrupt, locked, not an MLflow store, or a schema older or newer than
this MLflow each become one line that names the file and the way back. ganops never migrates a store: an old one is left for
`mlflow db upgrade`, after the user keeps a copy. No mlflow import: the caller passes what it knows.
"""

from __future__ import annotations

import contextlib
import fcntl
import sqlite3
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Sequence

from ganops.errors import GanopsError, one_line

SQLITE_PREFIX = "sqlite:///"


def sqlite_path(uri: str) -> Path | None:
    """The database file of a `sqlite:///` tracking URI, else None."""
    return Path(uri[len(SQLITE_PREFIX):]) if uri.startswith(SQLITE_PREFIX) else None


def is_new(path: Path) -> bool:
    return not path.exists() or path.stat().st_size == 0


def check_store(uri: str, revisions: Sequence[str], version: str) -> None:
    """Raise GanopsError unless the existing sqlite store at `uri` is sound and at this MLflow's schema.

    `revisions`: the schema revisions this MLflow knows, oldest first, the last being its head.
    """
    path = sqlite_path(uri)
    if path is None or is_new(path):
        return
    aside = f"move {path} aside to start a fresh store"
    _recover_hot_journal(path)
    try:
        with _read_only(path) as db:
            verdict = db.execute("PRAGMA quick_check").fetchone()[0]
            if verdict != "ok":
                raise sqlite3.DatabaseError(verdict)
            tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
            if "alembic_version" not in tables:
                raise GanopsError(f"tracking store {path} is not an MLflow database (no alembic_version table); "
                                  f"point tracking.uri at another file or {aside}")
            row = db.execute("SELECT version_num FROM alembic_version").fetchone()
    except sqlite3.OperationalError as exc:
        if "locked" in str(exc) or "busy" in str(exc):
            raise GanopsError(f"tracking store {path} is locked by another process ({one_line(exc)}); "
                              f"wait for it to finish, or stop it") from exc
        raise _corrupt(path, exc, aside) from exc
    except sqlite3.DatabaseError as exc:
        raise _corrupt(path, exc, aside) from exc
    revision = row[0] if row else None
    if revision == revisions[-1]:
        return
    if revision in revisions:
        raise GanopsError(f"tracking store {path} has schema {revision}, older than MLflow {version} "
                          f"({revisions[-1]}); keep a copy (cp {path} {path}.bak), then run "
                          f"`mlflow db upgrade {uri}`")
    raise GanopsError(f"tracking store {path} has schema {revision}, unknown to MLflow {version} (written by a "
                      f"newer MLflow?); install the MLflow that wrote it, or {aside}")


def _corrupt(path: Path, exc: BaseException, aside: str) -> GanopsError:
    return GanopsError(f"tracking store {path} is corrupt ({one_line(exc, limit=120)}); "
                       f"restore a copy of it, or {aside}")


def _recover_hot_journal(path: Path) -> None:
    """A process killed in the middle of a write (a training rank stopped by torchrun, an OOM kill) leaves
    `<db>-journal`: SQLite's crash recovery rolls it back at the next read-write open, back to the last
    committed state. That is the one write done here; a read-only open would call the store corrupt."""
    journal = path.with_name(path.name + "-journal")
    if journal.is_file() and journal.stat().st_size > 0:
        try:
            with contextlib.closing(sqlite3.connect(path, timeout=5)) as db:
                db.execute("SELECT count(*) FROM sqlite_master").fetchone()
        except sqlite3.DatabaseError:
            pass  # the read-only check below names what is wrong


@contextmanager
def _read_only(path: Path) -> Iterator[sqlite3.Connection]:
    db = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, timeout=5)
    try:
        yield db
    finally:
        db.close()


@contextmanager
def creation_lock(uri: str) -> Iterator[None]:
    """Hold `<db>.lock` while a sqlite store is checked and, when new, given its schema, so workers that
    start together do not race on MLflow's schema creation. Other URIs are left to their server."""
    path = sqlite_path(uri)
    if path is None:
        yield
        return
    with open(f"{path}.lock", "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
