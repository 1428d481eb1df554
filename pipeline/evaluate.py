"""Stage `evaluate`: FID, KID and precision/recall of the trained generator, into metrics/eval.json and its MLflow run."""

import sys
from pathlib import Path

from ganops.config import Config
from ganops.paths import Paths, paths_for
from pipeline._stage import run_stage


def main(config: Config) -> None:
    # Imports inside main: params are checked before torch loads (see pipeline/_stage.py).
    from ganops.evaluation import FidReference, evaluate_generator
    from ganops.fileio import read_json, torch_load, write_json
    from ganops.metrics import load_real_features
    from ganops.models import generator_from_record, to_unit_range
    from ganops.reporting import grid_image, save_png
    from ganops.runtime import configure_backends, resolve_device

    paths = paths_for(config)
    run_id = read_json(paths.run_info, "training run record").get("run_id") if config.tracking.enabled else None
    tracker = None
    if run_id:  # opened first: a damaged tracking store stops the stage before any output is written
        from ganops.tracking import open_tracker

        tracker = open_tracker(config)
    device = resolve_device(config.train.device)
    configure_backends(device)
    generator, model = generator_from_record(torch_load(paths.generator, "trained generator"))
    generator.to(device)
    reference = FidReference.load(config, paths, device)
    real = load_real_features(paths.fid_stats, reference.extractor.dims)  # extracted once, by fid_stats
    ev = config.evaluate
    metrics, images = evaluate_generator(generator, model.nz, reference, real, ev.samples, ev.kid_subsets,
                                         ev.kid_subset_size, device)
    metrics["extractor"] = reference.extractor.name
    write_json(paths.metrics_dir / "eval.json", metrics)
    grid = paths.plots_dir / "eval_samples.png"
    save_png(grid_image(to_unit_range(images[:64])), grid)

    print(f"FID {metrics['fid']:.3f}  KID {metrics['kid_mean']:.5f} ± {metrics['kid_std']:.5f}  "
          f"precision {metrics['precision']:.3f}  recall {metrics['recall']:.3f}  "
          f"({ev.samples} samples, {reference.extractor.name} features)")
    if tracker is not None:
        track_evaluation(tracker, config, paths, run_id, metrics, grid, len(real))


def track_evaluation(tracker, config: Config, paths: Paths, run_id: str, metrics: dict, grid: Path,
                     num_images: int) -> None:
    """Into the training run: the metrics, a new model version (champion if it is the best) and the description."""
    from ganops.fileio import read_json
    from ganops.tracking import model_name
    from ganops.tracking.callback import GRID_KEY
    from ganops.tracking.description import run_description

    tracker.reopen_run(run_id)
    tracker.log_metrics(run_id, {f"eval_{k}": v for k, v in metrics.items() if k != "extractor"})
    tracker.log_artifacts(run_id, [paths.metrics_dir / "eval.json", grid], "evaluation")
    registered = None
    if config.tracking.log_model:
        version = tracker.register_generator(run_id, model_name(config), metrics["fid"])
        print(version.summary(metrics["fid"]))
        registered = f"`{version.model}` version {version.version}" + (" (@champion)" if version.is_champion else "")
    trained = read_json(paths.metrics_dir / "train.json", "training metrics")
    fids = {f"best during training (epoch {trained['best_epoch']})": trained["best_fid"],
            f"evaluation ({config.evaluate.samples} samples)": metrics["fid"]}
    tracker.set_description(run_id, run_description(config, run_id, num_images, trained["epochs"], fids, GRID_KEY,
                                                    registered))
    tracker.finish_run(run_id)
    print(f"MLflow run: {tracker.run_url(run_id)} (after `make mlflow-ui`)", file=sys.stderr)


if __name__ == "__main__":
    run_stage("evaluate", main)
