"""The layout rules a reviewer would otherwise check by hand: one home per concern, small modules."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
MAX_MODULE_LINES = 350
MLFLOW_HOME = {"src/ganops/tracking/mlflow_tracker.py"}


def python_files(*folders: str) -> list[Path]:
    return sorted(p for folder in folders for p in (ROOT / folder).rglob("*.py") if "__pycache__" not in p.parts)


def imports_of(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


def test_only_the_mlflow_tracker_imports_mlflow():
    importers = {str(p.relative_to(ROOT)) for p in python_files("src", "pipeline", "bench") if "mlflow" in imports_of(p)}
    assert importers == MLFLOW_HOME


def test_no_library_module_is_over_the_limit():
    too_long = {str(p.relative_to(ROOT)): n for p in python_files("src")
                if (n := len(p.read_text().splitlines())) > MAX_MODULE_LINES}
    assert too_long == {}


def test_no_lazily_loaded_name_is_also_a_submodule():
    """ganops.data and ganops.metrics load their names on first use (ganops/lazy.py); a submodule of the
    same name would replace the attribute once imported (as metrics/precision_recall.py did)."""
    import ganops.data
    import ganops.metrics

    clashes = [f"{package.__name__}.{name}" for package in (ganops.data, ganops.metrics) for name in package.__all__
               if (Path(package.__file__).parent / f"{name}.py").exists()
               or (Path(package.__file__).parent / name).is_dir()]
    assert clashes == []
