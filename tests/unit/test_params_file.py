"""params.yaml is a fixed point of DVC's params writer: `dvc exp run -S key=value` changes one line."""

from __future__ import annotations

import difflib
import shutil
from pathlib import Path

from ganops.config import load_config

ROOT = Path(__file__).resolve().parents[2]


def apply_dvc_overrides(path: Path, overrides: list[str]) -> None:
    # The function `dvc exp run -S` calls on the params file (dvc/repo/experiments/queue/base.py).
    from dvc.utils.hydra import apply_overrides

    apply_overrides(str(path), overrides)


def changed_lines(before: str, after: str) -> list[str]:
    return [line for line in difflib.unified_diff(before.splitlines(), after.splitlines(), lineterm="", n=0)
            if line[:1] in "+-" and not line.startswith(("+++", "---"))]


def test_dvc_set_param_changes_only_the_value_it_sets(tmp_path):
    params = tmp_path / "params.yaml"
    shutil.copyfile(ROOT / "params.yaml", params)
    before = params.read_text()
    lr = load_config(params).train.lr
    apply_dvc_overrides(params, ["train.lr=0.0001"])
    assert changed_lines(before, params.read_text()) == [f"-  lr: {lr}", "+  lr: 0.0001"]


def test_dvc_rewrite_keeps_comments_and_the_same_config(tmp_path):
    params = tmp_path / "params.yaml"
    shutil.copyfile(ROOT / "params.yaml", params)
    apply_dvc_overrides(params, [f"train.lr={load_config(params).train.lr}"])  # the value it already has
    assert params.read_text() == (ROOT / "params.yaml").read_text()
    assert load_config(params) == load_config(ROOT / "params.yaml")


def test_dvc_set_a_list_turns_on_the_tune_search_as_the_readme_says(tmp_path):
    params = tmp_path / "params.yaml"
    shutil.copyfile(ROOT / "params.yaml", params)
    apply_dvc_overrides(params, ["tune.search=[loss,ema,diffaug,ttur]", "tune.study_name=switches"])
    config = load_config(params)
    assert config.tune.search == ["loss", "ema", "diffaug", "ttur"] and config.tune.study_name == "switches"
    readme = (ROOT / "README.md").read_text()
    assert "dvc exp run -S 'tune.search=[loss,ema,diffaug,ttur]' -S tune.study_name=switches" in readme
