"""What the benchmarks share: the mnist-5k digits, interleaved timing, markdown tables, the machine."""

from __future__ import annotations

import os
import platform
import statistics
import tempfile
import time
from pathlib import Path
from typing import Callable, Sequence

import torch

from ganops.config import from_dict
from ganops.data import Prepared, fetch, prepare


def mnist_digits(limit: int = 0) -> Prepared:
    """The embedded mnist-5k digits prepared as the preprocess stage does (uint8 1 x 32 x 32)."""
    data = from_dict({"data": {"dataset": "mnist-5k", "limit": limit}}).data
    with tempfile.TemporaryDirectory() as tmp:
        fetch(data, Path(tmp))
        return prepare(data, Path(tmp))


def interleaved(makers: dict[str, Callable[[], Callable[[], object]]], rounds: int) -> dict[str, list[float]]:
    """Seconds per round of each side, the sides taking turns (a, b, a, b, ...) so load drifts hit all alike.

    A maker sets a round up (untimed: building networks, temporary stores) and returns what is timed.
    """
    times: dict[str, list[float]] = {name: [] for name in makers}
    for _ in range(rounds):
        for name, make in makers.items():
            run = make()
            start = time.perf_counter()
            run()
            times[name].append(time.perf_counter() - start)
    return times


def median(values: Sequence[float]) -> float:
    return statistics.median(values)


def load_average() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "unknown"


def table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A markdown table."""
    cells = [[str(h) for h in headers]] + [[str(c) for c in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    line = lambda row: "| " + " | ".join(c.ljust(w) for c, w in zip(row, widths)) + " |"  # noqa: E731
    return "\n".join([line(cells[0]), "|" + "|".join("-" * (w + 2) for w in widths) + "|"] + [line(r) for r in cells[1:]])


def verdict(ok: bool) -> str:
    return "PASS" if ok else "MISS"


def machine() -> str:
    return (f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs (nproc), "
            f"torch {torch.__version__} with {torch.get_num_threads()} threads, python {platform.python_version()}")
