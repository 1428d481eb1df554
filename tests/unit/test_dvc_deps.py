"""Every file of code a DVC stage runs is one of its `deps`, so an edit can never leave a stale result.

The closure follows every import statement (module level or inside functions) from the stage's entry
module through `pipeline/` and `src/ganops/`, including the `__init__.py` of each package on the way,
since Python runs those too. A name a package loads on first use (ganops.lazy: its `_HOMES` table) counts
as an import of the module that holds it. Not followed: the extractor registry's import-by-name of each
extractor module, made only by stages that extract features; those list the whole metrics folder.
"""

from __future__ import annotations

import ast
import copy
import functools
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
SEARCH_ROOTS = (ROOT, ROOT / "src")  # where `pipeline.*` and `ganops.*` live


def module_file(name: str) -> Path | None:
    """The file of a project module (`ganops.tracking` -> src/ganops/tracking/__init__.py), else None."""
    parts = name.split(".")
    for base in SEARCH_ROOTS:
        stem = base.joinpath(*parts)
        for candidate in (stem.with_suffix(".py"), stem / "__init__.py"):
            if candidate.is_file() and ROOT in candidate.parents:
                return candidate
    return None


@functools.cache
def lazy_homes(package: str) -> dict[str, str]:
    """A lazy package's table of attribute -> module (the `_HOMES = {...}` literal ganops.lazy reads)."""
    path = module_file(package)
    if path is None or path.name != "__init__.py":
        return {}
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "_HOMES" for t in node.targets):
            # Our own source: a dict literal, with `**dict.fromkeys([...], module)` for several names.
            return eval(compile(ast.Expression(node.value), str(path), "eval"), {"__builtins__": {}, "dict": dict})
    return {}


def runtime_nodes(tree: ast.AST):
    """Every node but those under `if TYPE_CHECKING:` (imports for type checkers only; Python skips them)."""
    todo = [tree]
    while todo:
        node = todo.pop()
        yield node
        if isinstance(node, ast.If) and getattr(node.test, "id", getattr(node.test, "attr", None)) == "TYPE_CHECKING":
            todo.extend(node.orelse)
            continue
        todo.extend(ast.iter_child_nodes(node))


def imported_modules(path: Path) -> set[str]:
    """Module names an import in `path` may load: for `from a.b import c` both `a.b` and `a.b.c`."""
    names: set[str] = set()
    for node in runtime_nodes(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
            homes = lazy_homes(node.module)
            names.update(homes[alias.name] for alias in node.names if alias.name in homes)
    with_parents = set(names)
    for name in names:  # importing a.b.c runs a/__init__.py and a/b/__init__.py first
        parts = name.split(".")
        with_parents.update(".".join(parts[:i]) for i in range(1, len(parts)))
    return with_parents


def import_closure(entry_module: str) -> set[Path]:
    start = module_file(entry_module)
    assert start is not None, f"no file for {entry_module}"
    seen, todo = set(), [start]
    while todo:
        path = todo.pop()
        if path in seen:
            continue
        seen.add(path)
        todo.extend(f for f in map(module_file, imported_modules(path)) if f is not None and f not in seen)
    return seen


def stage_entry(cmd: str) -> str | None:
    words = cmd.split()
    return words[words.index("-m") + 1] if "-m" in words else None


def missing_code_deps(stages: dict) -> dict[str, list[str]]:
    """Per stage, the files its code imports that no `deps` entry (file or folder) covers."""
    missing = {}
    for name, stage in stages.items():
        entry = stage_entry(stage["cmd"])
        if entry is None:
            continue
        deps = [ROOT / d for d in stage.get("deps", []) if "${" not in d]
        uncovered = sorted(str(f.relative_to(ROOT)) for f in import_closure(entry)
                           if not any(f == d or d in f.parents for d in deps))
        if uncovered:
            missing[name] = uncovered
    return missing


def stages() -> dict:
    return yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]


def test_every_stage_lists_the_code_it_imports():
    assert missing_code_deps(stages()) == {}


def test_a_removed_dep_is_reported():
    """The check can fail: drop one code dep of `train` and it names exactly what became uncovered."""
    edited = copy.deepcopy(stages())
    deps = edited["train"]["deps"]
    removed = next(d for d in deps if d == "src/ganops/models.py")
    deps.remove(removed)
    assert missing_code_deps(edited) == {"train": [removed]}


def test_closure_follows_imports_inside_functions():
    """Stages import the library inside main() (params are checked before torch loads)."""
    closure = {str(p.relative_to(ROOT)) for p in import_closure("pipeline.train")}
    assert {"pipeline/train.py", "pipeline/_stage.py", "src/ganops/training.py", "src/ganops/__init__.py"} <= closure
