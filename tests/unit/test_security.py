"""Static checks over the project's own code and docs: no unsafe deserialisation, no server open to the network.

Python files are read with `ast`, so a call split over lines or written with other spacing is still
found; each checker is first shown an unsafe snippet, so a checker that finds nothing fails too.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PYTHON_SOURCES = sorted([*ROOT.glob("src/**/*.py"), *ROOT.glob("pipeline/**/*.py")])
DOCS = [ROOT / "README.md", ROOT / "Makefile"]

# yaml functions that can build arbitrary Python objects unless given SafeLoader / CSafeLoader
YAML_LOADERS = {"load", "load_all", "full_load", "full_load_all", "unsafe_load", "unsafe_load_all"}
PICKLE_MODULES = {"pickle", "cPickle", "dill", "cloudpickle", "joblib", "_pickle"}
SERVER_COMMAND = re.compile(r"\b(mlflow\s+(ui|server)|optuna-dashboard)\b(?P<args>.*)")
LOCAL_HOST = re.compile(r"--host[ =](127\.0\.0\.1|localhost)\b")


def _name(node: ast.AST) -> str:
    """`a.b.c` for an attribute chain, '' for anything else."""
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        base = _name(node.value)
        return f"{base}.{node.attr}" if base else ""
    return ""


def _keyword(call: ast.Call, name: str) -> ast.AST | None:
    return next((k.value for k in call.keywords if k.arg == name), None)


def _is_true(node: ast.AST | None) -> bool:
    return isinstance(node, ast.Constant) and node.value is True


def unsafe_calls(source: str, filename: str = "<snippet>") -> list[str]:
    """Every deserialising call in `source` that could run code from a file, as 'file:line: why'."""
    tree = ast.parse(source, filename)
    # `from yaml import load`, `from torch import load as tload`...: remember what local names stand for
    aliases: dict[str, str] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            for alias in node.names:
                aliases[alias.asname or alias.name] = f"{node.module}.{alias.name}"
        elif isinstance(node, ast.Import):
            for alias in node.names:
                aliases[alias.asname or alias.name] = alias.name
    found = []
    for node in ast.walk(tree):  # breadth first: sorted by line at the end
        if not isinstance(node, ast.Call):
            continue
        name = _name(node.func)
        head, _, rest = name.partition(".")
        name = f"{aliases.get(head, head)}.{rest}" if rest else aliases.get(head, head)
        module, _, function = name.rpartition(".")
        where = f"{filename}:{node.lineno}"
        if module == "yaml" and function in YAML_LOADERS:
            loader = _name(_keyword(node, "Loader") or (node.args[1] if len(node.args) > 1 else ast.Constant(None)))
            if not loader.endswith(("SafeLoader", "CSafeLoader")):
                found.append(f"{where}: yaml.{function} without SafeLoader (use yaml.safe_load)")
        elif module == "torch" and function == "load" and not _is_true(_keyword(node, "weights_only")):
            found.append(f"{where}: torch.load without weights_only=True (use ganops.fileio.torch_load)")
        elif module.split(".")[0] in PICKLE_MODULES and function in ("load", "loads", "Unpickler"):
            found.append(f"{where}: {name} unpickles (runs code from the file)")
        elif module in ("numpy", "np") and function == "load" and not (
                isinstance(a := _keyword(node, "allow_pickle"), ast.Constant) and a.value is False):
            found.append(f"{where}: numpy.load without allow_pickle=False")
    return sorted(found, key=lambda f: int(f[len(filename) + 1:].split(":")[0]))


def command_lines(text: str, markdown: bool) -> list[tuple[int, str]]:
    """(line number, command) for what a reader runs: a Makefile's recipe lines; a README's fenced code
    blocks and `inline code` (prose that only names a tool is not a command)."""
    commands, fenced = [], False
    for number, line in enumerate(text.splitlines(), 1):
        if markdown:
            if line.lstrip().startswith("```"):
                fenced = not fenced
            elif fenced:
                commands.append((number, line))
            else:
                commands += [(number, span) for span in re.findall(r"`([^`]+)`", line)]
        elif line.startswith("\t"):
            commands.append((number, line))
    return commands


def open_servers(text: str, filename: str = "<snippet>", markdown: bool = True) -> list[str]:
    """Every `mlflow ui`, `mlflow server` or `optuna-dashboard` command not bound to 127.0.0.1."""
    return [f"{filename}:{number}: {command.strip()}" for number, command in command_lines(text, markdown)
            if (match := SERVER_COMMAND.search(command)) and not LOCAL_HOST.search(match.group("args"))]


def test_the_checkers_catch_unsafe_code():
    snippet = (
        "import yaml, torch, pickle, numpy as np\n"
        "from yaml import load as yload\n"
        "yaml.load(open('p.yaml'))\n"
        "yaml.load(text, Loader=yaml.FullLoader)\n"
        "yload(text)\n"
        "yaml.unsafe_load(text)\n"
        "torch.load(\n    'ckpt.pt',\n    map_location='cpu')\n"
        "torch.load('ckpt.pt', weights_only=False)\n"
        "pickle.loads(blob)\n"
        "np.load('x.npz', allow_pickle=True)\n"
        # safe ones, for contrast
        "yaml.safe_load(text)\nyaml.load(text, Loader=yaml.SafeLoader)\n"
        "torch.load('ckpt.pt', weights_only=True)\nnp.load('x.npz', allow_pickle=False)\n"
    )
    assert [line.split(":")[1] for line in unsafe_calls(snippet)] == ["3", "4", "5", "6", "7", "10", "11", "12"]
    readme = ("Install optuna-dashboard to watch the study; see `make mlflow-ui`.\n"  # prose: not commands
              "Run `mlflow ui` to look.\n"
              "```bash\n"
              "mlflow server --host 0.0.0.0 --port 5000\n"
              "optuna-dashboard sqlite:///s.db --host 127.0.0.1   # watch it\n"
              "mlflow ui --backend-store-uri sqlite:///m.db\n"
              "```\n")
    assert [line.split(":")[1] for line in open_servers(readme)] == ["2", "4", "6"]
    makefile = ("mlflow-ui: install\n\t$(BIN)/mlflow ui --port 5000\n"
                "dashboard:\n\t$(BIN)/optuna-dashboard sqlite:///s.db --host 127.0.0.1 --port 8080\n")
    assert [line.split(":")[1] for line in open_servers(makefile, markdown=False)] == ["2"]


def test_sources_exist_to_be_checked():
    names = {p.relative_to(ROOT).as_posix() for p in PYTHON_SOURCES}
    assert {"src/ganops/config.py", "src/ganops/fileio.py", "src/ganops/training.py", "pipeline/train.py"} <= names
    assert all(path.is_file() for path in DOCS)


@pytest.mark.parametrize("path", PYTHON_SOURCES, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_no_unsafe_deserialisation(path):
    assert unsafe_calls(path.read_text(), path.relative_to(ROOT).as_posix()) == []


def test_torch_load_goes_through_fileio_with_weights_only():
    calls = [(p, n) for p in PYTHON_SOURCES for n in ast.walk(ast.parse(p.read_text()))
             if isinstance(n, ast.Call) and _name(n.func) == "torch.load"]
    assert [p.relative_to(ROOT).as_posix() for p, _ in calls] == ["src/ganops/fileio.py"]
    assert all(_is_true(_keyword(n, "weights_only")) for _, n in calls)


def test_yaml_is_read_only_with_safe_load():
    reads = [p.relative_to(ROOT).as_posix() for p in PYTHON_SOURCES if re.search(r"yaml\.\w*load", p.read_text())]
    assert reads and all(not re.search(r"yaml\.(?!safe_load\b)\w*load", (ROOT / p).read_text()) for p in reads)


@pytest.mark.parametrize("path", DOCS, ids=lambda p: p.name)
def test_servers_in_docs_listen_on_localhost_only(path):
    text = path.read_text()
    markdown = path.suffix == ".md"
    assert any(SERVER_COMMAND.search(c) for _, c in command_lines(text, markdown)), f"no server command in {path.name}"
    assert open_servers(text, path.name, markdown) == []
    assert "torch.load(" not in text or all("weights_only=True" in line for line in text.splitlines()
                                            if "torch.load(" in line)
