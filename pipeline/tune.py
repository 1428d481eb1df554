"""Stage `tune`: add trials to the Optuna study (learning rate, beta1, channel widths), tracked in MLflow.

    python -m pipeline.tune [--n-trials N] [--timeout S] [--study-name NAME] [--storage URL] [--workers N]

The options override params.yaml's tune section for this invocation. The study persists in
tune.storage, so every invocation continues it. `--workers N` starts N worker processes on it (one GPU
each, or a share of the CPU cores); invocations on other machines may join the same storage
(PostgreSQL). A killed invocation's trial is failed by the heartbeat and retried by the next one.
Writes results/tune/best_params.yaml (`train.from_study: true` trains with it) and results/tune/trials.csv.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Optional, Sequence

from ganops.config import Config
from pipeline._stage import run_stage


def parse_overrides(argv: Optional[Sequence[str]] = None) -> dict[str, object]:
    parser = argparse.ArgumentParser(prog="python -m pipeline.tune", description=__doc__.split("\n\n")[0])
    parser.add_argument("--n-trials", type=int, help="trials to run in this invocation (tune.n_trials)")
    parser.add_argument("--timeout", type=int, help="stop starting trials after this many seconds (tune.timeout)")
    parser.add_argument("--study-name", help="the Optuna study to create or continue (tune.study_name)")
    parser.add_argument("--storage", help="sqlite:///<file>, journal:<file>, postgresql://... (tune.storage)")
    parser.add_argument("--workers", type=int, help="worker processes sharing the trials (tune.workers)")
    args = parser.parse_args(argv)
    return {key: value for key, value in vars(args).items() if value is not None}


def forwarded_options(overrides: dict[str, object]) -> list[str]:
    """The options a worker of `--workers N` gets from its supervisor (its trial count is its own)."""
    return [arg for key, value in overrides.items() if key not in ("n_trials", "workers")
            for arg in (f"--{key.replace('_', '-')}", str(value))]


def main(config: Config, overrides: dict[str, object]) -> None:
    # Imports inside main: params are checked before torch loads (see pipeline/_stage.py).
    config = config.replace(tune=overrides)  # validated like params.yaml
    from ganops.tuning import format_summary, redact_url, run_parallel, run_study
    from ganops.tuning.workers import PARENT_RUN_ENV, WORKER_ENV

    if config.tune.workers > 1:
        summary = run_parallel(config, forwarded_options(overrides))
    else:
        summary = run_study(config, parent_run_id=os.environ.get(PARENT_RUN_ENV), supervised=WORKER_ENV in os.environ)
    print(format_summary(summary))
    if WORKER_ENV not in os.environ:
        print(f"results in {redact_url(config.tune.storage)} and results/tune/ (best_params.yaml, trials.csv)",
              file=sys.stderr)


if __name__ == "__main__":
    cli_overrides = parse_overrides()
    run_stage("tune", lambda config: main(config, cli_overrides))
