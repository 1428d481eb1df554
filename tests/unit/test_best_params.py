"""results/tune/best_params.yaml: what the tune stage writes is what train.from_study reads."""

import pytest

from ganops.best_params import apply_best_params, best_params_text, read_best_params
from ganops.config import from_dict
from ganops.errors import GanopsError

BEST = {"model": {"ngf": 32, "ndf": 16}, "train": {"lr": 0.00031, "beta1": 0.42}}


def test_written_file_applies_the_best_values_and_names_the_trial(tmp_path):
    path = tmp_path / "best_params.yaml"
    path.write_text(best_params_text(BEST, "my study", 12, 250.5))
    config, best = apply_best_params(from_dict({"train": {"epochs": 7, "from_study": True}}), path)
    assert (config.train.lr, config.train.beta1, config.model.ngf, config.model.ndf) == (0.00031, 0.42, 32, 16)
    assert config.train.epochs == 7 and config.train.from_study  # only the searched keys change
    assert best.tags == {"from_study": "my study", "from_trial": "12"}


@pytest.mark.parametrize("content, message", [
    (None, r"train.from_study is true but .*best_params.yaml does not exist; run the tune stage first"),
    ("model: {ngf: 8}\n", r"is not a best_params.yaml written by the tune stage"),
    (best_params_text(BEST, "s", 1, 2.0) + "data: {limit: 3}\n", r"is not a best_params.yaml written by the tune"),
])
def test_missing_or_foreign_file_is_one_clear_error(tmp_path, content, message):
    path = tmp_path / "best_params.yaml"
    if content is not None:
        path.write_text(content)
    with pytest.raises(GanopsError, match=message):
        read_best_params(path)
