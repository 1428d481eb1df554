"""The training callback that writes a run into a Tracker, in step with the checkpoints."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Mapping, Optional

import numpy as np
import torch

from ganops.errors import one_line
from ganops.reporting import grid_image, grid_path
from ganops.tracking.base import FID_METRIC, MetricPoint, RunStatus, Tracker, TrackerUnavailable
from ganops.training import Callback, TrainState

GRID_KEY = "samples"
EPOCH_MARKER = "epoch"  # logged last in every flush: how far the tracked history goes after a crash

log = logging.getLogger(__name__)


class StopRun(Exception):
    """Raised by a callback to end training on purpose (a pruned trial): not a failure of the run.

    Whoever raises it closes the run itself, with the status it chooses.
    """


class TrackingCallback(Callback):
    """Writes a training run into a Tracker.

    Metrics and sample grids are held until the epoch's checkpoint is on disk and only then sent, so
    after a crash the tracked history ends exactly where the checkpoint does: a resumed run neither
    repeats nor skips a step. Each flush ends with an `epoch` marker metric, which tells a resumed
    process how far the history went. When a tracking server stops answering, training goes on and
    the callback holds what it has, sending it at the next checkpoint the server answers; if it is still
    down when training ends, the error says so and the checkpoint resumes the run.
    """

    def __init__(self, tracker: Tracker, run_name: str, params: Mapping[str, str], tags: Mapping[str, str],
                 grids_dir: Optional[Path] = None, parent_run_id: Optional[str] = None):
        self.tracker, self.run_name, self.params, self.tags = tracker, run_name, params, tags
        self.grids_dir, self.parent_run_id = grids_dir, parent_run_id
        self.run_id: Optional[str] = None
        self.flushed_step = 0
        self.flushed_epoch = 0
        self.flushed_grid_epoch = 0
        self.pending_grids: dict[int, np.ndarray] = {}

    def on_train_start(self, trainer: Any, state: TrainState) -> None:
        tracker = self.tracker
        if state.run_id and tracker.run_status(state.run_id) is not None:
            self.run_id = state.run_id
            tracker.reopen_run(self.run_id)
            marker = tracker.metric_history(self.run_id, EPOCH_MARKER)
            if marker:
                last = max(marker, key=lambda m: m.step)
                self.flushed_step, self.flushed_epoch = last.step, int(last.value)
                self.flushed_grid_epoch = self.flushed_epoch
            tracker.set_tags(self.run_id, {"resumed_from_epoch": str(state.epoch)})
            self._flush(state)  # what the checkpoint holds beyond the tracked history (crash between the two)
        else:
            self.run_id = tracker.start_run(self.run_name, self.params, self.tags, self.parent_run_id)
            state.run_id = self.run_id
            if state.epoch == 0:  # the UI's image card opens at step 0: show the untrained generator there
                tracker.log_image(self.run_id, grid_image(trainer.sample_grid()), GRID_KEY, 0)

    def on_epoch_end(self, state: TrainState, grid: torch.Tensor) -> None:
        self.pending_grids[state.epoch] = grid_image(grid)

    def on_checkpoint(self, state: TrainState) -> None:
        try:
            self._flush(state)
        except TrackerUnavailable as error:
            log.warning("the MLflow tracking server %s does not answer (%s): training goes on, and what is held "
                        "is sent at the next checkpoint it answers", error.uri, error.reason)

    def on_train_end(self, state: TrainState) -> None:
        self._flush(state)

    def on_failure(self, state: TrainState, error: BaseException) -> None:
        if self.run_id is None or isinstance(error, (StopRun, TrackerUnavailable)):
            return
        try:
            self._close_failed(error)
        except TrackerUnavailable as unavailable:  # the run stays RUNNING; the resumed process closes it
            log.warning("could not mark run %s as ended: %s", self.run_id, unavailable)

    def _close_failed(self, error: BaseException) -> None:
        if isinstance(error, KeyboardInterrupt):
            self.tracker.finish_run(self.run_id, RunStatus.KILLED, "interrupted")
            return
        step = getattr(error, "step", None)
        if step is not None:
            self.tracker.set_tags(self.run_id, {"failed_at_step": str(step)})
        self.tracker.finish_run(self.run_id, RunStatus.FAILED, one_line(error, limit=5000))

    def flush(self, state: TrainState) -> None:
        """Send what is held now: for runs without checkpoints (tuning trials), where nothing resumes."""
        self._flush(state)

    def _flush(self, state: TrainState) -> None:
        if self.run_id is None:
            return
        for epoch in range(self.flushed_epoch + 1, state.epoch + 1):
            image = self.pending_grids.get(epoch)
            if image is None and self.grids_dir is not None:  # made before a crash: read back from disk
                image = _read_png(grid_path(self.grids_dir, epoch))
            if image is not None and epoch > self.flushed_grid_epoch:
                self.tracker.log_image(self.run_id, image, GRID_KEY, epoch)
                self.flushed_grid_epoch = epoch  # sent: not again when the metrics below fail and are retried
        self.pending_grids = {e: g for e, g in self.pending_grids.items() if e > state.epoch}
        points = [MetricPoint(k, float(v), int(row["step"]))
                  for row in state.history if row["step"] > self.flushed_step
                  for k, v in row.items() if k not in ("step", "epoch")]
        points += [MetricPoint(FID_METRIC, row["fid"], int(row["step"]))
                   for row in state.fid_history if row["epoch"] > self.flushed_epoch]
        if state.epoch > self.flushed_epoch:
            points.append(MetricPoint(EPOCH_MARKER, float(state.epoch), state.step))
        self.tracker.log_metric_points(self.run_id, points)
        self.flushed_step, self.flushed_epoch = state.step, max(self.flushed_epoch, state.epoch)


def _read_png(path: Path) -> Optional[np.ndarray]:
    if not path.is_file():
        return None
    from PIL import Image

    with Image.open(path) as image:
        return np.asarray(image.convert("RGB"))
