"""Crash-safe checkpoints: tensors in safetensors, everything else in a small JSON.

Layout inside ``<run_dir>/checkpoints/``::

    step-00000120.safetensors   model (non-teacher) + optimizer tensors
    last.json                   pointer to the newest tensor file + optimizer/scheduler/loop state
    best.json                   the same for the best validation score

Write order makes every crash point safe: the tensor file is written to a
temporary name, flushed and renamed; only then is the JSON pointer replaced
(again temp + rename); tensor files no pointer references are deleted last.
An interrupted write therefore leaves the previous checkpoint intact.

RNG state is not stored: the engine re-seeds the generator from (seed, step,
rank) at every step, so it is a pure function of the step counter.
"""

from __future__ import annotations

import contextlib
import json
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from kdforge.errors import KdforgeError
from kdforge.io import atomic_write


def _atomic_write_bytes(path: Path, writer) -> None:
    fix = "free disk space or choose a writable output_dir; the previous checkpoint is intact"
    atomic_write(path, writer, "checkpoint", fix)


def split_optimizer_state(state: dict[str, Any]) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Split an optimizer ``state_dict`` into its tensors and a JSON-able remainder."""
    tensors: dict[str, torch.Tensor] = {}
    rest: dict[str, Any] = {"param_groups": state["param_groups"], "state": {}}
    for idx, entry in state["state"].items():
        rest["state"][str(idx)] = {}
        for name, value in entry.items():
            if torch.is_tensor(value):
                tensors[f"optim.{idx}.{name}"] = value.detach().cpu().contiguous()
            else:
                rest["state"][str(idx)][name] = value
    return tensors, rest


def merge_optimizer_state(tensors: dict[str, torch.Tensor], rest: dict[str, Any]) -> dict[str, Any]:
    """Inverse of :func:`split_optimizer_state`."""
    state: dict[int, dict[str, Any]] = {int(i): dict(v) for i, v in rest["state"].items()}
    for key, value in tensors.items():
        if key.startswith("optim."):
            _, idx, name = key.split(".", 2)
            state.setdefault(int(idx), {})[name] = value
    return {"state": state, "param_groups": rest["param_groups"]}


def save_checkpoint(
    ckpt_dir: Path,
    tags: list[str],
    step: int,
    model_state: dict[str, torch.Tensor],
    optimizer_state: dict[str, Any],
    meta: dict[str, Any],
) -> None:
    """Write one tensor file and point each tag (``last``, ``best``) at it."""
    ckpt_dir.mkdir(parents=True, exist_ok=True)
    opt_tensors, opt_rest = split_optimizer_state(optimizer_state)
    tensors = {f"model.{k}": v.detach().cpu().contiguous() for k, v in model_state.items()}
    tensors.update(opt_tensors)
    fname = f"step-{step:08d}.safetensors"
    _atomic_write_bytes(ckpt_dir / fname, lambda p: save_file(tensors, str(p)))
    record = dict(meta, file=fname, step=step, optimizer=opt_rest)
    payload = json.dumps(record, indent=1, default=str).encode()
    for tag in tags:
        _atomic_write_bytes(ckpt_dir / f"{tag}.json", lambda p, b=payload: p.write_bytes(b))
    _prune(ckpt_dir)


def _prune(ckpt_dir: Path) -> None:
    keep = set()
    for tag in ("last", "best"):
        p = ckpt_dir / f"{tag}.json"
        if p.exists():
            with contextlib.suppress(OSError, ValueError):
                keep.add(json.loads(p.read_text())["file"])
    for f in ckpt_dir.glob("step-*.safetensors"):
        if f.name not in keep:
            with contextlib.suppress(OSError):
                f.unlink()


def has_checkpoint(ckpt_dir: Path, tag: str = "last") -> bool:
    """Whether ``ckpt_dir`` holds a ``tag`` checkpoint."""
    return (ckpt_dir / f"{tag}.json").is_file()


def load_checkpoint(ckpt_dir: Path, tag: str = "last") -> tuple[dict, dict, dict[str, Any]]:
    """Read a checkpoint: ``(model_state, optimizer_state, meta)``.

    Raises:
        KdforgeError: when the checkpoint is missing or corrupt.
    """
    pointer = ckpt_dir / f"{tag}.json"
    if not pointer.is_file():
        raise KdforgeError(f"no '{tag}' checkpoint in '{ckpt_dir}'", "run without --resume to start fresh")
    try:
        meta = json.loads(pointer.read_text())
        tensors = load_file(str(ckpt_dir / meta["file"]))
    except (OSError, ValueError, KeyError, SafetensorError) as e:
        raise KdforgeError(
            f"checkpoint '{pointer}' is unreadable or corrupt ({type(e).__name__}: {e})",
            "delete the run directory's checkpoints/ to start fresh, or restore them from a backup",
        ) from None
    model = {k[len("model.") :]: v for k, v in tensors.items() if k.startswith("model.")}
    optim = merge_optimizer_state(tensors, meta.pop("optimizer"))
    return model, optim, meta
