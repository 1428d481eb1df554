"""Stage `train`: train the GAN, tracked in MLflow, keeping the best-FID generator.

Resumes from models/checkpoints/last.pt (kept by DVC between runs: `persist: true`) when it was made
with the same setup, into the same MLflow run.
"""

from __future__ import annotations

import sys

from ganops.config import Config, paths_for
from pipeline._stage import run_stage

BEST_NAME = "best_generator.pt"


def main(config: Config) -> None:
    # Imports inside main: params are checked before torch loads (see pipeline/_stage.py).
    from ganops.data import load_prepared
    from ganops.evaluation import FidReference
    from ganops.fileio import copy_file, torch_load, write_json
    from ganops.losses import LOSSES
    from ganops.models import generator_from_record
    from ganops.reporting import SampleGridSaver, grid_path, history_table, plot_curves, save_csv, save_gif
    from ganops.runtime import configure_backends, git_commit, resolve_device
    from ganops.training import Trainer

    paths = paths_for(config)
    device = resolve_device(config.train.device)
    configure_backends(device)
    prepared = load_prepared(paths.prepared)
    reference = FidReference.load(config, paths, device)
    grids_dir = paths.checkpoints / "grids"
    best_path = paths.checkpoints / BEST_NAME  # inside the persisted folder, so a resumed run still has it
    callbacks = [SampleGridSaver(grids_dir)]
    client = logger = None
    if config.tracking.enabled:
        from ganops import tracking

        client = tracking.connect(config.tracking)
        experiment_id = tracking.ensure_experiment(client, tracking.experiment_name(config), config.tracking.artifact_root)
        tags = {"mlflow.source.git.commit": git_commit(), "dataset": config.data.dataset, "device": str(device),
                "extractor": config.fid.extractor, "stage": "train"}
        logger = tracking.MlflowLogger(client, experiment_id, f"{config.model.arch}-{config.data.dataset}",
                                       tracking.flatten(config.to_dict()), tags, grids_dir=grids_dir)
        callbacks.append(logger)
    trainer = Trainer(config.model, config.train, prepared, device,
                      fid_fn=reference.fid_function(config.train.eval_samples, config.model.nz, device),
                      checkpoint_dir=paths.checkpoints, best_generator_path=best_path, callbacks=callbacks)
    state = trainer.fit()

    # Outputs: the best-FID generator, metrics, plots, the grids as a GIF.
    copy_file(best_path, paths.generator)
    history = history_table(state.history)
    fids = history_table(state.fid_history)
    plots = paths.plots_dir
    save_csv(history, plots / "train.csv")
    save_csv(fids, plots / "fid.csv")
    loss = LOSSES[config.train.loss]
    plot_curves(history, "step", ["loss_d", "loss_g"], "Losses", loss.label, plots / "losses.png")
    plot_curves(history, "step", ["d_acc_real", "d_acc_fake"], "Discriminator accuracy", "accuracy", plots / "d_accuracy.png")
    plot_curves(history, "step", ["d_x", "d_g_z"], "Discriminator outputs", loss.output_label, plots / "d_outputs.png")
    plot_curves(fids, "epoch", ["fid"], f"FID ({config.fid.extractor} features)", "FID", plots / "fid.png")
    frames = [grid_path(grids_dir, e) for e in range(1, state.epoch + 1) if grid_path(grids_dir, e).is_file()]
    save_gif(frames, plots / "samples.gif")
    copy_file(frames[-1], plots / "samples.png")
    last = state.history[-1]
    summary = {"best_fid": state.best_fid, "best_epoch": state.best_epoch, "final_fid": state.fid_history[-1]["fid"],
               "epochs": state.epoch, "steps": state.step, "loss_d": last["loss_d"], "loss_g": last["loss_g"],
               "d_acc_real": last["d_acc_real"], "d_acc_fake": last["d_acc_fake"]}
    write_json(paths.metrics_dir / "train.json", summary)
    write_json(paths.run_info, {"run_id": state.run_id, "tracking_uri": config.tracking.uri if logger else None})

    if client is not None and state.run_id:
        from ganops import tracking

        tracking.log_metrics(client, state.run_id, {"best_fid": state.best_fid}, step=state.step)
        tracking.log_artifacts(client, state.run_id, [plots / n for n in ("losses.png", "d_accuracy.png", "d_outputs.png",
                                                                            "fid.png", "samples.gif", "train.csv", "fid.csv")], "plots")
        if config.tracking.log_model:
            generator, _ = generator_from_record(torch_load(paths.generator, "best generator"))
            tracking.log_generator_model(state.run_id, generator, config.model.nz)
        tracking.finish_run(client, state.run_id)
        tracking.print_run_location(client, state.run_id)
    print(f"trained {state.epoch} epochs ({state.step} steps): best FID {state.best_fid:.3f} at epoch {state.best_epoch}",
          file=sys.stderr)


if __name__ == "__main__":
    run_stage("train", main)
