"""Per-example model outputs on disk: the one store behind the embedding and teacher-output caches.

An entry is a directory::

    manifest.json            format, identity, n, outputs (name -> shape), dtype, shard list, complete
    shard-00000.safetensors  {"row_hash": uint8 [rows, 16], "out.<name>": [rows, ...], ...}
    ...

**Identity.** The manifest records a JSON ``identity``: everything that determines the stored
outputs (the model's weights fingerprint, the module path and pooling read, the dataset and
split, a hash of the inputs, ...). An entry whose identity differs from the caller's is never
read and never overwritten: one :class:`~kdforge.errors.KdforgeError` names the first differing
key and the fix.

**Rows.** ``row_hash`` (a 16-byte BLAKE2b digest of one example's model inputs, labels
excluded) finds the stored row of any example, whatever split or order it comes in.

**Atomic and resumable.** Each shard is written to a temporary file and renamed; the manifest
(rewritten the same way after every shard) lists only finished shards and is marked
``complete`` only once every row is stored, so a killed fill is never read as complete, and
filling again with the same identity continues where it stopped. NaN/inf outputs abort before
their shard is written.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch import Tensor, nn

from kdforge.errors import KdforgeError

Compute = Callable[[dict[str, Tensor]], dict[str, Tensor]]
MANIFEST = "manifest.json"
FORMAT_VERSION = 2  # 1: embedding caches without a model fingerprint (refused: re-extract)
_OUT = "out."

#: how a differing identity key is reported (default: "was built for KEY 'OLD', not 'NEW'")
_PHRASES = {
    "n": "holds {old} examples but the split has {new}",
    "inputs_hash": "was built from other inputs (hash {old:.12} vs {new:.12})",
    "rows_hash": "was built from other examples (hash {old:.12} vs {new:.12})",
    "fingerprint": "was built by a model with other weights (fingerprint {old:.12} vs {new:.12})",
}


def model_fingerprint(model: nn.Module) -> str:
    """A content hash of a model's state: names, shapes, dtypes and values of every tensor."""
    h = hashlib.blake2b(digest_size=16)
    for name, value in model.state_dict().items():
        h.update(f"{name}{tuple(value.shape)}{value.dtype}".encode())
        h.update(value.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def row_hashes(inputs: dict[str, Tensor]) -> Tensor:
    """A 16-byte BLAKE2b digest of each example's inputs (tensors taken in name order): uint8 ``[N, 16]``."""
    arrays = [
        np.ascontiguousarray(inputs[k].cpu().numpy()).reshape(len(inputs[k]), -1) for k in sorted(inputs)
    ]
    n = len(arrays[0]) if arrays else 0
    out = np.empty((n, 16), dtype=np.uint8)
    for i in range(n):
        h = hashlib.blake2b(digest_size=16)
        for a in arrays:
            h.update(a[i].tobytes())
        out[i] = np.frombuffer(h.digest(), dtype=np.uint8)
    return torch.from_numpy(out)


def row_index(stored: Tensor, wanted: Tensor) -> Tensor:
    """Position in ``stored`` of each row hash in ``wanted`` (``-1`` where it is not stored)."""
    index = {bytes(h): i for i, h in enumerate(stored.numpy())}
    return torch.tensor([index.get(bytes(h), -1) for h in wanted.numpy()], dtype=torch.long)


def write_json_atomic(path: Path, obj: Any) -> None:
    """Write JSON to a temporary file, then rename it over ``path``."""
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    tmp.write_text(json.dumps(obj, indent=2) + "\n")
    os.replace(tmp, path)


def read_manifest(path: Path, what: str) -> dict | None:
    """The manifest of the entry at ``path`` (None if there is none)."""
    f = Path(path) / MANIFEST
    if not f.is_file():
        return None
    try:
        return json.loads(f.read_text())
    except json.JSONDecodeError as e:
        raise KdforgeError(
            f"{what} manifest {f} is not valid JSON ({e})", f"delete {path} and fill it again"
        ) from None


def check_identity(path: Path, manifest: dict, identity: dict[str, Any], what: str, fix: str) -> None:
    """Refuse an entry written by an older format or for another identity (first differing key)."""
    if manifest.get("format") != FORMAT_VERSION:
        raise KdforgeError(
            f"{what} {path} was written by an older kdforge (format {manifest.get('format')}, without "
            "the model's weights fingerprint): it cannot be trusted to match",
            f"delete {path} and fill it again",
        )
    stored = manifest.get("identity", {})
    for key, new in identity.items():
        old = stored.get(key)
        if old != new:
            phrase = _PHRASES.get(key, "was built for {key} '{old}', not '{new}'")
            text = phrase.format(key=key, old=str(old), new=str(new))
            raise KdforgeError(f"{what} {path} {text}; nothing was overwritten", fix)


def fill(
    compute: Compute,
    inputs: dict[str, Tensor],
    path: str | Path,
    identity: dict[str, Any],
    *,
    what: str,
    fix: str,
    source: str,
    batch_size: int = 64,
    shard_size: int = 2048,
    dtype: torch.dtype | None = torch.float32,
    progress: bool = True,
    hashes: Tensor | None = None,
) -> Path:
    """Store ``compute(batch)`` for every row of ``inputs`` in the entry at ``path`` (resumable).

    Args:
        compute: batch of inputs -> ``{output name: [B, ...]}`` (row ``i`` must depend on example
            ``i`` only). The store leaves autograd as it is (wrap ``compute`` in ``no_grad`` when it
            needs no gradients); outputs are detached before they are stored.
        inputs: the model inputs of every example (equal-length tensors, no labels).
        identity: everything that determines the outputs (recorded, and checked on reuse).
        what, fix, source: wording of errors (``"embedding cache"``, its fix, ``"model 'm'"``).
        batch_size: rows per ``compute`` call; batches are a fixed function of the rows
            (sequences: sorted by length within a shard, order restored), never of a run.
        shard_size: rows per shard (the unit of resumption).
        dtype: storage dtype of floating outputs (None: as computed).
        hashes: precomputed :func:`row_hashes` of ``inputs``.

    Returns:
        ``path``. A complete entry with the same identity is reused as is.
    """
    path = Path(path)
    n = len(next(iter(inputs.values())))
    m = read_manifest(path, what)
    if m is not None:
        check_identity(path, m, identity, what, fix)
        if m.get("complete"):
            return path
    else:
        if path.exists() and any(path.iterdir()):
            raise KdforgeError(f"{path} exists and is not a {what}", "choose an empty directory")
        path.mkdir(parents=True, exist_ok=True)
        m = {
            "format": FORMAT_VERSION,
            "identity": identity,
            "n": n,
            "shard_size": shard_size,
            "dtype": str(dtype).replace("torch.", "") if dtype is not None else "as computed",
            "outputs": None,
            "shards": [],
            "complete": False,
        }
        write_json_atomic(path / MANIFEST, m)
    shard_size = int(m["shard_size"])
    done = {s["start"] for s in m["shards"]}
    hashes = row_hashes(inputs) if hashes is None else hashes
    starts = [s for s in range(0, n, shard_size) if s not in done]
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=n, initial=n - sum(min(shard_size, n - s) for s in starts), desc=source)
    for start in starts:
        stop = min(start + shard_size, n)
        order = torch.arange(start, stop)
        if "attention_mask" in inputs:  # sequences: little padding per batch
            order = start + torch.argsort(inputs["attention_mask"][start:stop].sum(1), stable=True)
        chunks: dict[str, list[Tensor]] = {}
        for b in range(start, stop, batch_size):
            rows = order[b - start : min(b + batch_size, stop) - start]
            out = compute({k: v[rows] for k, v in inputs.items()})
            for name, value in out.items():
                value = value.detach().cpu()
                if value.is_floating_point() and not torch.isfinite(value).all():
                    bad = (~torch.isfinite(value)).reshape(len(value), -1).any(1).nonzero().flatten()
                    raise KdforgeError(
                        f"{source} produced NaN/inf outputs ('{name}') for examples "
                        f"{rows[bad].tolist()[:5]}; shard not written",
                        "check the model/checkpoint and its inputs (padding-only rows?)",
                    )
                chunks.setdefault(name, []).append(value)
            if bar is not None:
                bar.update(len(rows))
        tensors = {"row_hash": hashes[start:stop].contiguous()}
        shapes = {}
        for name, parts in chunks.items():
            value = torch.cat(parts)
            restored = torch.empty_like(value)
            restored[order - start] = value
            if dtype is not None and restored.is_floating_point():
                restored = restored.to(dtype)
            tensors[_OUT + name] = restored.contiguous()
            shapes[name] = list(restored.shape[1:])
        if m["outputs"] is not None and m["outputs"] != shapes:
            raise KdforgeError(
                f"{source} output shapes changed from {m['outputs']} to {shapes}", f"delete {path}"
            )
        fname = f"shard-{start // shard_size:05d}.safetensors"
        tmp = path / f"{fname}.tmp{os.getpid()}"
        save_file(tensors, str(tmp))
        os.replace(tmp, path / fname)
        m["outputs"] = shapes
        m["shards"] = sorted(
            [*m["shards"], {"file": fname, "start": start, "stop": stop}], key=lambda s: s["start"]
        )
        m["complete"] = sum(s["stop"] - s["start"] for s in m["shards"]) == n
        write_json_atomic(path / MANIFEST, m)
    if bar is not None:
        bar.close()
    return path


def read(path: str | Path, what: str, fix: str) -> tuple[dict[str, Tensor], Tensor, dict]:
    """Outputs (in their stored dtypes), row hashes and manifest of a complete entry.

    Raises:
        KdforgeError: no entry, an older format, an incomplete entry, or missing rows.
    """
    path = Path(path)
    m = read_manifest(path, what)
    if m is None:
        raise KdforgeError(f"no {what} at {path}", fix)
    if m.get("format") != FORMAT_VERSION:
        check_identity(path, m, {}, what, fix)
    if not m.get("complete"):
        raise KdforgeError(f"{what} {path} is incomplete", "run the same command again to finish it")
    parts = [load_file(str(path / s["file"])) for s in m["shards"]]
    outputs = {}
    for name in m["outputs"]:
        outputs[name] = torch.cat([p[_OUT + name] for p in parts])
    hashes = torch.cat([p["row_hash"] for p in parts])
    if len(hashes) != m["n"]:
        raise KdforgeError(f"{path} holds {len(hashes)} rows, its manifest says {m['n']}", f"delete {path}")
    return outputs, hashes, m


__all__ = ["check_identity", "fill", "model_fingerprint", "read", "row_hashes", "row_index"]
