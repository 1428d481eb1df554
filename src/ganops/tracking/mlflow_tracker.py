"""The MLflow implementation of the Tracker seam: the only module that imports mlflow.

Runs are addressed by id through MlflowClient, so the train stage, the evaluate stage and a resumed
process all write into the same run without sharing global state.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Iterable, Iterator, Mapping, Optional, Sequence

import numpy as np
import requests
import torch

from ganops.config import TrackingConfig
from ganops.errors import GanopsError, one_line
from ganops.fileio import make_parent_dir
from ganops.tracking.base import GIT_COMMIT_TAG, MetricPoint, RunStatus, TrackerUnavailable

os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "2")
# MLflow 3 sends usage telemetry from background threads by default; a training job should not phone
# home (and offline, the threads only retry). Users can still opt in by setting it to false.
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "20")

import mlflow  # noqa: E402
from mlflow.entities import Metric, Param, RunTag  # noqa: E402
from mlflow.exceptions import MlflowException  # noqa: E402
from mlflow.tracking import MlflowClient  # noqa: E402

# MLflow's logging is chatty (database migrations, run URLs); keep it to warnings. After the import,
# because importing mlflow configures its own logger.
for _name in ("alembic", "mlflow"):
    logging.getLogger(_name).setLevel(logging.WARNING)

SYSTEM_TAGS = {GIT_COMMIT_TAG: "mlflow.source.git.commit"}  # ganops' generic names -> MLflow's own
PARENT_TAG = "mlflow.parentRunId"
# How a ganops status ends an MLflow run (MLflow knows only RUNNING, FINISHED, FAILED, KILLED, SCHEDULED).
MLFLOW_STATUS = {RunStatus.FINISHED: "FINISHED", RunStatus.FAILED: "FAILED", RunStatus.KILLED: "KILLED",
                 RunStatus.PRUNED: "KILLED", RunStatus.RUNNING: "RUNNING"}
MAX_PARAMS_PER_BATCH = 100
MAX_METRICS_PER_BATCH = 1000
UI_PORT = 5000


class MlflowTracker:
    """A Tracker over one MLflow experiment."""

    def __init__(self, client: MlflowClient, experiment_id: str, uri: str):
        self.client, self.experiment_id, self.uri = GuardedClient(client, uri), experiment_id, uri

    @classmethod
    def connect(cls, tracking: TrackingConfig, experiment: str) -> "MlflowTracker":
        client = connect(tracking)
        return cls(client, ensure_experiment(client, experiment, tracking.artifact_root), tracking.uri)

    # ---------------------------------------------------------------- runs

    def start_run(self, name: str, params: Mapping[str, str], tags: Mapping[str, str],
                  parent_run_id: Optional[str] = None) -> str:
        all_tags = {SYSTEM_TAGS.get(k, k): str(v) for k, v in tags.items()}
        if parent_run_id:
            all_tags[PARENT_TAG] = parent_run_id
        run_id = self.client.create_run(self.experiment_id, run_name=name, tags=all_tags).info.run_id
        self.log_params(run_id, params)
        return run_id

    def run_status(self, run_id: Optional[str]) -> Optional[RunStatus]:
        if not run_id:
            return None
        try:
            status = self.client.get_run(run_id).info.status
        except MlflowException:
            return None
        return RunStatus(status) if status in RunStatus.__members__ else RunStatus.RUNNING

    def reopen_run(self, run_id: str) -> None:
        self.client.update_run(run_id, status="RUNNING")

    def finish_run(self, run_id: str, status: RunStatus = RunStatus.FINISHED, reason: Optional[str] = None) -> None:
        if reason:
            self.client.set_tag(run_id, "failure_reason", reason[:5000])
        self.client.set_terminated(run_id, status=MLFLOW_STATUS[RunStatus(status)])

    def run_url(self, run_id: str) -> str:
        base = self.uri.rstrip("/") if self.uri.startswith(("http://", "https://")) else f"http://127.0.0.1:{UI_PORT}"
        experiment_id = self.client.get_run(run_id).info.experiment_id
        return f"{base}/#/experiments/{experiment_id}/runs/{run_id}"

    # ---------------------------------------------------------------- values

    def log_params(self, run_id: str, params: Mapping[str, str]) -> None:
        items = [Param(k, str(v)[:6000]) for k, v in params.items()]
        for start in range(0, len(items), MAX_PARAMS_PER_BATCH):
            self.client.log_batch(run_id, params=items[start:start + MAX_PARAMS_PER_BATCH])

    def set_tags(self, run_id: str, tags: Mapping[str, str]) -> None:
        self.client.log_batch(run_id, tags=[RunTag(SYSTEM_TAGS.get(k, k), str(v)) for k, v in tags.items()])

    def log_metrics(self, run_id: str, values: Mapping[str, float], step: int = 0) -> None:
        self.log_metric_points(run_id, [MetricPoint(k, float(v), step) for k, v in values.items()])

    def log_metric_points(self, run_id: str, points: Sequence[MetricPoint]) -> None:
        now = int(time.time() * 1000)
        metrics = [Metric(p.key, float(p.value), now, int(p.step)) for p in points]
        for start in range(0, len(metrics), MAX_METRICS_PER_BATCH):
            self.client.log_batch(run_id, metrics=metrics[start:start + MAX_METRICS_PER_BATCH])

    def metric_history(self, run_id: str, key: str) -> list[MetricPoint]:
        return [MetricPoint(m.key, m.value, m.step) for m in self.client.get_metric_history(run_id, key)]

    # ---------------------------------------------------------------- files

    def log_image(self, run_id: str, image: np.ndarray, key: str, step: int) -> None:
        self.client.log_image(run_id, image, key=key, step=step)

    def log_artifacts(self, run_id: str, files: Iterable[Path], folder: Optional[str] = None) -> None:
        for path in files:
            if Path(path).is_file():
                self.client.log_artifact(run_id, str(path), artifact_path=folder)

    def log_generator(self, run_id: str, generator: torch.nn.Module, nz: int) -> None:
        """The trained generator as an MLflow PyTorch model (loadable with mlflow.pytorch.load_model)."""
        import mlflow.pytorch

        generator = generator.cpu().eval()
        example = np.random.default_rng(0).standard_normal((2, nz, 1, 1)).astype(np.float32)
        package_dir = Path(__file__).resolve().parents[1]
        requirements = [f"torch=={torch.__version__.split('+')[0]}", f"mlflow=={mlflow.__version__}"]
        mlflow.set_tracking_uri(self.uri)
        with server_guard(self.uri), mlflow.start_run(run_id=run_id):
            mlflow.pytorch.log_model(generator, name="generator", input_example=example,
                                     pip_requirements=requirements, code_paths=[str(package_dir)])


def _unreachable(exc: BaseException) -> bool:
    """MLflow's REST client failing to reach the server, or the server answering 5xx (it is going down)."""
    text = str(exc)
    return text.startswith("API request to") and ("failed with exception" in text or "error code 5" in text)


