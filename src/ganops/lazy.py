"""Package attributes loaded on first use (PEP 562), for packages that must import without torch.

config.py reads the data-source and FID-extractor registries before torch loads (pipeline/_stage.py),
and importing them runs `ganops/data/__init__.py` and `ganops/metrics/__init__.py`; those keep their
public names (`from ganops.data import fetch`) through this instead of importing them at the top.
"""

from __future__ import annotations

import importlib
import sys
from typing import Any, Callable


def lazy_attributes(package: str, homes: dict[str, str]) -> Callable[[str], Any]:
    """A module `__getattr__` that imports `homes[name]` (a module name) and returns its `name`.

    A name must not also be a submodule's: importing a submodule sets the package attribute of that
    name, and `__getattr__` is only asked for attributes the package does not have.
    """
    def __getattr__(name: str) -> Any:
        if name not in homes:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(homes[name]), name)
        setattr(sys.modules[package], name, value)  # found once; later lookups are plain attributes
        return value

    return __getattr__
