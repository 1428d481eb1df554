"""Atomic writes and safe loads (src/ganops/fileio.py): complete or absent, and no unpickled code."""

import pytest
import torch

from ganops.errors import GanopsError
from ganops.fileio import torch_load, torch_save


def test_torch_save_that_fails_leaves_the_old_file_and_no_temporary(tmp_path):
    target = tmp_path / "ckpt.pt"
    torch_save({"w": torch.ones(2)}, target)
    before = target.read_bytes()
    with pytest.raises(Exception):
        torch_save({"w": torch.zeros(2), "bad": lambda: None}, target)  # a lambda cannot be pickled
    assert target.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["ckpt.pt"]


def test_torch_load_is_weights_only(tmp_path, monkeypatch):
    calls = []
    real_load = torch.load
    monkeypatch.setattr(torch, "load", lambda *a, **kw: calls.append(kw) or real_load(*a, **kw))
    torch_save({"w": torch.ones(2)}, tmp_path / "ok.pt")
    assert torch.equal(torch_load(tmp_path / "ok.pt", "tensors")["w"], torch.ones(2))
    assert calls and all(kw.get("weights_only") is True for kw in calls)


class Payload:
    """Stands for a pickled object whose unpickling would run code."""


def test_a_file_with_python_objects_is_refused_with_one_line(tmp_path):
    path = tmp_path / "evil.pt"
    torch.save({"w": torch.ones(1), "payload": Payload()}, path)
    with pytest.raises(GanopsError, match=r"holds Python objects, not only tensors.*weights_only=True") as info:
        torch_load(path, "training checkpoint")
    assert "\n" not in str(info.value)


def test_truncated_file_is_one_short_line(tmp_path):
    path = tmp_path / "cut.pt"
    torch_save({"w": torch.ones(1000)}, path)
    path.write_bytes(path.read_bytes()[:300])
    with pytest.raises(GanopsError, match=r"training checkpoint is corrupt or truncated: .*cut.pt \(") as info:
        torch_load(path, "training checkpoint")
    assert "\n" not in str(info.value) and len(str(info.value)) < 300


def test_equal_tensors_give_equal_bytes_whatever_the_file_name(tmp_path):
    """DVC hashes outputs: re-running a stage on the same data must not look like a change."""
    record = {"images": torch.arange(64, dtype=torch.uint8).reshape(4, 4, 4), "meta": {"dataset": "x"}}
    torch_save(record, tmp_path / "a.pt")
    torch_save(record, tmp_path / "longer-name.pt")
    assert (tmp_path / "a.pt").read_bytes() == (tmp_path / "longer-name.pt").read_bytes()