@contextlib.contextmanager
def server_guard(uri: str) -> Iterator[None]:
    """Turn an unreachable tracking server into TrackerUnavailable: one line, and callers may hold and retry."""
    try:
        yield
    except (MlflowException, requests.exceptions.RequestException) as exc:
        if isinstance(exc, MlflowException) and not _unreachable(exc):
            raise
        raise TrackerUnavailable(uri, _reason(exc)) from exc


def _reason(exc: BaseException) -> str:
    """The useful end of MLflow's message: 'Connection refused', 'error code 503', ..."""
    text = str(exc)
    found = re.search(r"\[Errno -?\d+\] ([^\"')]+)", text) or re.search(r"(error code \d+)", text)
    return found.group(1).strip() if found else one_line(exc, limit=160)


class GuardedClient:
    """An MlflowClient whose calls raise TrackerUnavailable when the server is unreachable."""

    def __init__(self, client: MlflowClient, uri: str):
        self._client, self._uri = client, uri

    def __getattr__(self, name: str):
        attribute = getattr(self._client, name)
        if not callable(attribute):
            return attribute

        def call(*args, **kwargs):
            with server_guard(self._uri):
                return attribute(*args, **kwargs)

        return call


def connect(tracking: TrackingConfig) -> MlflowClient:
    """Point MLflow at the configured store and check that it answers."""
    uri = tracking.uri
    if uri.startswith("sqlite:///"):
        make_parent_dir(uri[len("sqlite:///"):], "tracking.uri", uri)
    elif uri.startswith(("http://", "https://")):
        try:
            urllib.request.urlopen(uri.rstrip("/") + "/health", timeout=5).close()
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise GanopsError(f"tracking.uri {uri!r} is unreachable ({reason}); start the server, use "
                              f"sqlite:///mlruns/mlflow.db, or set tracking.enabled: false") from exc
    mlflow.set_tracking_uri(uri)
    client = MlflowClient(tracking_uri=uri)
    try:
        client.search_experiments(max_results=1)
    except Exception as exc:  # MLflow raises many types for a bad store: report them all the same way
        raise GanopsError(f"tracking.uri {uri!r} is unreachable ({one_line(exc, limit=200)}); set "
                          f"tracking.enabled: false to train without tracking") from exc
    return client


def ensure_experiment(client: MlflowClient, name: str, artifact_root: str) -> str:
    found = client.get_experiment_by_name(name)
    if found is not None:
        if found.lifecycle_stage == "deleted":
            client.restore_experiment(found.experiment_id)
        return found.experiment_id
    # A tracking server proxies artifacts into its own --artifacts-destination; a local store uses artifact_root.
    remote = str(client.tracking_uri).startswith(("http://", "https://"))
    location = None if remote else Path(artifact_root).resolve().as_uri()
    try:
        return client.create_experiment(name, artifact_location=location)
    except MlflowException:
        # Another worker created it between our lookup and create.
        found = client.get_experiment_by_name(name)
        if found is None:
            raise
        return found.experiment_id

