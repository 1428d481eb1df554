"""`pipeline.tune --workers N`: N worker processes adding trials to one study, started by one command.

No coordinator of our own: the workers share the study through its storage (Optuna's RDB or journal
storage does the locking, the heartbeat fails a dead worker's trial), exactly as workers started by
hand in N terminals or on N machines would. This module only plans and supervises the processes:

* `tune.n_trials` is split between the workers (each runs at least one trial);
* with GPUs, each worker sees one (`CUDA_VISIBLE_DEVICES`, round-robin over the visible ones); with
  more workers than GPUs, workers share them, and the plan says so;
* on a CPU, the cores are split (`OMP_NUM_THREADS`, which sets torch's thread count), so N workers
  do not oversubscribe the machine;
* Ctrl-C reaches the supervisor only (workers run in their own sessions); it passes one SIGINT to each
  worker, whose running trial then ends as FAIL with its MLflow run closed, and waits for them.

The supervisor owns the study's MLflow parent run; workers nest their trial runs under it
(PARENT_RUN_ENV) and leave the results files to the supervisor.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from typing import Optional, Sequence

PARENT_RUN_ENV = "GANOPS_TUNE_PARENT_RUN"  # set in a worker: the MLflow parent run of its trials
WORKER_ENV = "GANOPS_TUNE_WORKER"  # set in a worker: "<index>/<count>"
THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS")
STOP_GRACE_S = 120  # after Ctrl-C: how long workers get to fail their trials and close their runs


@dataclass
class WorkerPlan:
    index: int
    n_trials: int
    env: dict[str, str] = field(default_factory=dict)  # on top of the supervisor's environment

    @property
    def where(self) -> str:
        if "CUDA_VISIBLE_DEVICES" in self.env:
            return f"GPU {self.env['CUDA_VISIBLE_DEVICES']}"
        return f"{self.env['OMP_NUM_THREADS']} CPU thread(s)"


@dataclass
class Plan:
    workers: list[WorkerPlan]
    note: str  # what the supervisor tells the user about placement


def plan_workers(n_workers: int, n_trials: int, gpus: Sequence[str], cpu_count: int) -> Plan:
    """Trials, GPU or thread share per worker. `gpus`: the device ids to use (empty: CPU only)."""
    counts = [n_trials // n_workers + (i < n_trials % n_workers) for i in range(n_workers)]
    plans = [WorkerPlan(i, counts[i], {WORKER_ENV: f"{i + 1}/{n_workers}"}) for i in range(n_workers)]
    threads = max(1, cpu_count // n_workers)  # data loading and FID on the CPU side, or the whole trial
    if gpus:
        for plan in plans:
            plan.env["CUDA_VISIBLE_DEVICES"] = gpus[plan.index % len(gpus)]
        note = f"{n_workers} workers on {len(gpus)} GPU(s), one each"
        if n_workers > len(gpus):
            note = (f"{n_workers} workers on {len(gpus)} GPU(s): more workers than GPUs, so GPUs are shared "
                    f"round-robin (up to {-(-n_workers // len(gpus))} workers per GPU, each with its own memory)")
    else:
        note = f"{n_workers} workers on the CPU, {threads} thread(s) each ({cpu_count} cores)"
        if n_workers > cpu_count:
            note += ": more workers than cores, so they take turns"
    for plan in plans:
        plan.env.update({name: str(threads) for name in THREAD_VARS})
    return Plan(plans, note)


def visible_gpus(device: str) -> list[str]:
    """GPU ids the workers may use: none with `device: cpu` or without CUDA; else the visible ones."""
    if device == "cpu":
        return []
    import torch

    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    listed = [d.strip() for d in os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",") if d.strip()]
    return (listed or [str(i) for i in range(count)])[:count]


def worker_command(forwarded: Sequence[str], n_trials: int) -> list[str]:
    """The tune stage again, as one worker: the supervisor's own options, its share of the trials."""
    return [sys.executable, "-m", "pipeline.tune", *forwarded, "--n-trials", str(n_trials), "--workers", "1"]


def run_workers(plan: Plan, forwarded: Sequence[str], parent_run_id: Optional[str]) -> list[int]:
    """Start the planned workers and wait for them; returns their exit codes (in plan order).

    Ctrl-C (KeyboardInterrupt here) stops every worker as described above, then is raised again.
    """
    extra = {PARENT_RUN_ENV: parent_run_id} if parent_run_id else {}
    processes = [subprocess.Popen(worker_command(forwarded, w.n_trials), env={**os.environ, **w.env, **extra},
                                  start_new_session=True)
                 for w in plan.workers if w.n_trials > 0]
    try:
        return [process.wait() for process in processes]
    except KeyboardInterrupt:
        stop_workers(processes)
        raise
    finally:
        for process in processes:  # a failing supervisor leaves no worker behind
            if process.poll() is None:
                process.kill()


def stop_workers(processes: Sequence[subprocess.Popen], grace_s: float = STOP_GRACE_S) -> None:
    """One SIGINT each (a worker's Ctrl-C: its trial fails cleanly), then wait; SIGKILL what is left."""
    for process in processes:
        if process.poll() is None:
            process.send_signal(signal.SIGINT)
    deadline = time.monotonic() + grace_s
    for process in processes:
        try:
            process.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            process.kill()  # its trial is failed by the heartbeat, as for any dead worker
            process.wait()
