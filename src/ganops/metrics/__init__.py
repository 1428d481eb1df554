"""FID and KID: feature extractors (pytorch-fid's Inception, an offline classifier), statistics, distances.

Nothing here knows about MLflow or DVC; every function takes plain arguments.

This file stays free of torch: config.py reads the extractor names (ganops.metrics.extractors) before
torch loads (see pipeline/_stage.py), and importing them runs this file first. The names below are
loaded from their modules on first use.
"""

from __future__ import annotations

from ganops.lazy import lazy_attributes

_HOMES = {
    **dict.fromkeys(["FeatureClassifier", "train_classifier", "classifier_record", "classifier_from_record"],
                    "ganops.metrics.classifier"),
    "build_extractor": "ganops.metrics.extractors",
    "FeatureExtractor": "ganops.metrics.extractors.base",
    "ClassifierExtractor": "ganops.metrics.extractors.classifier",
    **dict.fromkeys(["InceptionExtractor", "inception_record", "INCEPTION_WEIGHTS_FILE", "hub_inception_weights",
                     "resolve_inception_weights"], "ganops.metrics.extractors.inception"),
    **dict.fromkeys(["feature_statistics", "save_statistics", "load_statistics", "frechet_distance",
                     "kernel_inception_distance", "fid_of_images", "load_real_features"], "ganops.metrics.fid"),
    "precision_recall": "ganops.metrics.knn_precision_recall",
}

__all__ = list(_HOMES)

__getattr__ = lazy_attributes(__name__, _HOMES)
