"""Tolerating the race of several workers that create the same storage schema or study at one moment."""

from __future__ import annotations

import random
import time
from typing import Callable, TypeVar

import optuna
import sqlalchemy.exc

T = TypeVar("T")
RACE_ATTEMPTS = 8
# What the loser of a creation race sees: the winner's row (UNIQUE constraint, DuplicatedStudyError) or
# its lock on a table being created (sqlite's "database is locked", a PostgreSQL lock timeout).
RACE_ERRORS = (optuna.exceptions.DuplicatedStudyError, sqlalchemy.exc.IntegrityError,
               sqlalchemy.exc.OperationalError)


def lost_race(exc: BaseException) -> bool:
    """Whether `exc` is what the loser of a creation race sees.

    Besides RACE_ERRORS: PostgreSQL's DuplicateTable (and MySQL's error 1050) arrive as ProgrammingError when
    two workers both found Optuna's `alembic_version` table missing and both create it.
    """
    if isinstance(exc, RACE_ERRORS):
        return True
    return isinstance(exc, sqlalchemy.exc.ProgrammingError) and "already exists" in str(exc.orig)


def retry_race(create: Callable[[], T], attempts: int = RACE_ATTEMPTS) -> T:
    """`create()`, called again after a short jittered sleep when another worker won the race.

    Optuna's RDB storage leaves its callers to tolerate this race. The last attempt's error propagates,
    so a storage that is really broken still fails (after about five seconds).
    """
    for attempt in range(attempts):
        try:
            return create()
        except Exception as exc:
            if attempt == attempts - 1 or not lost_race(exc):
                raise
            time.sleep(random.uniform(0.05, 0.25) * (attempt + 1))
    raise AssertionError("attempts must be at least 1")
