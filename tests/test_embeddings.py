"""Teacher-embedding cache: reuse, resumption, row matching and bad-input errors (synthetic data)."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from kdforge.data._batches import TensorData
from kdforge.data.embeddings import attach, extract, load, module_embedder, row_hashes
from kdforge.errors import KdforgeError


def _data(n: int = 50, seed: int = 0) -> TensorData:
    g = torch.Generator().manual_seed(seed)
    return TensorData({"x": torch.randn(n, 6, generator=g), "y": torch.randint(0, 2, (n,), generator=g)})


class Counting(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Linear(6, 5), nn.Tanh(), nn.Linear(5, 3))
        self.rows = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.rows += len(x)
        return self.body(x)


def _extract(net, data, path, **kw):
    args = {
        "dataset": "toy",
        "split": "train",
        "model": "m",
        "batch_size": 8,
        "shard_size": 16,
        "progress": False,
    }
    return extract(module_embedder(net), data, path, **{**args, **kw})


def test_extract_load_and_reuse(tmp_path):
    data, net = _data(), Counting()
    _extract(net, data, tmp_path / "e")
    emb, hashes, m = load(tmp_path / "e", dataset="toy", model="m")
    assert emb.shape == (50, 3) and m["complete"] and len(m["shards"]) == 4
    assert torch.allclose(emb, net.body(data.tensors["x"]).detach(), atol=1e-6)
    assert net.rows == 50
    _extract(net, data, tmp_path / "e")  # a complete cache is reused: the model is not run again
    assert net.rows == 50


def test_module_path_features(tmp_path):
    data, net = _data(), Counting()
    kw = {"dataset": "toy", "split": "train", "model": "m@body.1", "progress": False}
    extract(module_embedder(net, "body.1"), data, tmp_path / "h", **kw)
    emb, _, _ = load(tmp_path / "h")
    assert emb.shape == (50, 5) and emb.abs().max() <= 1.0  # tanh output


def test_resume_after_interruption(tmp_path):
    data = _data()

    class Dies(Counting):
        def forward(self, x):
            if self.rows >= 32:
                raise RuntimeError("killed")
            return super().forward(x)

    net = Dies()
    with pytest.raises(RuntimeError):
        _extract(net, data, tmp_path / "e")
    m = json.loads((tmp_path / "e" / "manifest.json").read_text())
    assert not m["complete"] and len(m["shards"]) == 2
    net2 = Counting()
    net2.load_state_dict(net.state_dict())
    _extract(net2, data, tmp_path / "e")
    assert net2.rows == 50 - 32  # only the missing shards ran
    emb, _, _ = load(tmp_path / "e")
    assert torch.allclose(emb, net2.body(data.tensors["x"]).detach(), atol=1e-6)


def test_attach_matches_rows_in_any_order(tmp_path):
    data, net = _data(), Counting()
    _extract(net, data, tmp_path / "e")
    emb, hashes, _ = load(tmp_path / "e")
    perm = torch.randperm(50, generator=torch.Generator().manual_seed(3))[:20]
    sub = TensorData(data.take(perm))
    out = attach(sub, emb, hashes)
    assert torch.equal(out.tensors["teacher_emb"], emb[perm])
    with pytest.raises(KdforgeError, match="no cached teacher embedding"):
        attach(_data(seed=9), emb, hashes)


def test_cache_of_other_model_or_dataset_is_refused_and_kept(tmp_path):
    data, net = _data(), Counting()
    _extract(net, data, tmp_path / "e")
    before = (tmp_path / "e" / "shard-00000.safetensors").read_bytes()
    with pytest.raises(KdforgeError, match="model 'm'"):
        _extract(net, data, tmp_path / "e", model="other")
    with pytest.raises(KdforgeError, match="dataset 'toy'"):
        _extract(net, data, tmp_path / "e", dataset="digits")
    with pytest.raises(KdforgeError, match="holds 50 examples but the split has 40"):
        _extract(net, _data(40), tmp_path / "e")
    with pytest.raises(KdforgeError, match="other inputs"):
        _extract(net, _data(seed=5), tmp_path / "e")
    with pytest.raises(KdforgeError, match="expected 'other'"):
        load(tmp_path / "e", model="other")
    assert (tmp_path / "e" / "shard-00000.safetensors").read_bytes() == before


def test_nan_embeddings_abort_without_writing(tmp_path):
    data = _data()
    data.tensors["x"][20, 0] = float("nan")
    with pytest.raises(KdforgeError, match=r"NaN/inf .*for examples \[20\]"):
        _extract(Counting(), data, tmp_path / "e")
    m = json.loads((tmp_path / "e" / "manifest.json").read_text())
    assert [s["start"] for s in m["shards"]] == [0] and not m["complete"]
    assert not (tmp_path / "e" / "shard-00001.safetensors").exists()


def test_row_hashes_ignore_labels_and_depend_on_inputs():
    a = _data()
    b = TensorData({"x": a.tensors["x"].clone(), "y": 1 - a.tensors["y"]})
    assert torch.equal(row_hashes(a), row_hashes(b))
    b.tensors["x"][3, 2] += 1e-3
    diff = (row_hashes(a) != row_hashes(b)).any(1)
    assert diff.nonzero().flatten().tolist() == [3]


def test_retrained_teacher_under_the_same_name_is_refused_never_stale(tmp_path):
    """A rescaled teacher (other weights, same name) must not get the old embeddings back."""
    data, net = _data(), Counting()
    _extract(net, data, tmp_path / "e")
    before = (tmp_path / "e" / "shard-00000.safetensors").read_bytes()
    with torch.no_grad():
        net.body[0].weight.mul_(2.0)
    with pytest.raises(KdforgeError, match="other weights") as e:
        _extract(net, data, tmp_path / "e")
    assert "--name" in e.value.fix
    assert (tmp_path / "e" / "shard-00000.safetensors").read_bytes() == before
    _extract(net, data, tmp_path / "new")  # a new entry holds the rescaled teacher's embeddings
    emb, _, m = load(tmp_path / "new")
    assert torch.allclose(emb, net.body(data.tensors["x"]).detach(), atol=1e-6)
    old, _, _ = load(tmp_path / "e")
    assert not torch.allclose(emb, old, atol=1e-3)
    assert (
        m["identity"]["fingerprint"]
        != json.loads((tmp_path / "e" / "manifest.json").read_text())["identity"]["fingerprint"]
    )


def test_other_path_or_pooling_under_the_same_name_is_refused(tmp_path):
    data, net = _data(), Counting()
    kw = {"dataset": "toy", "split": "train", "model": "m", "progress": False}
    extract(module_embedder(net, "body.1"), data, tmp_path / "h", **kw)
    with pytest.raises(KdforgeError, match="path 'body.1', not 'body.0'"):
        extract(module_embedder(net, "body.0"), data, tmp_path / "h", **kw)
    with pytest.raises(KdforgeError, match="pooling 'mean_hw', not 'none'"):
        extract(module_embedder(net, "body.1", pool=False), data, tmp_path / "h", **kw)


def test_cache_of_an_older_format_without_fingerprint_is_refused(tmp_path):
    data, net = _data(), Counting()
    _extract(net, data, tmp_path / "e")
    manifest = tmp_path / "e" / "manifest.json"
    m = json.loads(manifest.read_text())
    manifest.write_text(json.dumps({**m, "format": 1}))
    with pytest.raises(KdforgeError, match="older kdforge.*fingerprint"):
        _extract(net, data, tmp_path / "e")
    with pytest.raises(KdforgeError, match="older kdforge"):
        load(tmp_path / "e")
