"""Mixed precision (fp16 with a GradScaler, bf16) on the CPU: the same updates as float32.

Stated tolerances, about ten units of each dtype's rounding (fp16: 2**-11 ~ 4.9e-4, bf16:
2**-8 ~ 3.9e-3): one SGD step's parameter update ``delta`` on the 8x8 digits MLP matches the
float32 step's with ``|delta - delta_fp32| / |delta_fp32| <= 0.005`` (fp16) and ``<= 0.02``
(bf16). Measured when written: 3.4e-4 and 2.5e-3.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from kdforge.config import from_dict
from kdforge.data._batches import iter_batches
from kdforge.engine.logger import read_metrics
from kdforge.engine.run import build_method, load_splits, run_experiment
from kdforge.engine.trainer import MAX_SKIPPED_IN_A_ROW, Trainer
from kdforge.errors import KdforgeError
from kdforge.methods.supervised import Supervised

from conftest import digits_recipe

TOLERANCE = {"fp16": 0.005, "bf16": 0.02}
DTYPE = {"fp16": torch.float16, "bf16": torch.bfloat16, "no": torch.float32}


def _trainer(tmp_path, precision: str, **train) -> Trainer:
    rec = digits_recipe(
        tmp_path / precision,
        student={"name": "mlp", "kwargs": {"hidden": [64]}},
        train={"optimizer": "sgd", "momentum": 0.0, "lr": 0.5, "mixed_precision": precision, **train},
    )
    cfg = from_dict(rec)
    splits = load_splits(cfg)
    trainer = Trainer(build_method(cfg, splits), splits.train, splits.val, cfg, cfg.run_dir, progress=False)
    if precision == "fp16":  # the loss really is scaled (Accelerate makes no scaler on a CPU by itself)
        assert trainer.acc.scaler is not None and trainer.acc.scaler.get_scale() == 2.0**16
    return trainer


def _batch(trainer: Trainer) -> dict[str, torch.Tensor]:
    return next(iter_batches(trainer.train_data, 64, seed=0))


def _params(trainer: Trainer) -> list[torch.Tensor]:
    return [p.detach().clone() for p in trainer.params]


def _one_step_update(trainer: Trainer) -> torch.Tensor:
    """One training step's flattened parameter change; sets ``trainer.dtype_seen`` (the head's dtype)."""
    dtypes = []
    hook = trainer.method.student.head.register_forward_hook(lambda _m, _i, out: dtypes.append(out.dtype))
    before = _params(trainer)
    trainer._train_step(_batch(trainer))
    hook.remove()
    trainer.dtype_seen = dtypes[0]
    return torch.cat([(p.detach() - b).reshape(-1) for p, b in zip(trainer.params, before, strict=True)])


def _seen_grad_norms(trainer: Trainer) -> list[float]:
    """Record the global gradient norm the optimizer sees at each of its steps."""
    norms: list[float] = []
    inner = trainer.optimizer.optimizer

    def record(_opt, _args, _kwargs):
        norms.append(float(torch.nn.utils.get_total_norm([p.grad for p in trainer.params])))

    inner.register_step_pre_hook(record)
    return norms


@pytest.mark.parametrize("precision", ["fp16", "bf16"])
def test_mixed_precision_step_matches_fp32(tmp_path, precision):
    ref = _one_step_update(_trainer(tmp_path, "no"))
    trainer = _trainer(tmp_path, precision)
    update = _one_step_update(trainer)
    assert trainer.dtype_seen == DTYPE[precision]  # the forward really ran in the low precision
    rel = float((update - ref).norm() / ref.norm())
    assert rel <= TOLERANCE[precision], rel
    assert rel > 0  # and it did differ from float32 a little


@pytest.mark.parametrize("precision", ["no", "fp16", "bf16"])
def test_clipping_acts_on_unscaled_gradients(tmp_path, precision):
    free = _trainer(tmp_path / "free", precision)
    norms = _seen_grad_norms(free)
    free_update = _one_step_update(free)
    true_norm = norms[0]
    assert 0.05 < true_norm < 100  # the real gradient, not 2**16 times it

    # a clip far above the true norm (but far below the scaled one) changes nothing
    loose = _trainer(tmp_path / "loose", precision, grad_clip=true_norm * 100)
    assert torch.allclose(_one_step_update(loose), free_update, rtol=1e-5, atol=1e-7)
    # a clip below it scales the true gradient down to exactly the clip norm
    tight = _trainer(tmp_path / "tight", precision, grad_clip=true_norm / 4)
    seen = _seen_grad_norms(tight)
    tight_update = _one_step_update(tight)
    assert seen[0] == pytest.approx(true_norm / 4, rel=1e-4)
    assert torch.allclose(tight_update, free_update / 4, rtol=1e-3, atol=1e-6)


def _poison_grads(trainer: Trainer, value: float) -> None:
    """Make the next backward pass give non-finite gradients (the loss itself stays finite)."""
    p = trainer.params[0]
    handle = p.register_hook(lambda g: torch.full_like(g, value))
    trainer._poison = handle


@pytest.mark.parametrize("precision", ["no", "fp16", "bf16"])
@pytest.mark.parametrize("value", [float("inf"), float("nan")])
def test_non_finite_gradient_skips_the_step_and_keeps_the_weights(tmp_path, precision, value):
    trainer = _trainer(tmp_path, precision, optimizer="adamw", lr=0.01)
    _poison_grads(trainer, value)
    before = _params(trainer)
    values = trainer._train_step(_batch(trainer))
    assert all(torch.equal(p, b) for p, b in zip(trainer.params, before, strict=True))
    assert trainer.optimizer.state_dict()["state"] == {}  # no moments were updated either
    assert trainer.state.skipped_steps == 1 and values["skipped_steps"] == 1
    assert trainer.state.step == 1 and trainer.scheduler.last_epoch == 0  # the schedule waits too
    if precision == "fp16":
        assert trainer.acc.scaler.get_scale() == 2.0**15  # halved
    trainer._poison.remove()
    trainer._train_step(_batch(trainer))  # the next clean step trains again
    assert not all(torch.equal(p, b) for p, b in zip(trainer.params, before, strict=True))
    assert trainer.state.skipped_steps == 1 and trainer.scheduler.last_epoch == 1


def _inject_inf_at(monkeypatch, calls: set[int]) -> None:
    orig = Supervised.training_step
    count = {"n": 0}

    def poisoned(self, batch):
        out, losses = orig(self, batch)
        if count["n"] in calls:
            out.register_hook(lambda g: torch.full_like(g, float("inf")))
        count["n"] += 1
        return out, losses

    monkeypatch.setattr(Supervised, "training_step", poisoned)


def test_skipped_steps_are_logged_and_summarised(tmp_path, monkeypatch):
    _inject_inf_at(monkeypatch, {3, 7})
    rec = digits_recipe(tmp_path, train={"epochs": 1, "mixed_precision": "fp16", "log_every_steps": 1})
    summary = run_experiment(from_dict(rec), progress=False)
    assert summary["skipped_steps"] == 2
    rows = [r for r in read_metrics(tmp_path / "run") if "loss" in r]
    assert [r["skipped_steps"] for r in rows[:9]] == [0, 0, 0, 1, 1, 1, 1, 2, 2]
    assert [r["loss_scale"] for r in rows[:9]] == [2.0**16] * 3 + [2.0**15] * 4 + [2.0**14] * 2
    meta = json.loads((tmp_path / "run" / "checkpoints" / "last.json").read_text())
    assert meta["grad_scaler"]["scale"] == 2.0**14 and meta["loop"]["skipped_steps"] == 2


def test_gradients_never_finite_stop_with_a_clear_message(tmp_path, monkeypatch):
    _inject_inf_at(monkeypatch, set(range(1000)))
    rec = digits_recipe(tmp_path, train={"epochs": 3, "mixed_precision": "fp16"})
    with pytest.raises(KdforgeError, match=rf"{MAX_SKIPPED_IN_A_ROW} optimizer steps in a row had inf/NaN"):
        run_experiment(from_dict(rec), progress=False)


def test_unknown_precision_is_refused(tmp_path):
    with pytest.raises(KdforgeError, match="(?s)unknown train.mixed_precision 'fp8'.*no, bf16, fp16"):
        run_experiment(from_dict(digits_recipe(tmp_path, train={"mixed_precision": "fp8"})), progress=False)


def test_fp16_run_resumes_to_identical_result(tmp_path, monkeypatch):
    """The GradScaler's scale travels in the checkpoint, so a killed fp16 run resumes exactly."""
    from kdforge.engine.trainer import StopTraining

    _inject_inf_at(monkeypatch, {2})  # halve the scale before the checkpoint at step 8
    over = {"train": {"epochs": 1, "mixed_precision": "fp16", "checkpoint_every_steps": 8}}
    full = run_experiment(from_dict(digits_recipe(tmp_path / "a", **over)), progress=False)

    def kill(step, _values):
        if step == 11:
            raise StopTraining

    _inject_inf_at(monkeypatch, {2})
    cfg = from_dict(digits_recipe(tmp_path / "b", **over))
    with pytest.raises(StopTraining):
        run_experiment(cfg, progress=False, callback=kill)
    _inject_inf_at(monkeypatch, set())
    resumed = run_experiment(cfg, resume=True, progress=False)
    for key in ("steps", "skipped_steps", "val_acc", "val_loss", "test_acc", "test_loss"):
        assert resumed[key] == full[key], key
    # row for row, including the loss scale (2**15 after the skip, restored from the checkpoint)
    strip = [{k: v for k, v in r.items() if k != "time"} for r in read_metrics(tmp_path / "a" / "run")]
    assert strip == [{k: v for k, v in r.items() if k != "time"} for r in read_metrics(cfg.run_dir)]
    assert {r["loss_scale"] for r in strip if "loss_scale" in r} == {2.0**15}


