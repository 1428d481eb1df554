"""What every stage shares: load params.yaml once, and turn user errors into one line and exit code 2.

Stage modules import the library (torch, MLflow, ...) inside their `main`, after the params have been
loaded and checked here, so a bad value in params.yaml fails in a fraction of a second, not after
seconds of imports.
"""

from __future__ import annotations

import logging
import os
import sys
from typing import Callable

from ganops.config import Config, load_config
from ganops.errors import GanopsError

PARAMS_ENV = "GANOPS_PARAMS"  # another params file, for notebooks and tests; DVC uses params.yaml


def run_stage(name: str, main: Callable[[Config], None]) -> None:
    logging.basicConfig(level=logging.INFO, format=f"[{name}] %(levelname)s %(name)s: %(message)s")
    for noisy in ("alembic", "mlflow", "urllib3", "matplotlib", "PIL"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    try:
        main(load_config(os.environ.get(PARAMS_ENV, "params.yaml")))
    except GanopsError as error:
        message = " ".join(str(error).split())  # one line, whatever the library put in
        print(f"ganops {name}: error: {message}", file=sys.stderr)
        sys.exit(2)
