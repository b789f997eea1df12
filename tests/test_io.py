"""kdforge.io: atomic writes, tensors with metadata, the weights + spec pair, strict loading, cache root."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from kdforge import io
from kdforge.errors import KdforgeError
from kdforge.models import build_model, load_model


def test_atomic_write_replaces_and_leaves_no_temporary(tmp_path):
    target = tmp_path / "sub" / "a.txt"
    io.atomic_write_text(target, "one")
    io.atomic_write_bytes(target, b"two")
    assert target.read_text() == "two"
    assert [p.name for p in target.parent.iterdir()] == ["a.txt"]


def test_failed_write_keeps_the_previous_file(tmp_path):
    target = tmp_path / "a.txt"
    io.atomic_write_text(target, "good")

    def broken(tmp: Path) -> None:
        tmp.write_text("half")
        raise OSError(28, "No space left on device")

    with pytest.raises(KdforgeError, match=r"cannot write checkpoint .*a\.txt.*No space left") as e:
        io.atomic_write(target, broken, what="checkpoint", fix="free disk space")
    assert "free disk space" in str(e.value)
    assert target.read_text() == "good"
    assert [p.name for p in tmp_path.iterdir()] == ["a.txt"]


def test_tensors_round_trip_with_metadata(tmp_path):
    tensors = {"w": torch.arange(6.0).reshape(2, 3).t(), "i": torch.tensor([1, 2], dtype=torch.int64)}
    path = io.save_tensors(tmp_path / "t.safetensors", tensors, metadata={"shard": "3"})
    back = io.load_tensors(path)
    assert torch.equal(back["w"], tensors["w"]) and torch.equal(back["i"], tensors["i"])
    assert io.read_metadata(path) == {"shard": "3"}


def test_tied_weights_are_saved_as_copies(tmp_path):
    model = torch.nn.Sequential(torch.nn.Embedding(5, 3), torch.nn.Linear(3, 5, bias=False))
    model[1].weight = model[0].weight  # tied, as language-model heads often are
    io.save_tensors(tmp_path / "t.safetensors", model.state_dict())
    back = io.load_tensors(tmp_path / "t.safetensors")
    assert torch.equal(back["0.weight"], model[0].weight) and torch.equal(back["1.weight"], model[0].weight)


def test_torch_state_dicts_load_and_bad_ones_are_named(tmp_path):
    linear = torch.nn.Linear(2, 3)
    torch.save({"model_state": linear.state_dict(), "epoch": 3}, tmp_path / "w.pth")
    back = io.load_tensors(tmp_path / "w.pth")
    assert back.keys() == {"weight", "bias"} and torch.equal(back["weight"], linear.weight)
    (tmp_path / "bad.pt").write_bytes(b"garbage")
    with pytest.raises(KdforgeError, match="is corrupt \\(not a readable torch state dict"):
        io.load_tensors(tmp_path / "bad.pt")
    torch.save([1, 2], tmp_path / "list.pt")
    with pytest.raises(KdforgeError, match="holds a list, not a state dict of tensors"):
        io.load_tensors(tmp_path / "list.pt")


def test_load_tensors_names_missing_and_corrupt_files(tmp_path):
    with pytest.raises(KdforgeError, match=r"pair shard '.*nope.safetensors' does not exist"):
        io.load_tensors(tmp_path / "nope.safetensors", "pair shard")
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"\x00garbage")
    with pytest.raises(KdforgeError, match="is corrupt"):
        io.load_tensors(bad)
    with pytest.raises(KdforgeError, match="unreadable"):
        io.read_metadata(bad)


@pytest.mark.parametrize("given", ["m", "m.safetensors", "m.json"])
def test_save_model_load_model_round_trip(tmp_path, given):
    torch.manual_seed(0)
    model = build_model("mlp", (1, 4, 4), 3, hidden=(5,))
    spec = io.model_spec("mlp", {"hidden": [5]}, (1, 4, 4), 3)
    weights = io.save_model(model, spec, tmp_path / "m")
    assert weights == tmp_path / "m.safetensors"
    assert json.loads((tmp_path / "m.json").read_text()) == spec
    back = load_model(tmp_path / given)
    x = torch.randn(2, 1, 4, 4)
    assert torch.equal(back(x), model(x))
    for (k, v), (k2, v2) in zip(model.state_dict().items(), back.state_dict().items(), strict=True):
        assert k == k2 and torch.equal(v, v2)


def test_save_model_refuses_an_incomplete_spec(tmp_path):
    with pytest.raises(ValueError, match="num_classes"):
        io.save_model(torch.nn.Linear(2, 2), {"model": "x", "kwargs": {}, "input_shape": [2]}, tmp_path / "m")


def test_load_model_without_or_with_broken_spec(tmp_path):
    model = build_model("mlp", (4,), 2, hidden=(3,))
    io.save_model(model, io.model_spec("mlp", {"hidden": [3]}, (4,), 2), tmp_path / "m")
    (tmp_path / "m.json").write_text('{"model": "mlp"}')
    with pytest.raises(KdforgeError, match=r"lacks \['kwargs', 'input_shape', 'num_classes'\]"):
        load_model(tmp_path / "m")
    (tmp_path / "m.json").unlink()
    with pytest.raises(KdforgeError, match="model spec beside the weights"):
        load_model(tmp_path / "m.safetensors")


def test_load_weights_names_the_mismatch(tmp_path):
    io.save_model(build_model("mlp", (4,), 2, hidden=(3,)), io.model_spec("mlp", {}, (4,), 2), tmp_path / "m")
    other = build_model("mlp", (4,), 2, hidden=(7,))
    with pytest.raises(KdforgeError, match=r"checkpoint .* does not fit the teacher.*wrong shape") as e:
        io.load_weights(other, tmp_path / "m.safetensors", "teacher")
    assert "make teacher.name/kwargs match" in str(e.value)
    with pytest.raises(KdforgeError, match=r"student checkpoint '.*none.safetensors' does not exist"):
        io.load_weights(other, tmp_path / "none.safetensors", "student")


def test_registered_state_check_runs_before_the_generic_one(tmp_path):
    def refuse_extra(own, state, source):
        if "extra" in state:
            raise KdforgeError(f"{source} has an extra tensor", "drop it")

    io.register_state_check(refuse_extra)
    io.register_state_check(refuse_extra)  # once only
    try:
        model = torch.nn.Linear(2, 2)
        state = {**model.state_dict(), "extra": torch.zeros(1)}
        with pytest.raises(KdforgeError, match="has an extra tensor"):
            io.load_state(model, state, "file 'x'")
        assert io._STATE_CHECKS.count(refuse_extra) == 1
    finally:
        io._STATE_CHECKS.remove(refuse_extra)


def test_cache_root_env_override(monkeypatch, tmp_path):
    monkeypatch.setenv("KDFORGE_CACHE", str(tmp_path / "c"))
    assert io.cache_root() == tmp_path / "c"
    monkeypatch.delenv("KDFORGE_CACHE")
    assert io.cache_root() == Path.home() / ".cache" / "kdforge"
