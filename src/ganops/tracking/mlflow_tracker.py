"""The MLflow implementation of the Tracker seam: the only module that imports mlflow.

Runs are addressed by id through MlflowClient, so the train stage, the evaluate stage and a resumed
process all write into the same run without sharing global state.
"""

from __future__ import annotations

import contextlib
import json
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
from ganops.tracking.base import (CHAMPION_ALIAS, GIT_COMMIT_TAG, SOURCE_TAG, DatasetInfo, MetricPoint,
                                  RegisteredVersion, RunStatus, TrackerUnavailable, grid_artifact)
from ganops.tracking.store_check import check_store, creation_lock, sqlite_path

os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "2")
# MLflow 3 sends usage telemetry from background threads by default; a training job should not phone
# home (and offline, the threads only retry). Users can still opt in by setting it to false.
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "20")

import mlflow  # noqa: E402
from mlflow.entities import Dataset, DatasetInput, InputTag, Metric, Param, RunTag  # noqa: E402
from mlflow.exceptions import MlflowException  # noqa: E402
from mlflow.models import infer_signature  # noqa: E402
from mlflow.tracking import MlflowClient  # noqa: E402

# MLflow's logging is chatty (database migrations, run URLs); keep it to warnings. After the import,
# because importing mlflow configures its own logger.
for _name in ("alembic", "mlflow"):
    logging.getLogger(_name).setLevel(logging.WARNING)
# It logs a store error with its traceback before raising it; server_guard turns the raised one into one line.
logging.getLogger("mlflow.store.db.utils").setLevel(logging.CRITICAL)

# ganops' generic names -> MLflow's own (the run page's "Source" and git commit)
SYSTEM_TAGS = {GIT_COMMIT_TAG: "mlflow.source.git.commit", SOURCE_TAG: "mlflow.source.name"}
PARENT_TAG = "mlflow.parentRunId"
NOTE_TAG = "mlflow.note.content"  # the run page's description (markdown)
# Without this tag MLflow 3 opens an experiment on its GenAI pages; with it, on the runs table.
EXPERIMENT_KIND = ("mlflow.experimentKind", "custom_model_development")
UI_QUERY = "?workflowType=machine_learning"  # the UI's own switch to the model-training pages, in every URL
FID_VERSION_TAG = "fid"  # on a model version: what the champion comparison reads
# How a ganops status ends an MLflow run (MLflow knows only RUNNING, FINISHED, FAILED, KILLED, SCHEDULED).
# A pruned trial ended as the search planned: FINISHED, with a `state` tag saying PRUNED (KILLED is drawn red).
MLFLOW_STATUS = {RunStatus.FINISHED: "FINISHED", RunStatus.FAILED: "FAILED", RunStatus.KILLED: "KILLED",
                 RunStatus.PRUNED: "FINISHED", RunStatus.RUNNING: "RUNNING"}
GENERATOR_ARTIFACT = "generator"
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
        status = RunStatus(status)
        if status is RunStatus.PRUNED:
            self.set_tags(run_id, {"state": "PRUNED", **({"pruned_reason": reason[:5000]} if reason else {})})
        elif reason:
            self.client.set_tag(run_id, "failure_reason", reason[:5000])
        self.client.set_terminated(run_id, status=MLFLOW_STATUS[status])

    def run_url(self, run_id: str) -> str:
        experiment_id = self.client.get_run(run_id).info.experiment_id
        return f"{ui_base(self.uri)}/#/experiments/{experiment_id}/runs/{run_id}{UI_QUERY}"

    def experiment_url(self, port: int = UI_PORT) -> str:
        return f"{ui_base(self.uri, port)}/#/experiments/{self.experiment_id}{UI_QUERY}"

    def set_description(self, run_id: str, markdown: str) -> None:
        self.client.set_tag(run_id, NOTE_TAG, markdown)

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
        self.client.log_image(run_id, image, key=key, step=step)  # the run page's image card, with its slider
        self.client.log_image(run_id, image, artifact_file=grid_artifact(key, step))

    def log_dataset(self, run_id: str, dataset: DatasetInfo) -> None:
        entity = Dataset(name=dataset.name, digest=dataset.digest, source_type="dvc",
                         source=json.dumps({"uri": dataset.source}),
                         profile=json.dumps({"num_images": dataset.num_images}))
        self.client.log_inputs(run_id, [DatasetInput(entity, [InputTag("mlflow.data.context", "training")])])

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
        with torch.no_grad():  # latent vectors in, images in [-1, 1] out
            signature = infer_signature(example, generator(torch.from_numpy(example)).numpy())
        mlflow.set_tracking_uri(self.uri)
        with server_guard(self.uri), mlflow.start_run(run_id=run_id):
            mlflow.pytorch.log_model(generator, name=GENERATOR_ARTIFACT, input_example=example, signature=signature,
                                     pip_requirements=requirements, code_paths=[str(package_dir)])

    def register_generator(self, run_id: str, model_name: str, fid: float) -> RegisteredVersion:
        """A new version of `model_name` from the run's generator; `@champion` moves only to a better FID."""
        existing = self.client.search_model_versions(f"name='{model_name}' and run_id='{run_id}'")
        if existing:  # evaluate re-run on the same training run: the same version, with its new FID
            version = str(max(int(v.version) for v in existing))
        else:
            # MLflow 3 keeps a logged model apart from the run's artifacts, under its own models:/<id> URI.
            outputs = self.client.get_run(run_id).outputs
            model_ids = [output.model_id for output in (outputs.model_outputs if outputs else [])]
            if not model_ids:
                raise GanopsError(f"MLflow run {run_id} has no logged generator to register; set tracking.log_model: "
                                  f"true and run `dvc repro -f train`")
            logged = self.client.get_logged_model(model_ids[-1])
            try:
                self.client.create_registered_model(model_name)
            except MlflowException as exc:
                if exc.error_code != "RESOURCE_ALREADY_EXISTS":
                    raise
            version = str(self.client.create_model_version(model_name, logged.artifact_location, run_id=run_id,
                                                           model_id=logged.model_id).version)
        self.client.set_model_version_tag(model_name, version, FID_VERSION_TAG, repr(float(fid)))
        try:
            champion = self.client.get_model_version_by_alias(model_name, CHAMPION_ALIAS)
            champion_fid = float(champion.tags.get(FID_VERSION_TAG, "inf"))
        except MlflowException:  # no champion yet
            champion, champion_fid = None, float("inf")
        if champion is not None and str(champion.version) != version and champion_fid <= fid:
            return RegisteredVersion(model_name, version, False, champion_fid)
        self.client.set_registered_model_alias(model_name, CHAMPION_ALIAS, version)
        return RegisteredVersion(model_name, version, True, fid)


