"""Experiment tracking behind a small seam (`Tracker`); MLflow is its one implementation.

Only `ganops.tracking.mlflow_tracker` imports mlflow, and only `open_tracker` imports that module, so
stages and the tuner never touch MLflow's API, and tracking off costs no MLflow import.
"""

from ganops.tracking.base import (FID_METRIC, GIT_COMMIT_TAG, TRAINING_PARAMS, DatasetInfo, MetricPoint,
                                  RegisteredVersion, RunStatus, Tracker, TrackerUnavailable, experiment_name, flatten,
                                  model_name, open_tracker, run_name, run_tags, stage_params)

__all__ = ["FID_METRIC", "GIT_COMMIT_TAG", "TRAINING_PARAMS", "DatasetInfo", "MetricPoint", "RegisteredVersion",
           "RunStatus", "Tracker", "TrackerUnavailable", "experiment_name", "flatten", "model_name", "open_tracker",
           "run_name", "run_tags", "stage_params"]
