"""MLflow set-up and logging: the only module that imports mlflow.

Runs are addressed by id through MlflowClient, so the train stage, the evaluate stage and a resumed
process all write into the same run without sharing global state.
"""

from __future__ import annotations

import logging
import os
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, Iterable, Mapping, Optional

import numpy as np
import torch

from ganops.config import Config, TrackingConfig
from ganops.errors import GanopsError
from ganops.reporting import grid_image, grid_path
from ganops.training import Callback, TrainState

os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "2")
# MLflow 3 sends usage telemetry from background threads by default; a training job should not phone
# home (and offline, the threads only retry). Users can still opt in by setting it to false.
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "20")

import mlflow  # noqa: E402
from mlflow.entities import Metric, Param, RunStatus, RunTag  # noqa: E402
from mlflow.tracking import MlflowClient  # noqa: E402

# MLflow's logging is chatty (database migrations, run URLs); keep it to warnings. After the import,
# because importing mlflow configures its own logger.
for _name in ("alembic", "mlflow"):
    logging.getLogger(_name).setLevel(logging.WARNING)

GRID_KEY = "samples"
EPOCH_MARKER = "epoch"  # logged last in every flush: how far MLflow's history goes after a crash


def connect(tracking: TrackingConfig) -> MlflowClient:
    """Point MLflow at the configured store and check that it answers."""
    uri = tracking.uri
    if uri.startswith("sqlite:///"):
        db_path = Path(uri[len("sqlite:///"):])
        try:
            db_path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise GanopsError(f"tracking.uri {uri!r}: cannot create {db_path.parent} ({exc.strerror})") from exc
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
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise GanopsError(f"tracking.uri {uri!r} is unreachable ({first[:200]}); set tracking.enabled: false "
                          f"to train without tracking") from exc
    return client


def experiment_name(config: Config) -> str:
    return config.tracking.experiment or f"ganops-{config.data.dataset}"


def ensure_experiment(client: MlflowClient, name: str, artifact_root: str) -> str:
    found = client.get_experiment_by_name(name)
    if found is not None:
        if found.lifecycle_stage == "deleted":
            client.restore_experiment(found.experiment_id)
        return found.experiment_id
    location = Path(artifact_root).resolve().as_uri()
    try:
        return client.create_experiment(name, artifact_location=location)
    except mlflow.exceptions.MlflowException:
        # Another worker created it between our lookup and create.
        found = client.get_experiment_by_name(name)
        if found is None:
            raise
        return found.experiment_id


