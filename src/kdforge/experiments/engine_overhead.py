"""Per-step overhead of the training engine vs a bare hand-written PyTorch KD loop.

Both do the same Hinton-KD step (student forward, teacher forward under no_grad, KD loss,
backward, AdamW step, LR schedule step) on the same data order. The two loops alternate over
several rounds in one process (the machine is shared and noisy), and the per-step time of a
round is the median over its timed steps (the first :data:`WARMUP` steps are not timed).
"""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
from torch import nn

from kdforge.config import from_dict
from kdforge.data._batches import TensorData, iter_batches
from kdforge.engine.trainer import Trainer
from kdforge.losses.kd import hinton_loss
from kdforge.methods.kd import KD
from kdforge.models import build_model

#: setting -> role -> (model name, kwargs)
SETTINGS: dict[str, dict[str, tuple[str, dict[str, Any]]]] = {
    "mlp_teacher": {"teacher": ("mlp", {"hidden": [512, 256]}), "student": ("mlp", {"hidden": [64]})},
    "cnn_teacher": {
        "teacher": ("cnn", {"channels": [32, 64], "fc": 128}),
        "student": ("mlp", {"hidden": [32]}),
    },
}
WARMUP = 10


def random_images(steps: int, batch_size: int) -> TensorData:
    """``steps`` batches of random 28x28 images with random labels (seed 0)."""
    g = torch.Generator().manual_seed(0)
    n = steps * batch_size
    return TensorData(
        {"x": torch.rand(n, 1, 28, 28, generator=g), "y": torch.randint(0, 10, (n,), generator=g)}
    )


def make_models(setting: str, seed: int) -> tuple[nn.Module, nn.Module]:
    """(student, teacher in eval mode) of a setting, initialised from ``seed``."""
    torch.manual_seed(seed)
    t_name, t_kw = SETTINGS[setting]["teacher"]
    s_name, s_kw = SETTINGS[setting]["student"]
    return build_model(s_name, (1, 28, 28), 10, **s_kw), build_model(t_name, (1, 28, 28), 10, **t_kw).eval()


def bare_loop(data: TensorData, setting: str, steps: int, batch_size: int) -> list[float]:
    """Seconds per timed step of the hand-written loop (batch fetching included)."""
    student, teacher = make_models(setting, 0)
    teacher.requires_grad_(False)
    opt = torch.optim.AdamW(student.parameters(), lr=1e-3)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0)
    times = []
    batches = iter_batches(data, batch_size, seed=0, epoch=0, drop_last=True)
    for _ in range(steps):
        t0 = time.perf_counter()  # a real loop fetches its batch too (the engine's stamps include it)
        batch = next(batches)
        logits = student(batch["x"])
        with torch.no_grad():
            t_logits = teacher(batch["x"])
        ce, kl = hinton_loss(logits, t_logits, batch["y"], 4.0, 0.9)
        opt.zero_grad(set_to_none=True)
        (ce + kl).backward()
        opt.step()
        sched.step()
        times.append(time.perf_counter() - t0)
    return times[WARMUP:]


def engine_loop(data: TensorData, setting: str, steps: int, batch_size: int, run_dir: Path) -> list[float]:
    """Seconds per timed step of the engine's :class:`Trainer` (no evaluation or checkpoint inside)."""
    student, teacher = make_models(setting, 0)
    train = {"epochs": 1, "max_steps": steps, "schedule": "constant", "log_every_steps": 20}
    train.update(eval_every_steps=10**9, checkpoint_every_steps=10**9)
    cfg = from_dict(
        {"name": "bench", "output_dir": str(run_dir), "data": {"batch_size": batch_size},
         "method": {"name": "kd"}, "train": train}
    )  # fmt: skip
    stamps: list[float] = []
    val = TensorData({k: v[:10] for k, v in data.tensors.items()})
    callback = lambda step, _v: stamps.append(time.perf_counter())  # noqa: E731
    trainer = Trainer(
        KD.build(student, teacher, {}, None), data, val, cfg, run_dir, progress=False, callback=callback
    )
    trainer.eval_every = steps + 1  # time training steps only (eval/checkpoint are not per-step costs)
    trainer.ckpt_every = steps + 1
    trainer.fit()
    return [b - a for a, b in zip(stamps[WARMUP - 1 : -1], stamps[WARMUP:], strict=True)]


def measure_setting(
    data: TensorData, setting: str, rounds: int, steps: int, batch_size: int
) -> dict[str, Any]:
    """Median ms/step per round of both loops (alternating which runs first), their ratios and overhead."""
    bare, eng = [], []
    for r in range(rounds):
        with tempfile.TemporaryDirectory() as tmp:
            for engine_first in (False, True) if r % 2 == 0 else (True, False):
                if engine_first:
                    eng.append(
                        statistics.median(engine_loop(data, setting, steps, batch_size, Path(tmp) / str(r)))
                    )
                else:
                    bare.append(statistics.median(bare_loop(data, setting, steps, batch_size)))
    ratios = [e / b for e, b in zip(eng, bare, strict=True)]
    return {
        "bare_ms_per_step": [1000 * x for x in bare],
        "engine_ms_per_step": [1000 * x for x in eng],
        "ratio_per_round": ratios,
        "ratio_median": statistics.median(ratios),
        "overhead_pct": 100 * (statistics.median(ratios) - 1),
    }


def overhead_markdown(res: dict[str, Any]) -> str:
    """The per-setting table, from a results dict alone."""
    batch_size = res["provenance"]["config"]["batch_size"]
    md = [
        "# Engine overhead per KD training step",
        "",
        "Median per-step time over the timed steps, alternating bare/engine rounds in one process. "
        "Target: engine <= 1.05x the bare loop.",
        "",
        "| setting | bare ms/step | engine ms/step | engine / bare (median of rounds) | overhead |",
        "|---|---|---|---|---|",
    ]
    for s, r in res["results"].items():
        md.append(
            f"| {s} ({SETTINGS[s]['teacher'][0]} teacher, {SETTINGS[s]['student'][0]} student, batch "
            f"{batch_size}) | {statistics.median(r['bare_ms_per_step']):.2f} | "
            f"{statistics.median(r['engine_ms_per_step']):.2f} | {r['ratio_median']:.3f} | "
            f"{r['overhead_pct']:+.1f}% |"
        )
    return "\n".join(md)
