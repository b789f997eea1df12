"""Knowledge Translation pipeline on the 8x8 digits: parity, storage, resume, bad input, end to end."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from kdforge.data import load_dataset
from kdforge.errors import KdforgeError
from kdforge.methods.translation import networks as N
from kdforge.methods.translation.evaluate import evaluate, split_networks
from kdforge.methods.translation.pairs import (
    PairConfig,
    Schedule,
    generation_time,
    load_pairs,
    make_pairs,
    merge_pair_sets,
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


@pytest.mark.parametrize("skip", [True, False])
def test_grouped_and_vmapped_training_equal_one_at_a_time(digits, skip):
    c = PairConfig(
        "digits",
        N.BlockSpec(image_size=8, small_skip=skip),
        Schedule(train_subset=128, epochs_large=1, epochs_small=1, batch_size=32, lr=0.01),
    )
    tr, te = digits.train.tensors, digits.test.tensors
    grouped = train_pairs([5, 6], c, tr, te, engine="grouped")
    vmapped = train_pairs([5, 6], c, tr, te, engine="vmap")
    one = train_pairs([6], c, tr, te, engine="grouped")
    for k in one:
        assert torch.allclose(grouped[k][1].float(), one[k][0].float(), atol=1e-4), k
        assert torch.allclose(grouped[k].float(), vmapped[k].float(), atol=1e-4), k
    assert not torch.allclose(grouped["large.conv1"][0], grouped["large.conv1"][1])
    with pytest.raises(KdforgeError, match="unknown pair engine"):
        train_pairs([5], c, tr, te, engine="jit")


def test_pairs_are_stored_resumable_and_learn(pair_dir, digits, cfg):
    p, manifest = load_pairs(pair_dir, SPEC)
    assert manifest["spec"] == SPEC.to_dict() and len(p["seed"]) == 6
    assert p["acc_large"].mean() > 0.3 and p["acc_small"].mean() > 0.2  # chance is 0.1
    before = shard_path(pair_dir, 1).stat().st_mtime_ns
    shard_path(pair_dir, 2).unlink()  # as if killed while shard 2 was being made
    info = make_pairs(pair_dir, cfg, range(0, 3), digits, progress=False)
    assert info["made"] == 2 and shard_path(pair_dir, 1).stat().st_mtime_ns == before
    assert torch.equal(load_pairs(pair_dir)[0]["large.conv1"], p["large.conv1"])  # deterministic redo


def test_generation_time_comes_from_the_shards(pair_dir, tmp_path):
    t = generation_time(pair_dir)
    assert t["shards"] == 3 and t["networks"] == 6 and t["untimed"] == 0
    assert t["seconds"] > 0 and t["wall_seconds"] > 0
    first = generation_time(pair_dir, shards=1)
    assert first["networks"] == 2 and 0 < first["seconds"] < t["seconds"]
    empty = generation_time(tmp_path)
    assert empty == {"shards": 0, "networks": 0, "seconds": 0.0, "wall_seconds": 0.0, "untimed": 0}


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


@pytest.mark.parametrize(
    "objective, variant",
    [
        ("mse", {}),
        ("functional", {}),
        ("functional", {"hidden_perm": True, "context": 2}),  # the checkpoint must keep the context map
        ("functional", {"kind": "set", "hidden_scale": 0.5, "context": 1}),
    ],
)
def test_end_to_end_translate_and_evaluate(pair_dir, digits, tmp_path, objective, variant):
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
        template=objective == "functional",
        **variant,
    )
    x, y = digits.train.tensors["x"], digits.train.tensors["y"]
    tt, hist = train_translator(
        tr, va, SPEC, cfg, (x, y), (digits.val.tensors["x"], digits.val.tensors["y"]), progress=False
    )
    assert hist["loss"][-1] < hist["loss"][0]
    if objective == "functional":  # a correction of the best training pair's small block
        assert torch.equal(tt.norm["base"], tokenize_norm(tr, tt, tr["acc_small"].argmax()))
    tt.save(tmp_path / "t.safetensors")
    tt2 = TrainedTranslator.load(tmp_path / "t.safetensors", SPEC)
    a, b = tt.translate(te), tt2.translate(te)
    assert all(torch.equal(a[k], b[k]) for k in a)
    r = evaluate(tt2, te, digits.test.tensors["x"], digits.test.tensors["y"])
    # each score is that network's accuracy with the translated block, computed one network at a time
    small, xt, yt = tt2.translate(te), digits.test.tensors["x"], digits.test.tensors["y"]
    assert len(r["translated"]) == len(te["seed"]) >= 1
    for i, score in enumerate(r["translated"]):
        net = {k: v[i] for k, v in {**te, **small}.items() if k.startswith(("begin.", "last.", "small."))}
        stats = {k[6:]: v[i] for k, v in te.items() if k.startswith(("stats.begin", "stats.last"))}
        logits, _ = N.forward(net, stats, xt, "small", False, SPEC.small_skip)
        assert score == pytest.approx((logits.argmax(-1) == yt).float().mean().item(), abs=1e-6)
    assert r["trained"] == te["acc_small"].tolist() and r["large"] == te["acc_large"].tolist()
    with pytest.raises(KdforgeError, match="block shapes"):
        TrainedTranslator.load(tmp_path / "t.safetensors", N.BlockSpec(image_size=8, bottleneck=2))
    (tmp_path / "bad.safetensors").write_bytes(b"nope")
    with pytest.raises(KdforgeError, match="not a readable"):
        TrainedTranslator.load(tmp_path / "bad.safetensors")


def tokenize_norm(pairs, tt, i):
    """Normalised small-block tokens of pair ``i``."""
    from kdforge.methods.translation.translator import tokenize_small

    return (tokenize_small(pairs, tt.spec)[i] - tt.norm["out_mean"]) / tt.norm["out_std"]


def test_large_only_schedule_keeps_the_random_small_block(digits):
    """epochs_small=0 (enough for the functional objective) stores the small block's init."""
    c = PairConfig("digits", SPEC, Schedule(train_subset=64, epochs_large=1, epochs_small=0, batch_size=32))
    out = train_pairs([3], c, digits.train.tensors, digits.test.tensors)
    init = N.init_params(SPEC, "small", _after_init(3))
    assert all(torch.equal(out[k][0], init[k]) for k in init)


