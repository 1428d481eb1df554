"""A writer killed in the middle of a transaction (torchrun stopping a rank, an OOM kill) leaves a hot journal:
the store is sound, SQLite rolls the journal back, and the next run resumes; it is not called corrupt."""

import sqlite3
import subprocess
import sys

from ganops.tracking.store_check import check_store

KILLED_WRITER = """
import os, signal, sqlite3, sys
db = sqlite3.connect(sys.argv[1], isolation_level=None)
db.execute("PRAGMA cache_size=1")  # spill the changed pages into the file before the commit that never comes
db.execute("BEGIN")
db.executemany("INSERT INTO runs VALUES (?, ?)", [(str(i), "y" * 500) for i in range(2000)])
os.kill(os.getpid(), signal.SIGKILL)
"""


def test_a_hot_journal_is_rolled_back_not_called_corrupt(tmp_path):
    path = tmp_path / "mlflow.db"
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE alembic_version (version_num VARCHAR(32) NOT NULL PRIMARY KEY)")
        db.execute("INSERT INTO alembic_version VALUES ('head')")
        db.execute("CREATE TABLE runs (run_uuid TEXT PRIMARY KEY, name TEXT)")
        db.execute("INSERT INTO runs VALUES ('kept', 'x')")
    subprocess.run([sys.executable, "-c", KILLED_WRITER, str(path)])
    assert (tmp_path / "mlflow.db-journal").stat().st_size > 0

    check_store(f"sqlite:///{path}", ["old", "head"], "test")

    with sqlite3.connect(f"{path.as_uri()}?mode=ro", uri=True) as db:
        assert db.execute("SELECT run_uuid FROM runs").fetchall() == [("kept",)]
