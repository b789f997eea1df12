"""Crash-safe checkpoints: tensors in safetensors, everything else in a small JSON.

Layout inside ``<run_dir>/checkpoints/``::

    step-00000120.safetensors   model (non-teacher) + optimizer tensors
    last.json                   pointer to the newest tensor file + optimizer/scheduler/loop state
    prev.json                   the pointer ``last.json`` held before (the checkpoint before)
    best.json                   the same for the best validation score

Write order makes every crash point safe: the tensor file is written to a
temporary name, flushed and renamed; only then is the JSON pointer replaced
(again temp + rename), after the old ``last`` pointer became ``prev``; tensor
files no pointer references are deleted last. An interrupted write therefore
leaves the previous checkpoint intact, and a newest checkpoint damaged later
(its pointer records the tensor file's SHA-256) falls back to the one before.

RNG state is not stored: the engine re-seeds the generator from (seed, step,
rank) at every step, so it is a pure function of the step counter.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import sys
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from kdforge.errors import KdforgeError
from kdforge.io import atomic_write


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _atomic_write_bytes(path: Path, writer) -> str:
    """Write through ``writer(tmp)`` atomically (:func:`kdforge.io.atomic_write`); return its SHA-256."""
    fix = "free disk space or choose a writable output_dir; the previous checkpoint is intact"
    atomic_write(path, writer, "checkpoint", fix)
    return _sha256(path)


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
    """Write one tensor file and point each tag (``last``, ``best``) at it.

    When ``last`` moves to a new step, the pointer it replaces is kept as ``prev``
    (with its tensor file) until the next ``last`` is complete.
    """
    ckpt_dir.mkdir(parents=True, exist_ok=True)
    opt_tensors, opt_rest = split_optimizer_state(optimizer_state)
    tensors = {f"model.{k}": v.detach().cpu().contiguous() for k, v in model_state.items()}
    tensors.update(opt_tensors)
    fname = f"step-{step:08d}.safetensors"
    digest = _atomic_write_bytes(ckpt_dir / fname, lambda p: save_file(tensors, str(p)))
    record = dict(meta, file=fname, sha256=digest, step=step, optimizer=opt_rest)
    payload = json.dumps(record, indent=1, default=str).encode()
    last = ckpt_dir / "last.json"
    if "last" in tags and last.is_file():
        old = last.read_bytes()
        with contextlib.suppress(ValueError, KeyError, TypeError):
            if json.loads(old)["file"] != fname:
                _atomic_write_bytes(ckpt_dir / "prev.json", lambda p, b=old: p.write_bytes(b))
    for tag in tags:
        _atomic_write_bytes(ckpt_dir / f"{tag}.json", lambda p, b=payload: p.write_bytes(b))
    _prune(ckpt_dir)


def _prune(ckpt_dir: Path) -> None:
    keep = set()
    for tag in ("last", "prev", "best"):
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


class DamagedCheckpoint(Exception):
    """A checkpoint pointer or its tensor file cannot be read back intact."""

    def __init__(self, path: Path, reason: str) -> None:
        super().__init__(f"'{path}' ({reason})")
        self.path, self.reason = path, reason


def _read(ckpt_dir: Path, tag: str) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    pointer = ckpt_dir / f"{tag}.json"
    try:
        meta = json.loads(pointer.read_text())
        tensor_file = ckpt_dir / meta["file"]
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise DamagedCheckpoint(pointer, f"{type(e).__name__}: {e}") from None
    try:
        expected = meta.get("sha256")  # absent in checkpoints of earlier versions
        if expected is not None and _sha256(tensor_file) != expected:
            raise DamagedCheckpoint(
                tensor_file, "its SHA-256 differs from the one recorded when it was written"
            )
        tensors = load_file(str(tensor_file))
    except (OSError, SafetensorError) as e:
        raise DamagedCheckpoint(tensor_file, f"{type(e).__name__}: {e}") from None
    return tensors, meta


def load_checkpoint(ckpt_dir: Path, tag: str = "last", note=None) -> tuple[dict, dict, dict[str, Any]]:
    """Read a checkpoint: ``(model_state, optimizer_state, meta)``.

    A damaged ``last`` checkpoint falls back to ``prev`` (the one written before it):
    ``note`` (default: print to stderr) names the damaged file, and ``last.json`` is
    pointed at ``prev``'s checkpoint (the damaged tensor file is left until the next save).

    Raises:
        KdforgeError: when the checkpoint is missing, or it and its fallback are damaged.
    """
    pointer = ckpt_dir / f"{tag}.json"
    if not pointer.is_file():
        raise KdforgeError(f"no '{tag}' checkpoint in '{ckpt_dir}'", "run without --resume to start fresh")
    try:
        tensors, meta = _read(ckpt_dir, tag)
    except DamagedCheckpoint as damaged:
        if tag != "last" or not (ckpt_dir / "prev.json").is_file():
            raise _unreadable(pointer, damaged) from None
        try:
            tensors, meta = _read(ckpt_dir, "prev")
        except DamagedCheckpoint:
            raise _unreadable(pointer, damaged) from None
        # `last` now names the checkpoint resumed from, so the next save keeps *it* as `prev`.
        good = (ckpt_dir / "prev.json").read_bytes()
        _atomic_write_bytes(pointer, lambda p: p.write_bytes(good))
        (note or _stderr)(
            f"note: the newest checkpoint is damaged: {damaged}; resuming from the one "
            f"before it (step {meta['step']}, '{ckpt_dir / 'prev.json'}', now also last.json)"
        )
    model = {k[len("model.") :]: v for k, v in tensors.items() if k.startswith("model.")}
    optim = merge_optimizer_state(tensors, meta.pop("optimizer"))
    return model, optim, meta


def _stderr(message: str) -> None:
    print(message, file=sys.stderr)


def _unreadable(pointer: Path, damaged: DamagedCheckpoint) -> KdforgeError:
    return KdforgeError(
        f"checkpoint '{pointer}' is unreadable or corrupt: {damaged}",
        "delete the run directory's checkpoints/ to start fresh, or restore them from a backup",
    )
