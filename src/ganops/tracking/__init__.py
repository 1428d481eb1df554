"""Experiment tracking behind a small seam (`Tracker`); MLflow is its one implementation.

Only `ganops.tracking.mlflow_tracker` imports mlflow, and only `open_tracker` imports that module, so
stages and the tuner never touch MLflow's API, and tracking off costs no MLflow import.
"""

from ganops.tracking.base import (GIT_COMMIT_TAG, MetricPoint, RunStatus, Tracker, TrackerUnavailable, experiment_name,
                                  flatten, open_tracker, run_tags)

__all__ = ["GIT_COMMIT_TAG", "MetricPoint", "RunStatus", "Tracker", "TrackerUnavailable", "experiment_name", "flatten",
           "open_tracker", "run_tags"]
