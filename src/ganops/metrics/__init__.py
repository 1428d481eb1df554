"""FID and KID: feature extractors (pytorch-fid's Inception, an offline classifier), statistics, distances.

Nothing here knows about MLflow or DVC; every function takes plain arguments.
"""

from ganops.metrics.classifier import (FeatureClassifier, classifier_from_record, classifier_record,
                                       train_classifier)
from ganops.metrics.extractors import (INCEPTION_WEIGHTS_FILE, ClassifierExtractor, FeatureExtractor,
                                       InceptionExtractor, build_extractor, hub_inception_weights, inception_record,
                                       resolve_inception_weights)
from ganops.metrics.fid import (feature_statistics, fid_of_images, frechet_distance, kernel_inception_distance,
                                load_real_features, load_statistics, save_statistics)
from ganops.metrics.precision_recall import precision_recall

__all__ = [
    "FeatureClassifier", "train_classifier", "classifier_record", "classifier_from_record",
    "FeatureExtractor", "ClassifierExtractor", "InceptionExtractor", "build_extractor", "inception_record",
    "INCEPTION_WEIGHTS_FILE", "hub_inception_weights", "resolve_inception_weights",
    "feature_statistics", "save_statistics", "load_statistics", "frechet_distance", "kernel_inception_distance",
    "fid_of_images", "load_real_features", "precision_recall",
]
