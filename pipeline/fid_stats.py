"""Stage `fid_stats`: the real images' feature statistics (mu, sigma) in pytorch-fid's .npz format.

With the offline `classifier` extractor this stage first trains the feature network on the labels.
"""

from ganops.config import Config
from ganops.paths import paths_for
from pipeline._stage import run_stage


def main(config: Config) -> None:
    # Imports inside main: params are checked before torch loads (see pipeline/_stage.py).
    from ganops.data import load_prepared
    from ganops.fileio import write_json
    from ganops.metrics import feature_statistics, frechet_distance, save_statistics
    from ganops.metrics.extractors import extractor_named
    from ganops.runtime import configure_backends, resolve_device

    paths = paths_for(config)
    device = resolve_device(config.train.device)
    configure_backends(device)
    prepared = load_prepared(paths.prepared)
    metrics = {"real_images": len(prepared)}
    kind = extractor_named(config.fid.extractor)
    # what the extractor needs first (the classifier is trained here), then its feature function
    metrics.update(kind.prepare(config.fid, prepared, paths.feature_net, device, seed=config.train.seed))
    extractor = kind.load(config.fid, paths.feature_net, device)
    features = extractor.features(prepared.images)
    mu, sigma = feature_statistics(features)
    save_statistics(paths.fid_stats, mu, sigma, real_features=features)  # evaluate reuses the features
    # The FID between two halves of the real data: the floor a perfect generator would reach at this
    # sample size, which makes FIDs in the classifier's own feature units readable.
    half = len(features) // 2
    metrics["fid_real_halves"] = frechet_distance(*feature_statistics(features[:half]), *feature_statistics(features[half:2 * half]))
    metrics["feature_dims"] = int(mu.shape[0])
    write_json(paths.metrics_dir / "fid_stats.json", metrics)
    print(f"{paths.fid_stats}: {extractor.name} statistics of {len(prepared)} real images, {mu.shape[0]} dims")


if __name__ == "__main__":
    run_stage("fid_stats", main)
