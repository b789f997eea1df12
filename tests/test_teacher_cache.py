"""Teacher-output cache: exactness (cached == live, resume in a new process), fill order, refusals."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from _batch_sensitive import BatchSensitiveMLP, register_batch_sensitive
from kdforge.config import from_dict
from kdforge.data import load_dataset
from kdforge.data._batches import TensorData
from kdforge.data.vision import Splits
from kdforge.engine import teacher_cache
from kdforge.engine.run import load_student, run_experiment
from kdforge.engine.teacher_cache import attach_teacher_outputs
from kdforge.engine.trainer import StopTraining
from kdforge.errors import KdforgeError
from kdforge.methods._base import TEACHER_OUTPUT_PREFIX
from kdforge.models.mlp import MLP
from kdforge.registry import METHODS, MODELS, list_methods
from test_registry import BATCH, METHOD_SETUPS, SPLITS

from conftest import digits_recipe

TESTS = Path(__file__).resolve().parent
METRICS = ("steps", "best_step", "val_acc", "val_loss", "test_acc", "test_loss")


@pytest.fixture
def cache_dir(tmp_path, monkeypatch):
    root = tmp_path / "cache"
    monkeypatch.setenv("KDFORGE_CACHE", str(root))
    return root / "teacher_outputs"


def _small_splits(n_train: int = 48, n_val: int = 16) -> Splits:
    tr, va = SPLITS.train.tensors, SPLITS.val.tensors
    return Splits(
        TensorData({k: v[:n_train] for k, v in tr.items()}),
        TensorData({k: v[:n_val] for k, v in va.items()}),
        SPLITS.test,
        SPLITS.num_classes,
        SPLITS.input_shape,
        "digits",
    )


def _strip(batch):
    return {k: v for k, v in batch.items() if not k.startswith(TEACHER_OUTPUT_PREFIX)}


# ----------------------------------------------------------------------------- every method


@pytest.mark.parametrize("name", list_methods())
def test_every_registered_method_reads_cached_outputs_or_is_refused(name, tmp_path):
    torch.manual_seed(0)
    method = METHOD_SETUPS[name]()
    splits = _small_splits()
    if method.teacher is None or not method.teacher_targets(BATCH):
        with pytest.raises(KdforgeError, match="no teacher|reads no per-example teacher outputs") as e:
            attach_teacher_outputs(method, splits, name, root=tmp_path, progress=False)
        assert "teacher_cache: false" in e.value.fix
        return
    train = attach_teacher_outputs(method, splits, name, root=tmp_path, progress=False)
    derived = method.teacher_outputs(BATCH)  # stored plus derived outputs
    assert set(train.tensors) - set(splits.train.tensors) == {TEACHER_OUTPUT_PREFIX + k for k in derived}
    # rows served from the cache were computed in other batches (one fill pass), yet the step is
    # the same as with live teacher outputs, to the bit (the CPU teacher is batch-invariant)
    batch = train.take(torch.tensor([40, 3, 17, 29, 8, 11, 46, 0, 5, 33, 21, 14, 38, 2, 27, 19]))
    torch.manual_seed(1)
    _, cached = method.training_step(batch)
    torch.manual_seed(1)
    _, live = method.training_step(_strip(batch))
    assert cached.keys() == live.keys()
    for key in cached:
        assert torch.equal(cached[key], live[key]), key


# ----------------------------------------------------------------------------- whole runs


@pytest.mark.parametrize("method", [{"name": "kd"}, {"name": "fitnet"}])
def test_cached_and_uncached_runs_end_with_the_same_metrics(tmp_path, cache_dir, digits_teacher, method):
    teacher, _ = digits_teacher
    over = {"method": method, "teacher": teacher, "train": {"epochs": 2}}
    plain = run_experiment(from_dict(digits_recipe(tmp_path / "plain", **over)), progress=False)
    over["train"] = {"epochs": 2, "teacher_cache": True}
    cached = run_experiment(from_dict(digits_recipe(tmp_path / "cached", **over)), progress=False)
    for key in METRICS:
        assert cached[key] == pytest.approx(plain[key], abs=1e-6), key
    (entry,) = cache_dir.glob("digits/*")
    shard = entry / "shard-00000.safetensors"
    before = shard.stat().st_mtime_ns
    again = run_experiment(from_dict(digits_recipe(tmp_path / "again", seed=1, **over)), progress=False)
    assert shard.stat().st_mtime_ns == before  # another seed reuses the entry (same training pool)
    assert again["seed"] == 1 and list(cache_dir.glob("digits/*")) == [entry]


def test_killed_run_resumes_exactly_from_the_cache_in_a_new_process(tmp_path, cache_dir, digits_teacher):
    """Kill mid-epoch, resume in a fresh process: same result as the uninterrupted run.

    The teacher's round-off depends on batch composition, so a per-process memo filled during
    training (the old behaviour) gave the resumed process other teacher outputs.
    """
    register_batch_sensitive()
    teacher = {**digits_teacher[0], "name": "mlp_batch_sensitive"}
    over = {
        "method": {"name": "kd"},
        "teacher": teacher,
        "train": {"epochs": 2, "checkpoint_every_steps": 4, "teacher_cache": True},
    }
    try:
        full = run_experiment(from_dict(digits_recipe(tmp_path / "a", **over)), progress=False)
        cfg = from_dict(digits_recipe(tmp_path / "b", **over))

        def kill(step, _values):
            if step == 23:
                raise StopTraining

        with pytest.raises(StopTraining):
            run_experiment(cfg, progress=False, callback=kill)
    finally:
        MODELS._items.pop("mlp_batch_sensitive", None)
    script = (
        "import json, sys, torch; torch.set_num_threads(1); "
        f"sys.path.insert(0, {str(TESTS)!r}); "
        "from _batch_sensitive import register_batch_sensitive; register_batch_sensitive(); "
        "from kdforge.config import load_recipe; from kdforge.engine.run import run_experiment; "
        f"print(json.dumps(run_experiment(load_recipe({str(cfg.run_dir / 'config.yaml')!r}), "
        "resume=True, progress=False)))"
    )
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env={**os.environ}, check=False
    )
    assert out.returncode == 0, out.stderr[-2000:]
    resumed = json.loads(out.stdout.strip().splitlines()[-1])
    for key in METRICS:
        assert resumed[key] == full[key], key
    a = load_student(tmp_path / "a" / "run" / "student")
    b = load_student(cfg.run_dir / "student")
    assert all(
        torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values(), strict=True)
    )


# ----------------------------------------------------------------------------- fill order and storage


def _batch_sensitive_kd(seed: int = 0):
    torch.manual_seed(seed)
    teacher = BatchSensitiveMLP(64, 10, (32,))
    student = MLP(64, 10, (8,))
    return METHODS.get("kd").build(student, teacher, {}, BATCH)


def test_stored_outputs_do_not_depend_on_split_order_seed_or_batches(tmp_path):
    method = _batch_sensitive_kd()
    x = SPLITS.train.tensors["x"][:64]
    live = method.teacher_forward({"x": x})
    assert not torch.equal(method.teacher_forward({"x": x[:16]}), live[:16])  # the teacher is batch-sensitive
    seed0 = load_dataset("digits", seed=0, subset=None)
    seed1 = load_dataset("digits", seed=1, subset=None)  # another validation carve-out of the same pool
    a = attach_teacher_outputs(method, seed0, "kd", root=tmp_path / "one", progress=False)
    b = attach_teacher_outputs(method, seed1, "kd", root=tmp_path / "one", progress=False)
    assert len(list((tmp_path / "one").glob("digits/*"))) == 1  # one entry for both seeds
    c = attach_teacher_outputs(method, seed1, "kd", root=tmp_path / "two", progress=False)  # a fresh fill
    key = TEACHER_OUTPUT_PREFIX + "logits"
    assert torch.equal(b.tensors[key], c.tensors[key])  # filled from seed 0's or seed 1's order: same bits
    shared = {bytes(r): i for i, r in enumerate(a.tensors["x"].reshape(len(a), -1).numpy())}
    rows = [
        (i, shared[bytes(r)])
        for i, r in enumerate(b.tensors["x"].reshape(len(b), -1).numpy())
        if bytes(r) in shared
    ]
    assert len(rows) > 500  # the two seeds share most training rows
    ib, ia = torch.tensor(rows).T
    assert torch.equal(b.tensors[key][ib], a.tensors[key][ia])


def test_killed_fill_is_never_read_as_complete_and_continues(tmp_path, monkeypatch):
    monkeypatch.setattr(teacher_cache, "SHARD_SIZE", 16)
    monkeypatch.setattr(teacher_cache, "FILL_BATCH_SIZE", 8)
    method = _batch_sensitive_kd()
    splits = _small_splits()
    reference = attach_teacher_outputs(method, splits, "kd", root=tmp_path / "ref", progress=False)
    calls = []
    original = method.teacher.forward

    def dies(x):
        calls.append(len(x))
        if sum(calls) > 2 * teacher_cache.PROBE_SIZE + 32:  # after two shards of the fill
            raise RuntimeError("killed")
        return original(x)

    method.teacher.forward = dies
    with pytest.raises(RuntimeError, match="killed"):
        attach_teacher_outputs(method, splits, "kd", root=tmp_path / "c", progress=False)
    (entry,) = (tmp_path / "c").glob("digits/*")
    manifest = json.loads((entry / "manifest.json").read_text())
    assert not manifest["complete"] and [s["start"] for s in manifest["shards"]] == [0, 16]
    assert not list(entry.glob("*.tmp*"))
    method.teacher.forward = original
    calls.clear()
    method.teacher.register_forward_hook(lambda _m, _args, out: calls.append(len(out)))
    resumed = attach_teacher_outputs(method, splits, "kd", root=tmp_path / "c", progress=False)
    assert sum(calls) == 2 * teacher_cache.PROBE_SIZE + 64 - 32  # only the missing shards ran
    key = TEACHER_OUTPUT_PREFIX + "logits"
    assert torch.equal(resumed.tensors[key], reference.tensors[key])


def test_rescaled_teacher_gets_a_new_entry_never_the_old_outputs(tmp_path):
    method = _batch_sensitive_kd()
    splits = _small_splits()
    key = TEACHER_OUTPUT_PREFIX + "logits"
    old = attach_teacher_outputs(method, splits, "kd", root=tmp_path, progress=False).tensors[key]
    with torch.no_grad():
        method.teacher.head.weight.mul_(3.0)
    new = attach_teacher_outputs(method, splits, "kd", root=tmp_path, progress=False).tensors[key]
    assert len(list(tmp_path.glob("digits/*"))) == 2
    torch.testing.assert_close(new, method.teacher_forward(_strip(splits.train.tensors)), atol=1e-3, rtol=0)
    assert not torch.allclose(new, old, atol=1e-2)


def test_entry_whose_identity_differs_is_refused(tmp_path):
    method = _batch_sensitive_kd()
    splits = _small_splits()
    attach_teacher_outputs(method, splits, "kd", root=tmp_path, progress=False)
    (entry,) = tmp_path.glob("digits/*")
    manifest = json.loads((entry / "manifest.json").read_text())
    manifest["identity"]["fingerprint"] = "0" * 32
    (entry / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(KdforgeError, match="other weights.*nothing was overwritten") as e:
        attach_teacher_outputs(method, splits, "kd", root=tmp_path, progress=False)
    assert "delete" in e.value.fix


def test_random_teacher_outputs_are_refused(tmp_path):
    method = _batch_sensitive_kd()
    original = method.teacher.forward
    method.teacher.forward = lambda x: original(x) + 0.01 * torch.randn(len(x), 10)  # augmentation-like noise
    with pytest.raises(KdforgeError, match="differ between two passes") as e:
        attach_teacher_outputs(method, _small_splits(), "kd", root=tmp_path, progress=False)
    assert "teacher_cache: false" in e.value.fix
    assert not list(tmp_path.glob("digits/*"))


def test_oversized_outputs_are_refused(tmp_path, monkeypatch):
    monkeypatch.setattr(teacher_cache, "MAX_BYTES", 1000)
    with pytest.raises(KdforgeError, match=r"would take .* GiB") as e:
        attach_teacher_outputs(_batch_sensitive_kd(), _small_splits(), "kd", root=tmp_path, progress=False)
    assert "smaller teacher feature" in e.value.fix


def test_recipe_key_refuses_a_method_without_teacher_outputs(tmp_path, cache_dir):
    rec = digits_recipe(tmp_path, train={"teacher_cache": True})
    with pytest.raises(KdforgeError, match="no teacher"):
        run_experiment(from_dict(rec), progress=False)
