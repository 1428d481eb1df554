"""Stage `tune`: add trials to the Optuna study (learning rate, beta1, channel widths), tracked in MLflow.

    python -m pipeline.tune [--n-trials N] [--timeout S] [--study-name NAME] [--storage URL]

The options override params.yaml's tune section for this invocation. The study persists in
tune.storage, so every invocation continues it: run several at once on one storage (e.g.
`--storage journal:results/tune/study.log`) to search in parallel. A killed invocation's trial is
failed by the heartbeat and retried by the next one. Writes results/tune/best_params.yaml (merge it
into params.yaml) and results/tune/trials.csv.
"""

from __future__ import annotations

import argparse
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
    args = parser.parse_args(argv)
    return {key: value for key, value in vars(args).items() if value is not None}


def main(config: Config, overrides: dict[str, object]) -> None:
    # Imports inside main: params are checked before torch loads (see pipeline/_stage.py).
    config = config.replace(tune=overrides)  # validated like params.yaml
    from ganops.tuning import format_summary, run_study

    summary = run_study(config)
    print(format_summary(summary))
    print(f"results in {config.tune.storage} and results/tune/ (best_params.yaml, trials.csv)", file=sys.stderr)


if __name__ == "__main__":
    cli_overrides = parse_overrides()
    run_stage("tune", lambda config: main(config, cli_overrides))