def ui_base(uri: str, port: int = UI_PORT) -> str:
    """The UI's address: the tracking server itself, or what `make mlflow-ui` serves for a local store."""
    return uri.rstrip("/") if uri.startswith(("http://", "https://")) else f"http://127.0.0.1:{port}"


def load_generator(model_uri: str, tracking_uri: str) -> tuple[torch.nn.Module, int]:
    """A logged generator from `runs:/<id>/generator` or `models:/<name>@<alias>`, and its latent size.

    MLflow 3 saves it as a torch.export program (no pickle): a graph traced in eval mode, so the latent
    size comes from the model's signature rather than from an attribute of the module.
    """
    import mlflow.pytorch
    from mlflow.models import get_model_info

    mlflow.set_tracking_uri(tracking_uri)
    try:
        nz = get_model_info(model_uri).signature.inputs.to_dict()[0]["tensor-spec"]["shape"][1]
        return mlflow.pytorch.load_model(model_uri, map_location="cpu"), int(nz)
    except MlflowException as exc:
        raise GanopsError(f"--model {model_uri!r} not found in {tracking_uri} ({one_line(exc, limit=200)})") from exc


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
        full = _store_write_failure(exc)
        if full:
            path = sqlite_path(uri) or uri
            raise GanopsError(f"{path}: the tracking store cannot be written (sqlite: {full}: the disk is full or "
                              f"failing); free space and run the same command again: training resumes from its "
                              f"last checkpoint into the same MLflow run") from exc
        if isinstance(exc, MlflowException) and not _unreachable(exc):
            raise
        raise TrackerUnavailable(uri, _reason(exc)) from exc


def _store_write_failure(exc: BaseException) -> Optional[str]:
    """sqlite's own words when a write to the store failed for lack of space ('database or disk is full',
    or 'disk I/O error' when a file-size limit or a full disk stops the journal)."""
    seen: Optional[BaseException] = exc
    while seen is not None:
        found = re.search(r"(database or disk is full|disk I/O error)", str(seen))
        if found:
            return found.group(1)
        seen = seen.__cause__ or seen.__context__
    return None


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
    # sqlite: one worker at a time checks the file and, when it is new, lets MLflow create the schema
    # (MlflowClient opens the store, and so creates the schema, as it is made).
    with creation_lock(uri):
        if sqlite_path(uri) is not None:
            check_store(uri, schema_revisions(uri), mlflow.__version__)
        mlflow.set_tracking_uri(uri)
        client = MlflowClient(tracking_uri=uri)
        _first_contact(client, uri)
    return client


def _first_contact(client: MlflowClient, uri: str) -> None:
    try:
        client.search_experiments(max_results=1)
    except Exception as exc:  # MLflow raises many types for a bad store: report them all the same way
        raise GanopsError(f"tracking.uri {uri!r} is unreachable ({one_line(exc, limit=200)}); set "
                          f"tracking.enabled: false to train without tracking") from exc


def schema_revisions(uri: str) -> list[str]:
    """The store schema revisions this MLflow ships, oldest first (the last is its head)."""
    from alembic.script import ScriptDirectory
    from mlflow.store.db.utils import _get_alembic_config

    scripts = ScriptDirectory.from_config(_get_alembic_config(uri))
    return [script.revision for script in scripts.walk_revisions()][::-1]


def ensure_experiment(client: MlflowClient, name: str, artifact_root: str) -> str:
    found = client.get_experiment_by_name(name)
    if found is not None:
        if found.lifecycle_stage == "deleted":
            client.restore_experiment(found.experiment_id)
        if found.tags.get(EXPERIMENT_KIND[0]) != EXPERIMENT_KIND[1]:  # made by an older ganops
            client.set_experiment_tag(found.experiment_id, *EXPERIMENT_KIND)
        return found.experiment_id
    # A tracking server proxies artifacts into its own --artifacts-destination; a local store uses artifact_root.
    remote = str(client.tracking_uri).startswith(("http://", "https://"))
    location = None if remote else Path(artifact_root).resolve().as_uri()
    try:
        return client.create_experiment(name, artifact_location=location, tags=dict([EXPERIMENT_KIND]))
    except MlflowException:
        # Another worker created it between our lookup and create.
        found = client.get_experiment_by_name(name)
        if found is None:
            raise
        return found.experiment_id