def _after_init(seed: int) -> torch.Generator:
    g = torch.Generator().manual_seed(seed)
    N.init_params(SPEC, "shared", g), N.init_params(SPEC, "large", g)
    return g


def _write_idx(path, arr: np.ndarray) -> None:
    code = {np.dtype(np.uint8): 0x08}[arr.dtype]
    dims = b"".join(int(d).to_bytes(4, "big") for d in arr.shape)
    path.write_bytes(bytes([0, 0, code, arr.ndim]) + dims + arr.tobytes())


def test_cli_end_to_end_on_any_idx_directory(tmp_path):
    """make-pairs -> train -> eval through the CLI on a tiny MNIST-format directory (8x8, 3 classes)."""
    from typer.testing import CliRunner

    from kdforge.methods.translation.cli import app

    rng = np.random.default_rng(0)
    for split, n in (("train", 240), ("t10k", 60)):
        y = rng.integers(0, 3, n).astype(np.uint8)
        x = rng.integers(0, 60, (n, 8, 8)).astype(np.uint8)
        for i, c in enumerate(y):  # class c = a bright band in rows 2c..2c+2
            x[i, 2 * c : 2 * c + 3] += 180
        _write_idx(tmp_path / f"{split}-images-idx3-ubyte", x)
        _write_idx(tmp_path / f"{split}-labels-idx1-ubyte", y)
    run = CliRunner().invoke
    pairs, ckpt = tmp_path / "pairs", tmp_path / "t.safetensors"
    r = run(
        app,
        [
            "make-pairs",
            "--out",
            str(pairs),
            "--data-dir",
            str(tmp_path),
            "--shards",
            "0:3",
            "--shard-size",
            "2",
        ]
        + ["--subset", "0", "--epochs-large", "4", "--epochs-small", "4", "--lr", "0.1"],
    )
    assert r.exit_code == 0, r.output
    manifest = json.loads((pairs / "manifest.json").read_text())
    assert manifest["dataset"] == f"idx:{tmp_path}" and manifest["spec"]["num_classes"] == 3
    assert manifest["spec"]["image_size"] == 8
    train = ["train", "--pairs", str(pairs), "--out", str(ckpt), "--epochs", "2", "--dim", "8"]
    r = run(app, [*train, "--hidden-perm"])  # the README's command
    assert r.exit_code == 0, r.output
    r = run(app, ["eval", "--pairs", str(pairs), "--translator", str(ckpt)])  # IDX dir from the manifest
    assert r.exit_code == 0, r.output
    scores = json.loads(r.output.strip().splitlines()[-1])
    assert set(scores) == {"translated", "random_init", "trained", "large"}
    assert scores["large"] > 0.5  # 3 classes: chance is 1/3


