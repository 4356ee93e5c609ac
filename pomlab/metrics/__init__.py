"""FID, IS, precision/recall and KID of float images (N, C, H, W) in [0, 1] on the "digits" backend
(digits-FID, never Inception FID) or the "inception" one; see docs/metrics.md."""
from .coverage import kernel_inception_distance, knn_radii, precision_recall
from .api import (default_cache_dir, describe, evaluate, fid, inception_score,
                  inception_score_with_std, reference_datasets, reference_features,
                  reference_images, reference_label, reference_statistics,
                  register_reference_dataset)
from .backends import (BACKENDS, INCEPTION_WEIGHTS_FILE, INCEPTION_WEIGHTS_URL, DigitsBackend,
                       FeatureBackend, InceptionBackend, get_backend, inception_weights_path)
from .extract import feature_statistics
from .images import load_samples
from .scores import (FeatureStats, frechet_distance, inception_score_from_logits, pool_statistics,
                     stats_distance)

__all__ = ["frechet_distance", "fid", "inception_score", "inception_score_with_std", "evaluate",
           "describe", "reference_statistics", "feature_statistics", "FeatureStats",
           "stats_distance", "pool_statistics", "inception_score_from_logits", "get_backend",
           "FeatureBackend", "DigitsBackend", "InceptionBackend", "BACKENDS",
           "inception_weights_path", "INCEPTION_WEIGHTS_FILE", "INCEPTION_WEIGHTS_URL",
           "register_reference_dataset", "reference_datasets", "reference_images",
           "reference_label", "default_cache_dir", "load_samples", "precision_recall",
           "kernel_inception_distance", "knn_radii", "reference_features"]
