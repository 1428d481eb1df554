"""What every stage shares: load params.yaml once, and turn user errors into one line and exit code 2.

Stage modules import the library (torch, MLflow, ...) inside their `main`, after the params have been
loaded and checked here, so a bad value in params.yaml fails in a fraction of a second, not after
seconds of imports.
"""

from __future__ import annotations

import logging
import os
import sys
from typing import Callable, NoReturn, Optional

from ganops.config import Config, load_config
from ganops.errors import GanopsError

PARAMS_ENV = "GANOPS_PARAMS"  # another params file, for notebooks and tests; DVC uses params.yaml


def run_stage(name: str, main: Callable[[Config], None], should_print: Optional[Callable[[str], bool]] = None) -> None:
    """Run `main` on the checked params. `should_print(message)`: whether this process prints a failure
    (the train stage under torchrun: one rank of the job does, see ganops.distributed)."""
    logging.basicConfig(level=logging.INFO, format=f"[{name}] %(levelname)s %(name)s: %(message)s")
    for noisy in ("alembic", "mlflow", "urllib3", "matplotlib", "PIL"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    try:
        main(load_config(os.environ.get(PARAMS_ENV, "params.yaml")))
    except GanopsError as error:
        fail(name, str(error), getattr(error, "exit_code", 2), should_print)
    except OSError as error:  # the file system said no: a path that is a file, no permission, a full disk
        if error.filename is None:
            raise
        where = f"{error.filename}" + (f" -> {error.filename2}" if error.filename2 else "")
        fail(name, f"{where}: {error.strerror or error} (check the path, its permissions and the free disk space)",
             should_print=should_print)
    except KeyboardInterrupt:
        if os.environ.get("RANK", "0") == "0":
            print(f"ganops {name}: interrupted", file=sys.stderr)
        sys.exit(130)


def fail(name: str, message: str, code: int = 2, should_print: Optional[Callable[[str], bool]] = None) -> NoReturn:
    message = " ".join(message.split())  # one line, whatever the library put in
    if should_print is not None and not should_print(message):
        sys.exit(code)
    print(f"ganops {name}: error: {message}", file=sys.stderr)
    sys.exit(code)
