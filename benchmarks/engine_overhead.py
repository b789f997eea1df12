"""Per-step overhead of kdforge's training engine vs a bare hand-written PyTorch KD loop.

Both do the same Hinton-KD step (student forward, teacher forward under no_grad,
KD loss, backward, AdamW step, LR schedule step) on the same data order. The two
loops alternate over several rounds in one process (the machine is shared and
noisy), and the per-step time is the median over the timed steps of each round.

Run: ``python benchmarks/engine_overhead.py [--rounds 5 --steps 150]``
Writes ``benchmarks/results/engine_overhead.{json,md}``.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch

from kdforge.config import from_dict
from kdforge.data._batches import TensorData, iter_batches
from kdforge.engine.trainer import Trainer
from kdforge.losses.kd import hinton_loss
from kdforge.methods.kd import KD
from kdforge.models import build_model
from kdforge.report.provenance import provenance, write_results

SETTINGS = {
    "mlp_teacher": {"teacher": ("mlp", {"hidden": [512, 256]}), "student": ("mlp", {"hidden": [64]})},
    "cnn_teacher": {
        "teacher": ("cnn", {"channels": [32, 64], "fc": 128}),
        "student": ("mlp", {"hidden": [32]}),
    },
}
WARMUP = 10


def make_models(setting, seed):
    torch.manual_seed(seed)
    t_name, t_kw = SETTINGS[setting]["teacher"]
    s_name, s_kw = SETTINGS[setting]["student"]
    return build_model(s_name, (1, 28, 28), 10, **s_kw), build_model(t_name, (1, 28, 28), 10, **t_kw).eval()


def bare_loop(data, setting, steps, batch_size):
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


def engine_loop(data, setting, steps, batch_size, run_dir):
    student, teacher = make_models(setting, 0)
    cfg = from_dict(
        {
            "name": "bench",
            "output_dir": str(run_dir),
            "data": {"batch_size": batch_size},
            "method": {"name": "kd"},
            "train": {
                "epochs": 1,
                "max_steps": steps,
                "schedule": "constant",
                "eval_every_steps": 10**9,
                "checkpoint_every_steps": 10**9,
                "log_every_steps": 20,
            },
        }
    )
    method = KD.build(student, teacher, {}, None)
    stamps = []
    trainer = Trainer(
        method,
        data,
        TensorData({k: v[:10] for k, v in data.tensors.items()}),
        cfg,
        run_dir,
        progress=False,
        callback=lambda step, _v: stamps.append(time.perf_counter()),
    )
    trainer.eval_every = steps + 1  # time training steps only (eval/checkpoint are not per-step costs)
    trainer.ckpt_every = steps + 1
    trainer.fit()
    return [b - a for a, b in zip(stamps[WARMUP - 1 : -1], stamps[WARMUP:], strict=True)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--steps", type=int, default=150)
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--out", default="benchmarks/results/engine_overhead.json")
    args = ap.parse_args()
    g = torch.Generator().manual_seed(0)
    n = args.steps * args.batch_size
    data = TensorData(
        {"x": torch.rand(n, 1, 28, 28, generator=g), "y": torch.randint(0, 10, (n,), generator=g)}
    )
    results = {}
    for setting in SETTINGS:
        bare, eng = [], []
        for r in range(args.rounds):
            with tempfile.TemporaryDirectory() as tmp:
                order = (bare_loop, engine_loop) if r % 2 == 0 else (engine_loop, bare_loop)
                for fn in order:
                    if fn is bare_loop:
                        bare.append(statistics.median(bare_loop(data, setting, args.steps, args.batch_size)))
                    else:
                        eng.append(
                            statistics.median(
                                engine_loop(data, setting, args.steps, args.batch_size, Path(tmp) / str(r))
                            )
                        )
        ratios = [e / b for e, b in zip(eng, bare, strict=True)]
        results[setting] = {
            "bare_ms_per_step": [1000 * x for x in bare],
            "engine_ms_per_step": [1000 * x for x in eng],
            "ratio_per_round": ratios,
            "ratio_median": statistics.median(ratios),
            "overhead_pct": 100 * (statistics.median(ratios) - 1),
        }
        print(setting, f"engine/bare = {statistics.median(ratios):.3f}")
    md = [
        "# Engine overhead per KD training step",
        "",
        "Median per-step time over the timed steps, alternating bare/engine rounds in one process. "
        "Target: engine <= 1.05x the bare loop.",
        "",
        "| setting | bare ms/step | engine ms/step | engine / bare (median of rounds) | overhead |",
        "|---|---|---|---|---|",
    ]
    for s, r in results.items():
        md.append(
            f"| {s} ({SETTINGS[s]['teacher'][0]} teacher, {SETTINGS[s]['student'][0]} student, batch "
            f"{args.batch_size}) | {statistics.median(r['bare_ms_per_step']):.2f} | "
            f"{statistics.median(r['engine_ms_per_step']):.2f} | {r['ratio_median']:.3f} | "
            f"{r['overhead_pct']:+.1f}% |"
        )
    write_results(args.out, {"results": results, "provenance": provenance(vars(args), [0])}, "\n".join(md))


if __name__ == "__main__":
    main()
