"""Tuning beyond one process: trials per hour with 1 and 2 workers, and what PostgreSQL + an MLflow server cost.

Why: `pipeline.tune --workers N` must actually add throughput, and the team set-up (Optuna on
PostgreSQL, MLflow over HTTP) must cost little per trial next to the one-machine default (sqlite files).
Both run real servers, started as `make servers` does (PostgreSQL on a unix socket, `mlflow server` on
127.0.0.1), in a temporary folder, and stopped at the end.

1. Scaling: `python -m pipeline.tune --workers N` with tiny trials (the embedded digits, pruner off so
   every trial does the same work), N = 1 then 2, each a fresh study on PostgreSQL with tracking over
   HTTP. Trials per hour from the command's wall time (process start-up included) and from the trials'
   own start/finish times (the search itself). Efficiency = (rate with 2) / (2 x rate with 1).
2. Overhead: the same in-process `run_study` on sqlite storage + a local sqlite MLflow store, and on
   PostgreSQL + the MLflow server, the two taking turns (a, b, a, b, ...). Per-trial time = the
   invocation's wall time over its trials (parent run, child runs, storage calls and results included).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

from bench._common import interleaved, load_average, machine, median, table, verdict
from ganops import servers
from ganops.config import from_dict

ROOT = Path(__file__).resolve().parents[1]
OVERHEAD_TARGET = 0.05
LOCAL, TEAM = "sqlite + local store", "PostgreSQL + MLflow server"
TINY = {
    "data": {"limit": 1280},
    "model": {"nz": 32},
    "train": {"batch_size": 64, "log_every": 5, "sample_grid": 16, "device": "cpu"},
    "fid": {"classifier_epochs": 1, "classifier_width": 8, "batch_size": 250},
    "tracking": {"log_model": False},
    "tune": {"epochs": 2, "eval_every": 1, "eval_samples": 250, "pruner": "none", "ngf_choices": [16],
             "ndf_choices": [16], "heartbeat_interval": 10},
}


def merge(base: dict, update: dict) -> dict:
    return {**base, **{k: merge(base[k], v) if isinstance(v, dict) else v for k, v in update.items()}}


def write_params(work: Path, update: dict) -> Path:
    params = merge(merge(yaml.safe_load((ROOT / "params.yaml").read_text()), TINY), update)
    path = work / "params.yaml"
    path.write_text(yaml.safe_dump(params, sort_keys=False))
    return path


def stage(work: Path, *args: str, threads: int = 0) -> float:
    env = dict(os.environ, PYTHONPATH=f"{ROOT / 'src'}{os.pathsep}{ROOT}", GANOPS_PARAMS=str(work / "params.yaml"))
    if threads:
        env["OMP_NUM_THREADS"] = str(threads)
    start = time.perf_counter()
    result = subprocess.run([sys.executable, "-m", *args], cwd=work, env=env, capture_output=True, text=True)
    if result.returncode != 0:
        raise SystemExit(f"{' '.join(args)} failed:\n{result.stderr[-3000:]}")
    return time.perf_counter() - start


def trial_span_hours(storage: str, study_name: str) -> tuple[int, float]:
    import optuna

    trials = optuna.load_study(study_name=study_name, storage=storage).trials
    first = min(t.datetime_start for t in trials)
    last = max(t.datetime_complete for t in trials)
    return len(trials), (last - first).total_seconds() / 3600


def scaling(work: Path, info: servers.ServerInfo, trials: int) -> list[list[str]]:
    rows, rates = [], {}
    for workers in (1, 2):
        study = f"scale-{workers}"
        write_params(work, {"tracking": {"uri": info.tracking_uri, "experiment": "bench-scale"},
                            "tune": {"storage": info.storage_url, "study_name": study, "n_trials": trials}})
        wall = stage(work, "pipeline.tune", "--workers", str(workers))
        count, span = trial_span_hours(info.storage_url, study)
        rates[workers] = (count / (wall / 3600), count / span)
        rows.append([str(workers), str(count), f"{wall:.1f}", f"{rates[workers][0]:.0f}", f"{rates[workers][1]:.0f}"])
    for i, label in ((0, "command wall time"), (1, "trials' own span")):
        rows.append([f"efficiency ({label})", "", "", f"{rates[2][i] / (2 * rates[1][i]):.0%}", ""][:5])
    return rows


def overhead(work: Path, info: servers.ServerInfo, trials: int, rounds: int) -> dict[str, list[float]]:
    from ganops.tuning import run_study

    base = from_dict(merge(TINY, {"tune": {"n_trials": trials}}))
    counter = iter(range(10_000))

    def arm(storage: str, uri: str):
        def make():
            name = f"overhead-{next(counter)}"
            config = base.replace(tune={"storage": storage, "study_name": name},
                                  tracking={"uri": uri, "experiment": "bench-overhead",
                                            "artifact_root": str(work / "mlruns" / "artifacts")})

            def run() -> None:
                with contextlib.redirect_stderr(io.StringIO()):
                    run_study(config, work)
            return run
        return make

    makers = {LOCAL: arm(f"sqlite:///{work}/results/tune/study.db", f"sqlite:///{work}/mlruns/mlflow.db"),
              TEAM: arm(info.storage_url, info.tracking_uri)}
    interleaved(makers, 1)  # warm-up: migrations, imports, caches
    return interleaved(makers, rounds)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=6, help="trials per scaling run (default 6)")
    parser.add_argument("--overhead-trials", type=int, default=2, help="trials per overhead round (default 2)")
    parser.add_argument("--rounds", type=int, default=4, help="overhead rounds a side (default 4)")
    args = parser.parse_args()
    import torch

    torch.set_num_threads(max(1, os.cpu_count() or 1))
    with tempfile.TemporaryDirectory(prefix="ganops-bench-") as tmp:
        work = Path(tmp)
        info = servers.start(work / "servers", port=servers.free_port())
        try:
            write_params(work, {})
            for name in ("download", "preprocess", "fid_stats"):
                stage(work, f"pipeline.{name}")
            load_before = load_average()
            started = time.perf_counter()
            scale_rows = scaling(work, info, args.trials)
            times = overhead(work, info, args.overhead_trials, args.rounds)
            took, load_after = time.perf_counter() - started, load_average()
        finally:
            servers.stop(work / "servers")

    print(f"# tune_scale: tiny trials ({TINY['tune']['epochs']} epochs of {TINY['data']['limit']} digits, "
          f"widths 16, {TINY['tune']['eval_samples']} FID samples, pruner off)")
    print(f"machine: {machine()}; load average {load_before} before, {load_after} after\n")
    print(table(["workers", "trials", "wall s", "trials/hour (wall)", "trials/hour (trials' span)"], scale_rows))
    per_trial = {k: [t / args.overhead_trials for t in v] for k, v in times.items()}
    local, team = per_trial[LOCAL], per_trial[TEAM]
    rows = [[name, f"{median(values):.2f}", f"{min(values):.2f}", " ".join(f"{v:.2f}" for v in values)]
            for name, values in per_trial.items()]
    print()
    print(table(["storage + tracking", "s/trial median", "s/trial best", "rounds"], rows))
    cost = {stat: pick(team) / pick(local) - 1 for stat, pick in (("median", median), ("best", min))}
    print()
    print(table(["target", "measured", "result"], [
        [f"PostgreSQL + server overhead <= {OVERHEAD_TARGET:.0%} per trial (median)", f"{100 * cost['median']:+.1f}%",
         verdict(cost["median"] <= OVERHEAD_TARGET)],
        [f"PostgreSQL + server overhead <= {OVERHEAD_TARGET:.0%} per trial (best)", f"{100 * cost['best']:+.1f}%",
         verdict(cost["best"] <= OVERHEAD_TARGET)],
    ]))
    print(f"(bench took {took:.0f} s after the data stages)")


if __name__ == "__main__":
    main()
