"""Data sets: fetch a source's files into data/raw/<dataset>/, then prepare one uint8 tensor file.

This file stays free of torch: config.py imports the source registry (ganops.data.sources) to check
params.yaml before torch loads (see pipeline/_stage.py), and importing it runs this file first. The
names below that need torch are loaded from their modules on first use.
"""

from __future__ import annotations

from ganops.lazy import lazy_attributes

CHECKSUM_FILE = "SHA256SUMS"  # the download stage's record of raw_dir: "<sha256>  <file>" a line

_HOMES = {
    "fetch": "ganops.data.stages", "read_raw": "ganops.data.stages", "prepare": "ganops.data.stages",
    "Prepared": "ganops.data.tensorfile", "load_prepared": "ganops.data.tensorfile",
    "save_prepared": "ganops.data.tensorfile", "sha256_file": "ganops.fileio",
}

__all__ = ["CHECKSUM_FILE", *_HOMES]

__getattr__ = lazy_attributes(__name__, _HOMES)