def flatten(values: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    flat: dict[str, str] = {}
    for key, value in values.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(flatten(value, f"{name}."))
        else:
            flat[name] = str(value)
    return flat


def start_run(client: MlflowClient, experiment_id: str, run_name: str, params: Mapping[str, str],
              tags: Mapping[str, str], parent_run_id: Optional[str] = None) -> str:
    all_tags = dict(tags)
    if parent_run_id:
        all_tags["mlflow.parentRunId"] = parent_run_id
    run = client.create_run(experiment_id, run_name=run_name, tags=all_tags)
    run_id = run.info.run_id
    log_params(client, run_id, params)
    return run_id


def log_params(client: MlflowClient, run_id: str, params: Mapping[str, str]) -> None:
    items = [Param(k, v[:6000]) for k, v in params.items()]
    for start in range(0, len(items), 100):  # log_batch takes at most 100 params per call
        client.log_batch(run_id, params=items[start:start + 100])


def set_tags(client: MlflowClient, run_id: str, tags: Mapping[str, str]) -> None:
    client.log_batch(run_id, tags=[RunTag(k, str(v)) for k, v in tags.items()])


def run_status(client: MlflowClient, run_id: str) -> Optional[str]:
    """RUNNING, FINISHED, FAILED, KILLED or SCHEDULED; None when there is no such run."""
    try:
        return client.get_run(run_id).info.status
    except mlflow.exceptions.MlflowException:
        return None


def run_exists(client: MlflowClient, run_id: Optional[str]) -> bool:
    if not run_id:
        return False
    try:
        client.get_run(run_id)
        return True
    except mlflow.exceptions.MlflowException:
        return False


def reopen_run(client: MlflowClient, run_id: str) -> None:
    client.update_run(run_id, status=RunStatus.to_string(RunStatus.RUNNING))


def finish_run(client: MlflowClient, run_id: str, status: str = "FINISHED", reason: Optional[str] = None) -> None:
    if reason:
        client.set_tag(run_id, "failure_reason", reason[:5000])
    client.set_terminated(run_id, status=status)


def log_metrics(client: MlflowClient, run_id: str, values: Mapping[str, float], step: int = 0) -> None:
    now = _now_ms()
    client.log_batch(run_id, metrics=[Metric(k, float(v), now, step) for k, v in values.items()])


def log_artifacts(client: MlflowClient, run_id: str, files: Iterable[Path], folder: Optional[str] = None) -> None:
    for path in files:
        if path.is_file():
            client.log_artifact(run_id, str(path), artifact_path=folder)


def log_generator_model(run_id: str, generator: torch.nn.Module, nz: int) -> None:
    """The trained generator as an MLflow PyTorch model (loadable with mlflow.pytorch.load_model)."""
    import mlflow.pytorch

    generator = generator.cpu().eval()
    example = np.random.default_rng(0).standard_normal((2, nz, 1, 1)).astype(np.float32)
    package_dir = Path(__file__).resolve().parent
    requirements = [f"torch=={torch.__version__.split('+')[0]}", f"mlflow=={mlflow.__version__}"]
    with mlflow.start_run(run_id=run_id):
        mlflow.pytorch.log_model(generator, name="generator", input_example=example,
                                 pip_requirements=requirements, code_paths=[str(package_dir)])


def _read_png(path: Path) -> Optional[np.ndarray]:
    if not path.is_file():
        return None
    from PIL import Image

    with Image.open(path) as image:
        return np.asarray(image.convert("RGB"))


def _now_ms() -> int:
    import time

    return int(time.time() * 1000)


class MlflowLogger(Callback):
    """Writes a training run into MLflow.

    Metrics and sample grids are held until the epoch's checkpoint is on disk and only then sent, so
    after a crash MLflow's history ends exactly where the checkpoint does: a resumed run neither repeats
    nor skips a step. Each flush ends with an `epoch` marker metric, which tells a resumed process how
    far the history went.
    """

    def __init__(self, client: MlflowClient, experiment_id: str, run_name: str, params: Mapping[str, str],
                 tags: Mapping[str, str], grids_dir: Optional[Path] = None, parent_run_id: Optional[str] = None):
        self.client, self.experiment_id, self.run_name = client, experiment_id, run_name
        self.params, self.tags, self.grids_dir, self.parent_run_id = params, tags, grids_dir, parent_run_id
        self.run_id: Optional[str] = None
        self.flushed_step = 0
        self.flushed_epoch = 0
        self.pending_grids: dict[int, np.ndarray] = {}

    def on_train_start(self, trainer: Any, state: TrainState) -> None:
        if state.run_id and run_exists(self.client, state.run_id):
            self.run_id = state.run_id
            reopen_run(self.client, self.run_id)
            marker = self.client.get_metric_history(self.run_id, EPOCH_MARKER)
            if marker:
                last = max(marker, key=lambda m: m.step)
                self.flushed_step, self.flushed_epoch = last.step, int(last.value)
            self.client.set_tag(self.run_id, "resumed_from_epoch", str(state.epoch))
            self._flush(state)  # what the checkpoint holds beyond MLflow's history (crash between the two)
        else:
            self.run_id = start_run(self.client, self.experiment_id, self.run_name, self.params, self.tags,
                                    self.parent_run_id)
            state.run_id = self.run_id

    def on_epoch_end(self, state: TrainState, grid: torch.Tensor) -> None:
        self.pending_grids[state.epoch] = grid_image(grid)

    def on_checkpoint(self, state: TrainState) -> None:
        self._flush(state)

    def on_train_end(self, state: TrainState) -> None:
        self._flush(state)

    def on_failure(self, state: TrainState, error: BaseException) -> None:
        if self.run_id is None:
            return
        if isinstance(error, KeyboardInterrupt):
            finish_run(self.client, self.run_id, "KILLED", "interrupted")
            return
        step = getattr(error, "step", None)
        if step is not None:
            self.client.set_tag(self.run_id, "failed_at_step", str(step))
        if type(error).__name__ != "TrialPruned":  # the tuner closes pruned trials itself
            finish_run(self.client, self.run_id, "FAILED", str(error).splitlines()[0] if str(error) else type(error).__name__)

    def flush(self, state: TrainState) -> None:
        """Send what is held now: for runs without checkpoints (tuning trials), where nothing resumes."""
        self._flush(state)

    def _flush(self, state: TrainState) -> None:
        if self.run_id is None:
            return
        for epoch in range(self.flushed_epoch + 1, state.epoch + 1):
            image = self.pending_grids.get(epoch)
            if image is None and self.grids_dir is not None:  # made before a crash: read back from disk
                image = _read_png(grid_path(self.grids_dir, epoch))
            if image is not None:
                self.client.log_image(self.run_id, image, key=GRID_KEY, step=epoch)
        self.pending_grids = {e: g for e, g in self.pending_grids.items() if e > state.epoch}
        now = _now_ms()
        metrics = [Metric(k, float(v), now, int(row["step"]))
                   for row in state.history if row["step"] > self.flushed_step
                   for k, v in row.items() if k not in ("step", "epoch")]
        metrics += [Metric("fid", row["fid"], now, int(row["step"]))
                    for row in state.fid_history if row["epoch"] > self.flushed_epoch]
        if state.epoch > self.flushed_epoch:
            metrics.append(Metric(EPOCH_MARKER, float(state.epoch), now, state.step))
        for start in range(0, len(metrics), 1000):  # log_batch takes at most 1000 metrics per call
            self.client.log_batch(self.run_id, metrics=metrics[start:start + 1000])
        self.flushed_step, self.flushed_epoch = state.step, max(self.flushed_epoch, state.epoch)


def print_run_location(client: MlflowClient, run_id: str) -> None:
    run = client.get_run(run_id)
    print(f"MLflow run {run_id} in experiment {run.info.experiment_id}: `make mlflow-ui`, then "
          f"http://127.0.0.1:5000/#/experiments/{run.info.experiment_id}/runs/{run_id}", file=sys.stderr)
