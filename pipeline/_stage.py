"""What every stage shares: load params.yaml once, and turn user errors into one line and exit code 2.

Stage modules import the library (torch, MLflow, ...) inside their `main`, after the params have been
loaded and checked here, so a bad value in params.yaml fails in a fraction of a second, not after
seconds of imports.
"""

from __future__ import annotations

import logging
import os
import sys
from typing import Callable, NoReturn

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
        fail(name, str(error), getattr(error, "exit_code", 2))
    except OSError as error:  # the file system said no: a path that is a file, no permission, a full disk
        if error.filename is None:
            raise
        where = f"{error.filename}" + (f" -> {error.filename2}" if error.filename2 else "")
        fail(name, f"{where}: {error.strerror or error} (check the path, its permissions and the free disk space)")
    except KeyboardInterrupt:
        if os.environ.get("RANK", "0") == "0":
            print(f"ganops {name}: interrupted", file=sys.stderr)
        sys.exit(130)


def fail(name: str, message: str, code: int = 2) -> NoReturn:
    message = " ".join(message.split())  # one line, whatever the library put in
    if "RANK" in os.environ:  # a torchrun worker: one process of the job prints (see ganops.distributed)
        from ganops.distributed import report_failure

        if not report_failure(message):
            sys.exit(code)
    print(f"ganops {name}: error: {message}", file=sys.stderr)
    sys.exit(code)
