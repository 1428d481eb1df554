"""Stage `evaluate`: FID, KID and precision/recall of the trained generator, into metrics/eval.json and its MLflow run."""

from ganops.config import Config, paths_for
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

    run = read_json(paths.run_info, "training run record")
    if config.tracking.enabled and run.get("run_id"):
        from ganops import tracking

        client = tracking.connect(config.tracking)
        tracking.reopen_run(client, run["run_id"])
        tracking.log_metrics(client, run["run_id"], {f"eval_{k}": v for k, v in metrics.items() if k != "extractor"})
        tracking.log_artifacts(client, run["run_id"], [paths.metrics_dir / "eval.json", grid], "evaluation")
        tracking.finish_run(client, run["run_id"])
    print(f"FID {metrics['fid']:.3f}  KID {metrics['kid_mean']:.5f} ± {metrics['kid_std']:.5f}  "
          f"precision {metrics['precision']:.3f}  recall {metrics['recall']:.3f}  "
          f"({ev.samples} samples, {reference.extractor.name} features)")


if __name__ == "__main__":
    run_stage("evaluate", main)
