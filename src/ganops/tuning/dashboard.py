"""What optuna-dashboard shows about a study: the objective's name, and links from trials to their runs."""

from __future__ import annotations

from typing import Optional

import optuna

from ganops.config import Config
from ganops.tracking import FID_METRIC
from ganops.tuning.storage import experimental_features

RUN_URL_ATTR = "mlflow_run_url"  # trial user attr: the trial's run in the MLflow UI


def label_study(study: optuna.Study, config: Config, experiment_url: Optional[str]) -> None:
    """Name the objective `fid` (not "Objective 0") and say what the study searches, on what, where its runs are."""
    if study.metric_names != [FID_METRIC]:
        with experimental_features():
            study.set_metric_names([FID_METRIC])
    attributes = {"objective": f"FID after tune.epochs={config.tune.epochs} epochs, {config.tune.eval_samples} "
                               f"samples, {config.fid.extractor} features (lower is better)",
                  "dataset": config.data.dataset, "pruner": config.tune.pruner}
    if experiment_url:
        attributes["mlflow_experiment_url"] = experiment_url
    for key, value in attributes.items():
        if study.user_attrs.get(key) != value:  # several workers share a study: write only what changed
            study.set_user_attr(key, value)
