"""Knowledge Translation pipeline on the 8x8 digits: parity, storage, resume, bad input, end to end."""

from __future__ import annotations

import json

import pytest
import torch

from kdforge.data import load_dataset
from kdforge.errors import KdforgeError
from kdforge.methods.translation import networks as N
from kdforge.methods.translation.evaluate import evaluate, split_networks
from kdforge.methods.translation.pairs import (
    PairConfig,
    Schedule,
    load_pairs,
    make_pairs,
    shard_path,
    train_pairs,
)
from kdforge.methods.translation.train import TrainConfig, TrainedTranslator, train_translator

SPEC = N.BlockSpec(image_size=8)


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits")


@pytest.fixture(scope="module")
def cfg():
    return PairConfig(
        "digits",
        SPEC,
        Schedule(train_subset=384, epochs_large=3, epochs_small=2, batch_size=32, lr=0.05),
        seed=0,
        shard_size=2,
    )


@pytest.fixture(scope="module")
def pair_dir(tmp_path_factory, digits, cfg):
    out = tmp_path_factory.mktemp("pairs")
    make_pairs(out, cfg, range(0, 3), digits, progress=False)
    return out


def test_vmapped_training_equals_one_at_a_time(digits):
    c = PairConfig(
        "digits", SPEC, Schedule(train_subset=128, epochs_large=1, epochs_small=1, batch_size=32, lr=0.01)
    )
    both = train_pairs([5, 6], c, digits.train.tensors, digits.test.tensors)
    one = train_pairs([6], c, digits.train.tensors, digits.test.tensors)
    for k in one:
        assert torch.allclose(both[k][1].float(), one[k][0].float(), atol=1e-4), k
    assert not torch.allclose(both["large.conv1"][0], both["large.conv1"][1])


def test_pairs_are_stored_resumable_and_learn(pair_dir, digits, cfg):
    p, manifest = load_pairs(pair_dir, SPEC)
    assert manifest["spec"] == SPEC.to_dict() and len(p["seed"]) == 6
    assert p["acc_large"].mean() > 0.3 and p["acc_small"].mean() > 0.2  # chance is 0.1
    before = shard_path(pair_dir, 1).stat().st_mtime_ns
    shard_path(pair_dir, 2).unlink()  # as if killed while shard 2 was being made
    info = make_pairs(pair_dir, cfg, range(0, 3), digits, progress=False)
    assert info["made"] == 2 and shard_path(pair_dir, 1).stat().st_mtime_ns == before
    assert torch.equal(load_pairs(pair_dir)[0]["large.conv1"], p["large.conv1"])  # deterministic redo


def test_bad_pair_sets_give_clear_errors(pair_dir, tmp_path, digits, cfg):
    with pytest.raises(KdforgeError, match="block shapes"):
        load_pairs(pair_dir, N.BlockSpec(image_size=8, bottleneck=2))
    with pytest.raises(KdforgeError, match="no manifest"):
        load_pairs(tmp_path)
    (tmp_path / "manifest.json").write_text((pair_dir / "manifest.json").read_text())
    with pytest.raises(KdforgeError, match="empty pair set"):
        load_pairs(tmp_path)
    (tmp_path / "shard_00000.safetensors").write_bytes(b"garbage")
    with pytest.raises(KdforgeError, match="corrupt"):
        load_pairs(tmp_path)
    other = PairConfig("digits", N.BlockSpec(image_size=8, channels=4), cfg.schedule, 0, 2)
    with pytest.raises(KdforgeError, match="another configuration"):
        make_pairs(pair_dir, other, range(0, 1), digits, progress=False)
    bad = json.loads((pair_dir / "manifest.json").read_text())
    bad["spec"]["bottleneck"] = 2  # shards no longer match the manifest
    (tmp_path / "manifest.json").write_text(json.dumps(bad))
    (tmp_path / "shard_00000.safetensors").write_bytes(shard_path(pair_dir, 0).read_bytes())
    with pytest.raises(KdforgeError, match="has shape"):
        load_pairs(tmp_path)
    with pytest.raises(KdforgeError, match="empty pair set"):
        train_translator({}, {}, SPEC, TrainConfig(), (None, None), (None, None))


@pytest.mark.parametrize("objective", ["mse", "functional"])
def test_end_to_end_translate_and_evaluate(pair_dir, digits, tmp_path, objective):
    p, _ = load_pairs(pair_dir)
    tr, va, te = split_networks(p, val_frac=0.2, test_frac=0.3)
    cfg = TrainConfig(
        dim=16,
        depth=1,
        epochs=6,
        eval_every=2,
        batch_size=4,
        bank=128,
        img_batch=32,
        mse_weight=float(objective == "mse"),
        func_weight=float(objective == "functional"),
    )
    x, y = digits.train.tensors["x"], digits.train.tensors["y"]
    tt, hist = train_translator(
        tr, va, SPEC, cfg, (x, y), (digits.val.tensors["x"], digits.val.tensors["y"]), progress=False
    )
    assert hist["loss"][-1] < hist["loss"][0]
    tt.save(tmp_path / "t.safetensors")
    tt2 = TrainedTranslator.load(tmp_path / "t.safetensors", SPEC)
    a, b = tt.translate(te), tt2.translate(te)
    assert all(torch.equal(a[k], b[k]) for k in a)
    r = evaluate(tt2, te, digits.test.tensors["x"], digits.test.tensors["y"])
    assert len(r["translated"]) == len(te["seed"]) and all(0 <= v <= 1 for v in r["translated"])
    with pytest.raises(KdforgeError, match="block shapes"):
        TrainedTranslator.load(tmp_path / "t.safetensors", N.BlockSpec(image_size=8, bottleneck=2))
    (tmp_path / "bad.safetensors").write_bytes(b"nope")
    with pytest.raises(KdforgeError, match="not a readable"):
        TrainedTranslator.load(tmp_path / "bad.safetensors")