def test_full_pairs_and_large_only_networks_mix_for_the_functional_objective(pair_dir, digits, cfg, tmp_path):
    """Large-only networks (epochs_small=0) join full pairs for the functional objective; MSE refuses."""
    lo_cfg = PairConfig(
        "digits", SPEC, Schedule(**{**cfg.schedule.__dict__, "epochs_small": 0}), seed=1, shard_size=2
    )
    make_pairs(tmp_path / "lo", lo_cfg, range(0, 1), digits, progress=False)
    full, lo = load_pairs(pair_dir), load_pairs(tmp_path / "lo")
    assert bool(full[0]["has_small"].all()) and not bool(lo[0]["has_small"].any())
    tr, va, _ = split_networks(full[0], val_frac=0.2, test_frac=0.3)
    mixed = merge_pair_sets((tr, full[1]), (lo[0], lo[1]))
    assert mixed["has_small"].tolist() == [True] * len(tr["seed"]) + [False, False]
    lo[0]["acc_small"][:] = 2.0  # an untrained small block must never become the template
    mixed = merge_pair_sets((tr, full[1]), (lo[0], lo[1]))
    x, y = digits.train.tensors["x"], digits.train.tensors["y"]
    xv, yv = digits.val.tensors["x"], digits.val.tensors["y"]
    small = dict(dim=8, depth=1, epochs=1, batch_size=4, bank=32, img_batch=8)
    with pytest.raises(KdforgeError, match="MSE objective needs small-block targets"):
        train_translator(mixed, va, SPEC, TrainConfig(**small), (x, y), (xv, yv), progress=False)
    with pytest.raises(KdforgeError, match="no training network has a trained small block"):
        fc = TrainConfig(**small, mse_weight=0.0, func_weight=1.0, template=True)
        train_translator(lo[0], va, SPEC, fc, (x, y), (xv, yv), progress=False)
    fc = TrainConfig(**small, mse_weight=0.0, func_weight=1.0, template=True)
    tt, _ = train_translator(mixed, va, SPEC, fc, (x, y), (xv, yv), progress=False)
    assert torch.equal(tt.norm["base"], tokenize_norm(tr, tt, tr["acc_small"].argmax()))
    other = (lo[0], {**lo[1], "spec": {**lo[1]["spec"], "bottleneck": 2}})
    with pytest.raises(KdforgeError, match="pair sets differ in spec"):
        merge_pair_sets((tr, full[1]), other)


def test_channel_alignment_keeps_every_network_function(pair_dir, digits):
    """Aligned networks compute the same (large and small); the reference keeps its own order."""
    from kdforge.methods.translation import grouped as G
    from kdforge.methods.translation.align import align_channels, best_permutations, channel_features

    p, _ = load_pairs(pair_dir)
    ref = {k: v[:1] for k, v in p.items()}
    assert best_permutations(ref, channel_features(ref)[0]).tolist() == [list(range(SPEC.channels))]
    shuffled = {k: v.flip(0) for k, v in p.items()}  # the reference is now last: a real search
    a = align_channels(shuffled, ref)
    assert torch.equal(a["large.conv1"][-1], p["large.conv1"][0])
    x, y = digits.test.tensors["x"][:200], digits.test.tensors["y"][:200]
    for net in (shuffled, a):
        net["_stats"] = {k[6:]: v for k, v in net.items() if k.startswith("stats.")}
    for middle in ("large", "small"):
        before = G.accuracy(shuffled, shuffled["_stats"], x, y, middle)
        assert torch.equal(G.accuracy(a, a["_stats"], x, y, middle), before)


def test_feature_bank_is_the_same_for_any_chunking(pair_dir, digits):
    """The bank is filled in place chunk by chunk; ragged chunks must land in the right slots."""
    from kdforge.methods.translation import grouped as G
    from kdforge.methods.translation.train import feature_bank

    p, _ = load_pairs(pair_dir)
    x = digits.train.tensors["x"][:37]
    feats, logits, folded = feature_bank(p, x)
    f2, l2, _ = feature_bank(p, x, chunk=4, img_chunk=5)  # 6 pairs, 37 images: both ragged
    assert feats.shape == (len(p["seed"]), 37, SPEC.channels, *feats.shape[3:])
    assert torch.allclose(feats, f2, atol=1e-6) and torch.allclose(logits, l2, atol=1e-5)
    stats = {k[6:]: v for k, v in p.items() if k.startswith("stats.")}
    one = {k: v[5:6] for k, v in p.items() if k.startswith(("begin.", "large.", "last."))}
    h = G.begin(one, {k: v[5:6] for k, v in stats.items()}, x, False)  # network 5 alone
    assert torch.allclose(feats[5], h, atol=1e-6)
    assert set(folded) and all(len(v) == len(p["seed"]) for v in folded.values())
