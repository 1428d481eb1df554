"""Where a study persists: the storage URL, the journal storage's heartbeat, opening the study.

A worker that dies leaves its trial RUNNING; the storage's heartbeat notices (after 2 x
`tune.heartbeat_interval` seconds of silence) and fails it, and the retry callback queues the same
parameters again (up to `tune.max_retry` times).
"""

from __future__ import annotations

import contextlib
import re
import time
import warnings
from typing import Any, Iterator

import optuna
from optuna.storages import BaseStorage, RDBStorage, RetryHeartbeatStaleTrialCallback
from optuna.storages.journal import JournalFileBackend
from optuna.trial import TrialState

from ganops.config import TuneConfig
from ganops.errors import GanopsError, one_line
from ganops.fileio import make_parent_dir
from ganops.tuning.optuna_private import JournalHeartbeatBase, storage_trial_id
from ganops.tuning.sampling import make_pruner, make_sampler

JOURNAL_PREFIX = "journal:"
SQLITE_PREFIX = "sqlite:///"
RDB_PREFIXES = (SQLITE_PREFIX, "postgresql", "mysql")


class HeartbeatJournalStorage(JournalHeartbeatBase):
    """Optuna's journal file storage plus the heartbeat that only its RDB storage has.

    The journal file is Optuna's recommended storage for several worker processes on one machine
    (no database locks); without a heartbeat, though, a killed worker's trial would stay RUNNING
    forever. Heartbeats are trial system attrs holding a Unix time.
    """

    HEARTBEAT_ATTR = "ganops:heartbeat"

    def __init__(self, backend: JournalFileBackend, heartbeat_interval: int, grace_period: int,
                 stale_trial_callback: Any = None):
        super().__init__(backend)
        self.heartbeat_interval = heartbeat_interval
        self.grace_period = grace_period
        self.stale_trial_callback = stale_trial_callback

    def record_heartbeat(self, trial_id: int) -> None:
        try:
            self.set_trial_system_attr(trial_id, self.HEARTBEAT_ATTR, time.time())
        except optuna.exceptions.UpdateFinishedTrialError:
            pass  # another worker already failed it as stale; Optuna's tell reports that

    def stale_trial_ids(self, study_id: int) -> list[int]:
        now = time.time()
        stale = []
        for trial in self.get_all_trials(study_id, deepcopy=False, states=(TrialState.RUNNING,)):
            beat = trial.system_attrs.get(self.HEARTBEAT_ATTR)
            if beat is None:
                continue  # as RDBStorage: a trial that never beat is not judged
            # A retried trial inherits its predecessor's old heartbeat: count from its own start too.
            started = trial.datetime_start.timestamp() if trial.datetime_start else 0.0
            if now - max(beat, started) > self.grace_period:
                stale.append(storage_trial_id(trial))
        return stale

    def get_heartbeat_interval(self) -> int:
        return self.heartbeat_interval

    def get_heartbeat_stale_trial_callback(self) -> Any:
        return self.stale_trial_callback


@contextlib.contextmanager
def experimental_features() -> Iterator[None]:
    """Use Optuna's heartbeat and retry API without its ExperimentalWarning on every call."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        yield


def redact_url(url: str) -> str:
    """A storage URL fit for logs and tracker tags: the password replaced by ***."""
    return re.sub(r"(://[^:/@]+:)[^@]*@", r"\1***@", url)


def make_storage(tune: TuneConfig) -> BaseStorage:
    """`sqlite:///file`, `postgresql://...`, `mysql://...` (RDB) or `journal:<file>` (several workers)."""
    url = tune.storage
    interval = tune.heartbeat_interval
    with experimental_features():
        retry = RetryHeartbeatStaleTrialCallback(max_retry=tune.max_retry)
        if url.startswith(JOURNAL_PREFIX):
            path = make_parent_dir(url[len(JOURNAL_PREFIX):], "tune.storage", url)
            return HeartbeatJournalStorage(JournalFileBackend(str(path)), interval, 2 * interval, retry)
        if not url.startswith(RDB_PREFIXES):
            raise GanopsError(f"tune.storage {redact_url(url)!r} is not allowed (allowed: sqlite:///<file>, "
                              f"journal:<file>, postgresql://..., mysql://...)")
        engine_kwargs = {}
        if url.startswith(SQLITE_PREFIX):
            make_parent_dir(url[len(SQLITE_PREFIX):], "tune.storage", url)
            # Several workers on one sqlite file wait for each other's writes instead of failing.
            engine_kwargs = {"connect_args": {"timeout": 60}}
        try:
            return RDBStorage(url, engine_kwargs=engine_kwargs, heartbeat_interval=interval,
                              grace_period=2 * interval, heartbeat_stale_trial_callback=retry)
        except Exception as exc:  # SQLAlchemy raises many types for a bad URL or an unreachable server
            raise GanopsError(f"tune.storage {redact_url(url)!r} cannot be opened "
                              f"({one_line(exc, limit=200)})") from exc


def open_study(tune: TuneConfig) -> optuna.Study:
    """Create the study, or load it when it exists: later invocations and other workers add trials."""
    return optuna.create_study(storage=make_storage(tune), study_name=tune.study_name, sampler=make_sampler(tune),
                               pruner=make_pruner(tune), direction="minimize", load_if_exists=True)


def fail_dead_trials(study: optuna.Study) -> None:
    """Fail (and queue retries of) trials whose worker stopped beating, before new trials start.

    Optuna also does this before each trial it starts; doing it first lets the tracked runs of those
    trials be closed even when this invocation starts no trial at all.
    """
    with experimental_features():
        optuna.storages.fail_stale_trials(study)
