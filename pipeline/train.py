"""Stage `train`: train the GAN, tracked in MLflow, keeping the best-FID generator.

Resumes from models/checkpoints/last.pt (kept by DVC between runs: `persist: true`) when it was made
with the same setup, into the same MLflow run. With `train.from_study: true` the learning rate, beta1
and widths come from the tune stage's best trial (results/tune/best_params.yaml), and the run is tagged
with that study and trial.

    python -m pipeline.train [torchrun options, e.g. --nnodes 2 --node_rank 0 --rdzv_endpoint host:29400]
    torchrun --nproc_per_node 2 -m pipeline.train

With `train.nproc_per_node` > 1 or torchrun options, the stage starts its processes through torchrun's
launcher (ganops.distributed.launch); under torchrun it joins the job. Rank 0 alone opens the tracker,
checkpoints and writes the outputs (README "Several GPUs or machines").
"""

from __future__ import annotations

import logging
import os
import sys
from typing import TYPE_CHECKING, Sequence

from ganops.config import Config
from ganops.paths import paths_for
from pipeline._stage import run_stage

if TYPE_CHECKING:
    import torch

    from ganops.distributed import Dist

BEST_NAME = "best_generator.pt"


def main(config: Config, torchrun_args: Sequence[str] = ()) -> None:
    # Imports inside main: params are checked before torch loads (see pipeline/_stage.py).
    t = config.train
    if torchrun_args or (t.nproc_per_node > 1 and "RANK" not in os.environ):
        # The launcher's own line says why a rendezvous failed: torch's C++ store would also log every failed
        # connection with a stack of frames (its level is read once, as torch loads). The workers log as asked.
        workers_level = os.environ.get("TORCH_CPP_LOG_LEVEL")
        os.environ["TORCH_CPP_LOG_LEVEL"] = "FATAL"
        from ganops.distributed import launch

        launch(list(torchrun_args), t.nproc_per_node, t.batch_size, t.dist_timeout, "pipeline.train",
               worker_env={"TORCH_CPP_LOG_LEVEL": workers_level})
        return
    from ganops.distributed import from_environment, shutdown

    dist, device = from_environment(t.device, t.batch_size, t.dist_timeout)
    if not dist.is_main:
        logging.getLogger().setLevel(logging.ERROR)  # rank 0 tells what the job does
    try:
        run(config, dist, device)
    finally:
        shutdown()


def run(config: Config, dist: "Dist", device: "torch.device") -> None:
    from ganops.best_params import FILE_NAME as BEST_PARAMS_FILE, apply_best_params
    from ganops.data import load_prepared
    from ganops.evaluation import FidReference
    from ganops.fileio import copy_file, torch_load, write_json
    from ganops.losses import LOSSES
    from ganops.models import generator_from_record
    from ganops.reporting import SampleGridSaver, grid_path, history_table, plot_curves, save_csv, save_gif
    from ganops.runtime import configure_backends
    from ganops.tracking import TRAINING_PARAMS, open_tracker, run_name, run_tags, stage_params
    from ganops.training import Trainer

    paths = paths_for(config)
    source_tags: dict[str, str] = {}
    if config.train.from_study:
        config, best = apply_best_params(config, paths.tune_dir / BEST_PARAMS_FILE)
        source_tags = best.tags
        if dist.is_main:
            print(f"training with trial {best.trial_number} of study '{best.study_name}': "
                  + ", ".join(f"{section}.{k}={v}" for section, values in best.sections.items() for k, v in values.items()),
                  file=sys.stderr)
    configure_backends(device)
    prepared = load_prepared(paths.prepared)
    if not dist.is_main:  # the other ranks train and nothing else: no FID, no files, no tracker
        Trainer(config.model, config.train, prepared, device, dist=dist).fit()
        return
    reference = FidReference.load(config, paths, device)
    grids_dir = paths.checkpoints / "grids"
    best_path = paths.checkpoints / BEST_NAME  # inside the persisted folder, so a resumed run still has it
    callbacks = [SampleGridSaver(grids_dir)]
    tracker = open_tracker(config)
    if tracker is not None:
        from ganops.tracking.callback import GRID_KEY, TrackingCallback

        model, train = config.model, config.train
        name = run_name(config, {"lr": train.lr, "ngf": model.ngf, "ndf": model.ndf, "ep": train.epochs})
        if dist.active:
            source_tags["world_size"] = str(dist.world_size)
        callbacks.append(TrackingCallback(tracker, name, stage_params(config, TRAINING_PARAMS),
                                          run_tags(config, "train", device, **source_tags), grids_dir=grids_dir))
    trainer = Trainer(config.model, config.train, prepared, device,
                      fid_fn=reference.fid_function(config.train.eval_samples, config.model.nz, device),
                      checkpoint_dir=paths.checkpoints, best_generator_path=best_path, callbacks=callbacks, dist=dist)
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
    write_json(paths.run_info, {"run_id": state.run_id, "tracking_uri": config.tracking.uri if tracker else None})

    if tracker is not None and state.run_id:
        from ganops.tracking.description import run_description
        from ganops.tracking.lineage import training_dataset

        dataset = training_dataset(config, paths, len(prepared))
        tracker.log_dataset(state.run_id, dataset)
        tracker.set_tags(state.run_id, {"data_dvc_md5": dataset.digest})
        tracker.set_description(state.run_id, run_description(
            config, state.run_id, len(prepared), state.epoch, {f"best during training (epoch {state.best_epoch})":
                                                                 state.best_fid}, GRID_KEY))
        tracker.log_artifacts(state.run_id, [plots / n for n in ("losses.png", "d_accuracy.png", "d_outputs.png",
                                                                "fid.png", "samples.gif", "train.csv", "fid.csv")], "plots")
        if config.tracking.log_model:
            generator, _ = generator_from_record(torch_load(paths.generator, "best generator"))
            tracker.log_generator(state.run_id, generator, config.model.nz)
        tracker.finish_run(state.run_id)
        print(f"MLflow run {state.run_id}: `make mlflow-ui`, then {tracker.run_url(state.run_id)}", file=sys.stderr)
    print(f"trained {state.epoch} epochs ({state.step} steps): best FID {state.best_fid:.3f} at epoch {state.best_epoch}",
          file=sys.stderr)


def print_failure_here(message: str) -> bool:
    """Outside torchrun: yes. A torchrun worker records the failure for the launcher, and one rank prints it."""
    if "RANK" not in os.environ:
        return True
    from ganops.distributed import report_failure

    return report_failure(message)


if __name__ == "__main__":
    run_stage("train", lambda config: main(config, sys.argv[1:]), should_print=print_failure_here)