# ---------------------------------------------------------------- scripts/gpu_check.sh
ROOT = Path(__file__).resolve().parents[1]
GPU_CHECK = ROOT / "scripts" / "gpu_check.sh"


def _gpu_check(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHON": sys.executable, "OMP_NUM_THREADS": "1"}
    return subprocess.run([str(GPU_CHECK), *args], capture_output=True, text=True, timeout=300, env=env)


def test_gpu_check_cpu_smoke_run_prints_three_precisions_and_writes_results(tmp_path):
    out = tmp_path / "check.json"
    r = _gpu_check("--device", "cpu", "--quick", "--out", str(out))
    assert r.returncode == 0, r.stderr[-3000:]
    assert "| metric | fp32 | bf16 | fp16 |" in r.stdout and "AGREE: accuracy within 0.02" in r.stdout
    results = json.loads(out.read_text())
    assert (
        results["agree"] and results["device"] == "cpu" and set(results["runs"]) == {"fp32", "bf16", "fp16"}
    )
    assert results["provenance"]["seeds"] == [0] and out.with_suffix(".md").exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--device", "tpu"], "unknown --device 'tpu'"),
        (["--device"], "--device needs a value"),
        ([], "no CUDA GPU is visible"),  # this machine has none
    ],
)
def test_gpu_check_bad_usage_exits_2_with_a_fix(args, message):
    if not args and torch.cuda.is_available():
        pytest.skip("a GPU is visible here")
    r = _gpu_check(*args)
    assert r.returncode == 2 and message in r.stderr and "Traceback" not in r.stderr


def test_gpu_check_flags_a_disagreement():
    from kdforge.experiments import precision_check as check

    ref = {"val_acc": 0.90, "test_acc": 0.90, "val_loss": 0.40}
    runs = {"no": ref, "bf16": {**ref, "test_acc": 0.89}, "fp16": {**ref, "val_loss": 0.42}}
    assert check.compare(runs, acc_tol=0.02, loss_tol=0.01) == [
        "fp16 val_loss 0.4200 vs fp32 0.4000 (tolerance 0.01)"
    ]
    assert len(check.compare(runs, acc_tol=0.005, loss_tol=0.01)) == 2
    assert check.compare({**runs, "fp16": {**ref, "val_loss": float("nan")}}, 0.02, 0.01)  # NaN never agrees
