"""Tracking overhead: the same training with full MLflow logging on and off.

Why: tracking must be cheap enough to leave on. Both sides run the train stage's setup: `Trainer.fit()`
on the embedded mnist-5k digits, a checkpoint every epoch (the logger flushes at each) and the epoch's
sample grid saved as a PNG. The "on" side adds `tracking.callback.TrackingCallback`, as pipeline/train.py does: a
new run with every param, per-window metrics, one sample grid image per epoch, the run finished at the
end. The store is a fresh sqlite database in a temporary folder, created and migrated before any
timing; each round is a new run in it.

Two measures, both printed against the target (overhead <= 3%):
- direct: rounds alternate (off, on, off, on, ...) after a warm-up round of each, and the best round of
  each side is compared (other processes only ever add time; medians shown). On a shared machine the
  training time itself varies by more than 3% between rounds, so this one can come out negative.
- in the hooks: the seconds spent inside the logger's callbacks (and finishing the run) during the "on"
  runs, over the best "off" run time: the same cost without the training's noise. MLflow's client calls are
  synchronous, so this is all of the logger's work.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import tempfile
import time
from pathlib import Path
from typing import Callable, Optional

import torch

from bench._common import interleaved, load_average, machine, median, mnist_digits, table, verdict
from ganops.tracking import Tracker, flatten
from ganops.tracking.callback import TrackingCallback
from ganops.tracking.mlflow_tracker import MlflowTracker
from ganops.config import Config, from_dict
from ganops.data import Prepared
from ganops.reporting import SampleGridSaver
from ganops.training import Callback, Trainer

OVERHEAD_TARGET = 0.03
HOOKS = [name for name in vars(Callback) if name.startswith("on_")]


class Clock:
    """Seconds spent in the logger, per hook, summed over the timed runs."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    @contextlib.contextmanager
    def running(self, name: str):
        start = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - start


def time_hooks(callback: Callback, clock: Clock) -> None:
    """Count the seconds spent in each of `callback`'s hooks on `clock`."""
    for name in HOOKS:
        def timed(*args, _hook=getattr(callback, name), name=name):
            with clock.running(name):
                return _hook(*args)
        setattr(callback, name, timed)


def make_round(data: Prepared, config: Config, work: Path, tracker: Optional[Tracker] = None,
               clock: Optional[Clock] = None) -> Callable[[], None]:
    """One training run (untimed set-up here; the returned function is what is timed)."""
    folder = Path(tempfile.mkdtemp(dir=work))
    callbacks: list[Callback] = [SampleGridSaver(folder / "grids")]
    clock = clock or Clock()
    if tracker is not None:
        logger = TrackingCallback(tracker, "bench", flatten(config.to_dict()),
                                  {"dataset": config.data.dataset, "stage": "bench"}, grids_dir=folder / "grids")
        time_hooks(logger, clock)
        callbacks.append(logger)
    trainer = Trainer(config.model, config.train, data, torch.device("cpu"), checkpoint_dir=folder / "checkpoints",
                      callbacks=callbacks, show_progress=False)

    def run() -> None:
        with contextlib.redirect_stderr(io.StringIO()):  # the per-epoch summary lines
            state = trainer.fit()
        if tracker is not None:
            with clock.running("finish_run"):
                tracker.finish_run(state.run_id)
    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--epochs", type=int, default=1, help="epochs per run (default 1)")
    parser.add_argument("--limit", type=int, default=0, help="images used (default 0: all 5,000, 39 steps an epoch)")
    parser.add_argument("--rounds", type=int, default=5, help="timed runs per side (default 5)")
    parser.add_argument("--quick", action="store_true", help="1 epoch of 1,280 images (10 steps) x 3 rounds")
    args = parser.parse_args()
    epochs, limit = (1, 1280) if args.quick else (args.epochs, args.limit)

    with tempfile.TemporaryDirectory(prefix="ganops-bench-") as tmp:
        work = Path(tmp)
        config = from_dict({
            "data": {"dataset": "mnist-5k", "limit": limit},
            "train": {"epochs": epochs, "device": "cpu"},
            "tracking": {"uri": f"sqlite:///{work / 'mlflow.db'}", "artifact_root": str(work / "artifacts")},
        })
        data = mnist_digits(limit)
        # Creates and migrates the database: before any timing.
        tracker = MlflowTracker.connect(config.tracking, "bench-tracking")
        clock = Clock()
        makers = {"off": lambda: make_round(data, config, work),
                  "on": lambda: make_round(data, config, work, tracker, clock)}
        interleaved(makers, 1)  # warm-up
        clock.seconds.clear()
        load_before = load_average()
        times = interleaved(makers, args.rounds)
        load_after = load_average()
        runs = len(tracker.client.search_runs([tracker.experiment_id]))

    steps = epochs * (len(data) // config.train.batch_size)
    hooks = sum(clock.seconds.values()) / args.rounds
    in_hooks = hooks / min(times["off"])
    overhead = {stat: pick(times["on"]) / pick(times["off"]) - 1 for stat, pick in (("best", min), ("median", median))}
    print(f"# tracking_overhead: {epochs} epoch(s) x {steps // epochs} steps (batch {config.train.batch_size}, "
          f"{len(data)} mnist-5k images) per run, checkpoint + grid PNG every epoch on both sides; "
          f"{args.rounds} interleaved runs a side after a warm-up; {runs} MLflow runs written")
    print(f"machine: {machine()}; load average {load_before} before, {load_after} after\n")
    rows = []
    for stat, pick in (("best", min), ("median", median)):
        off, on = pick(times["off"]), pick(times["on"])
        rows.append([stat, f"{off:.2f}", f"{on:.2f}", f"{on - off:+.2f}", f"{100 * overhead[stat]:+.1f}%"])
    print(table(["rounds", "tracking off s/run", "MLflow on s/run", "difference s", "overhead"], rows))
    spent = ", ".join(f"{name} {seconds / args.rounds:.3f}" for name, seconds in clock.seconds.items())
    print(f"\nin the logger's hooks: {hooks:.3f} s per run ({spent}), {100 * in_hooks:.1f}% of the best "
          f"tracking-off run\n")
    print(table(["target", "measured", "result"], [
        [f"overhead <= {OVERHEAD_TARGET:.0%}, direct (best of rounds)", f"{100 * overhead['best']:+.1f}%",
         verdict(overhead["best"] <= OVERHEAD_TARGET)],
        [f"overhead <= {OVERHEAD_TARGET:.0%}, time in the logger's hooks", f"{100 * in_hooks:.1f}%",
         verdict(in_hooks <= OVERHEAD_TARGET)],
    ]))
    print("\nseconds per run: " + "; ".join(f"{k} " + " ".join(f"{t:.2f}" for t in v) for k, v in times.items()))


if __name__ == "__main__":
    main()
