"""Train every registered method's tiny recipe in turn, in one process group.

Run plainly (one process) or under ``accelerate launch --num_processes 2`` (CPU, gloo); the
test in ``test_distributed.py`` runs both and compares. One launch for all methods keeps
the suite fast. Usage::

    python tests/distributed_driver.py --work DIR --teachers teachers.json --out result.json

``teachers.json`` maps a teacher name used below (``wide``, ``deep``) to a model config
(name, kwargs, checkpoint). EAsT reads a teacher-embedding cache named ``tiny_mlp`` from
``$KDFORGE_CACHE``. Rank 0 writes ``result.json``: per recipe the final validation/test
metrics, the last logged training loss, a digest of every rank's final trainable state
(equal digests: every process holds the model that is saved), and rank 0's state in
``<work>/<recipe>.safetensors``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from safetensors.torch import save_file

from kdforge.config import from_dict
from kdforge.engine import distributed
from kdforge.engine.logger import read_metrics
from kdforge.engine.run import build_method, load_splits
from kdforge.engine.trainer import Trainer, evaluate

#: recipe name -> overrides of BASE; ``teacher`` names an entry of teachers.json. Every
#: registered method needs one (tests/test_distributed.py fails for a method without).
RECIPES: dict[str, dict[str, Any]] = {
    "supervised": {},
    "kd": {"method": {"name": "kd", "kwargs": {"temperature": 3.0, "alpha": 0.5}}, "teacher": "wide"},
    "fitnet": {
        "method": {"name": "fitnet", "kwargs": {"student_path": "blocks.0", "teacher_path": "blocks.0"}},
        "teacher": "wide",
    },
    "adkd": {"method": {"name": "adkd", "kwargs": {"steps": 2, "top_k": 2}}, "teacher": "wide"},
    "opdf": {
        "method": {"name": "opdf", "kwargs": {"base": "kd", "n": 3, "lambda_align": 0.1}},
        "teacher": "wide",
    },
    "theseus": {
        "student": {"name": "mlp", "kwargs": {"hidden": [16, 16]}},
        "method": {"name": "theseus", "kwargs": {"p0": 0.3}},
        "teacher": "deep",
    },
    "east": {
        "data": {
            "name": "with_teacher_emb",
            "kwargs": {"base": "digits", "model": "tiny_mlp", "split": "all"},
        },
        "method": {"name": "east", "kwargs": {"student_path": "blocks.0", "d": 4}},
    },
}
#: beyond the registry: a batch-norm student, whose running statistics must agree across ranks,
#: and early stopping (evaluations every 2 steps, stop after the first without improvement)
EXTRA_RECIPES: dict[str, dict[str, Any]] = {
    "supervised_batchnorm": {"student": {"name": "cnn", "kwargs": {"channels": [4, 8], "fc": 16}}},
    "supervised_early_stop": {"train": {"epochs": 5, "eval_every_steps": 2, "early_stopping_patience": 1}},
}
BASE: dict[str, Any] = {
    "seed": 0,
    "data": {"name": "digits", "batch_size": 64, "eval_batch_size": 500},
    "student": {"name": "mlp", "kwargs": {"hidden": [16]}},
    "method": {"name": "supervised"},
    "train": {"epochs": 1, "lr": 0.01, "log_every_steps": 1},
}


def recipe(name: str, work: Path, teachers: dict[str, dict]) -> dict[str, Any]:
    """The full recipe dict of ``name`` writing under ``work``."""
    over = {**RECIPES, **EXTRA_RECIPES}[name]
    rec = {k: dict(v) if isinstance(v, dict) else v for k, v in BASE.items()}
    for key, value in over.items():
        rec[key] = teachers[value] if key == "teacher" else {**rec.get(key, {}), **value}
    return {**rec, "name": name, "output_dir": str(work)}


def state_digest(state: dict[str, torch.Tensor]) -> str:
    """Hash of a state dict's names and exact values."""
    h = hashlib.blake2b(digest_size=16)
    for k, v in sorted(state.items()):
        h.update(k.encode())
        h.update(v.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def run_one(name: str, work: Path, teachers: dict[str, dict]) -> dict[str, Any]:
    """Train recipe ``name``; metrics of the final (not the best) model and every rank's digest."""
    cfg = from_dict(recipe(name, work, teachers))
    splits = load_splits(cfg)
    method = build_method(cfg, splits)
    trainer = Trainer(method, splits.train, splits.val, cfg, cfg.run_dir, progress=False)
    state = trainer.fit()
    dev = trainer.acc.device
    val = evaluate(method, splits.val, cfg.data.eval_batch_size, dev)
    test = evaluate(method, splits.test, cfg.data.eval_batch_size, dev)
    final = {k: v.detach().cpu().contiguous() for k, v in method.checkpoint_state().items()}
    mine = {"digest": state_digest(final), "loop": [state.step, state.best_step, state.stopped_early]}
    per_rank = [mine]
    if distributed.world_size() > 1:
        per_rank = [None] * distributed.world_size()
        dist.all_gather_object(per_rank, mine)
    if trainer.acc.is_main_process:
        save_file(final, str(work / f"{name}.safetensors"))
    rows = [r for r in read_metrics(cfg.run_dir) if "loss" in r] if trainer.acc.is_main_process else []
    return {
        "processes": trainer.world,
        "steps": state.step,
        "skipped_steps": state.skipped_steps,
        "val_loss": val["loss"],
        "val_acc": val["acc"],
        "test_acc": test["acc"],
        "last_train_loss": rows[-1]["loss"] if rows else None,
        "stopped_early": state.stopped_early,
        "digests": [r["digest"] for r in per_rank],
        "loops": [r["loop"] for r in per_rank],
    }


def uneven_gradients() -> dict[str, Any]:
    """Gradients present on some ranks only: all take part, averaged with zeros, none stays None."""
    rank = dist.get_rank() if distributed.world_size() > 1 else 0
    used_by_all, used_by_rank1, unused = (torch.nn.Parameter(torch.zeros(3)) for _ in range(3))
    used_by_all.grad = torch.full((3,), float(rank + 1))
    if rank == 1:
        used_by_rank1.grad = torch.full((3,), 4.0)
    buffer = torch.full((2,), float(rank))
    losses = distributed.average_step(
        [used_by_all, used_by_rank1, unused], [buffer], torch.tensor([rank * 2.0])
    )
    return {
        "used_by_all": used_by_all.grad.tolist(),
        "used_by_rank1": None if used_by_rank1.grad is None else used_by_rank1.grad.tolist(),
        "unused": None if unused.grad is None else unused.grad.tolist(),
        "buffer": buffer.tolist(),
        "loss": losses.tolist(),
    }


def broadcasts() -> dict[str, Any]:
    """Rank 0's values and tensors, seen from every rank (rank 0's own list)."""
    rank = dist.get_rank() if distributed.world_size() > 1 else 0
    tensors = [torch.full((2,), float(rank)), torch.tensor([rank], dtype=torch.int64)]
    distributed.broadcast_tensors(tensors)
    seen = {
        "values": distributed.broadcast_values([rank, 0.5], torch.device("cpu")),
        "tensors": tensors[0].tolist(),
    }
    seen["int_tensor"] = tensors[1].tolist()
    gathered = [seen]
    if distributed.world_size() > 1:
        gathered = [None] * distributed.world_size()
        dist.all_gather_object(gathered, seen)
    return {"per_rank": gathered}


def main() -> None:
    """Parse arguments, run every recipe, write the results (rank 0)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, required=True)
    parser.add_argument("--teachers", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    torch.set_num_threads(1)
    teachers = json.loads(args.teachers.read_text())
    args.work.mkdir(parents=True, exist_ok=True)
    results = {name: run_one(name, args.work, teachers) for name in [*RECIPES, *EXTRA_RECIPES]}
    results["_uneven_gradients"] = uneven_gradients()
    results["_broadcasts"] = broadcasts()
    if distributed.world_size() == 1 or dist.get_rank() == 0:
        args.out.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
