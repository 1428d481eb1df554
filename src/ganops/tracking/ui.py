"""`make mlflow-ui`: the MLflow UI on 127.0.0.1, light enough for a laptop, opened on the training runs.

    python -m ganops.tracking.ui [--port 5000] [--params params.yaml]

MLflow's defaults start 4 uvicorn workers and a pool of job consumers (for GenAI judges and prompt
optimisation, which ganops never uses): 15 processes and about 3.2 GB of summed RSS measured here. One
worker and no job execution: 2 processes and about 0.5 GB.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Optional, Sequence

from ganops.config import load_config
from ganops.errors import GanopsError

HOST = "127.0.0.1"


def ui_command(backend_uri: str, port: int, host: str = HOST) -> list[str]:
    return [sys.executable, "-m", "mlflow", "ui", "--backend-store-uri", backend_uri, "--host", host,
            "--port", str(port), "--workers", "1"]


def ui_environment() -> dict[str, str]:
    return {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false", "MLFLOW_DISABLE_TELEMETRY": "true"}


def main(argv: Optional[Sequence[str]] = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m ganops.tracking.ui", description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, default=5000)
    parser.add_argument("--params", default="params.yaml")
    args = parser.parse_args(argv)
    try:
        config = load_config(args.params)
        from ganops.tracking import open_tracker

        tracker = open_tracker(config)
        if tracker is None:
            raise GanopsError("tracking.enabled is false in params: there are no runs to show")
    except GanopsError as error:
        print(f"ganops mlflow-ui: error: {error}", file=sys.stderr)
        sys.exit(2)
    uri = config.tracking.uri
    if uri.startswith(("http://", "https://")):
        print(f"runs are on the tracking server: {tracker.experiment_url()}")
        return
    print(f"MLflow UI: open {tracker.experiment_url(args.port)}   (the training runs of {config.data.dataset}; "
          "Ctrl-C stops it)", flush=True)
    command = ui_command(uri, args.port)
    os.execvpe(command[0], command, ui_environment())


if __name__ == "__main__":
    main()
