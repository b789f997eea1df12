"""Teacher-embedding cache: run a frozen model over a split once, reuse its embeddings in every run.

Layout of one cache entry (a directory, by default
``$KDFORGE_CACHE/embeddings/<dataset>/<split>/<model>``)::

    manifest.json          dataset, split, model, n, shape, dtype, inputs_hash, shard list, complete
    shard-00000.safetensors  {"emb": [rows, ...], "row_hash": uint8 [rows, 16]}
    ...

``inputs_hash`` is a SHA-256 over every model-input tensor of the split (not the
labels): a cache can only be reused for exactly the inputs it was built from.
``row_hash`` (a 16-byte BLAKE2b digest per example) lets :func:`attach` find the
embedding of any example, whatever split or order it is in (so validation
splits carved with different seeds reuse one extraction).

Extraction is resumable: shards are written atomically one at a time and the
manifest records the finished ones; a killed extraction continues where it
stopped. Nothing is ever overwritten: a cache from another model or dataset, or
for other inputs, is an error; NaN/inf embeddings abort before their shard is
written.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch import Tensor, nn

from kdforge.data._batches import TensorData
from kdforge.errors import KdforgeError

Embedder = Callable[[dict[str, Tensor]], Tensor]
MANIFEST = "manifest.json"
FORMAT_VERSION = 1


def _inputs(data: TensorData) -> dict[str, Tensor]:
    return {k: v for k, v in sorted(data.tensors.items()) if k not in ("y", "teacher_emb")}


def inputs_hash(data: TensorData) -> str:
    """SHA-256 over the model-input tensors of a split (names, shapes, dtypes and bytes)."""
    h = hashlib.sha256()
    for k, v in _inputs(data).items():
        h.update(f"{k}:{tuple(v.shape)}:{v.dtype};".encode())
        h.update(np.ascontiguousarray(v.cpu().numpy()).tobytes())
    return h.hexdigest()


def row_hashes(data: TensorData) -> Tensor:
    """A 16-byte BLAKE2b digest of each example's model inputs: uint8 ``[N, 16]``."""
    arrays = [np.ascontiguousarray(v.cpu().numpy()).reshape(len(v), -1) for v in _inputs(data).values()]
    out = np.empty((len(data), 16), dtype=np.uint8)
    for i in range(len(data)):
        h = hashlib.blake2b(digest_size=16)
        for a in arrays:
            h.update(a[i].tobytes())
        out[i] = np.frombuffer(h.digest(), dtype=np.uint8)
    return torch.from_numpy(out)


def entry_dir(root: str | Path, dataset: str, split: str, model: str) -> Path:
    """Default directory of the cache entry for (dataset, split, model)."""
    safe = [re.sub(r"[^A-Za-z0-9_.=-]+", "_", s) for s in (dataset, split, model)]
    return Path(root) / safe[0] / safe[1] / safe[2]


def _read_manifest(path: Path) -> dict | None:
    f = path / MANIFEST
    if not f.is_file():
        return None
    try:
        return json.loads(f.read_text())
    except json.JSONDecodeError as e:
        raise KdforgeError(f"{f} is not valid JSON ({e})", f"delete {path} and extract again") from None


def _write_manifest(path: Path, manifest: dict) -> None:
    tmp = path / (MANIFEST + ".tmp")
    tmp.write_text(json.dumps(manifest, indent=2) + "\n")
    os.replace(tmp, path / MANIFEST)


def _check_identity(path: Path, m: dict, dataset: str, split: str, model: str, n: int, ihash: str) -> None:
    for key, want in (("dataset", dataset), ("split", split), ("model", model)):
        if m.get(key) != want:
            raise KdforgeError(
                f"embedding cache {path} was built for {key} '{m.get(key)}', not '{want}' "
                f"(it holds {m.get('model')} on {m.get('dataset')}/{m.get('split')}); "
                "nothing was overwritten",
                "point to the cache of this dataset/split/model, or choose a new cache directory",
            )
    if m.get("n") != n:
        raise KdforgeError(
            f"embedding cache {path} holds {m.get('n')} examples but the split has {n}",
            "the data changed since extraction: extract into a new cache directory",
        )
    if m.get("inputs_hash") != ihash:
        raise KdforgeError(
            f"embedding cache {path} was built from other inputs (hash {str(m.get('inputs_hash'))[:12]} "
            f"vs {ihash[:12]}); nothing was overwritten",
            "the data or tokenisation changed: extract into a new cache directory",
        )


def extract(
    embed: Embedder,
    data: TensorData,
    path: str | Path,
    *,
    dataset: str,
    split: str,
    model: str,
    batch_size: int = 64,
    shard_size: int = 2048,
    dtype: torch.dtype = torch.float32,
    progress: bool = True,
) -> Path:
    """Embed every example of ``data`` with ``embed`` (no gradients) into the cache entry at ``path``.

    Args:
        embed: batch (model inputs only) -> embeddings ``[B, ...]`` (pooled ``[B, D]`` or ``[B, T, D]``).
        data: the split; labels ``y`` are never passed to ``embed``.
        path: cache entry directory (see :func:`entry_dir`).
        dataset, split, model: identity recorded in (and checked against) the manifest.
        shard_size: examples per safetensors shard (the unit of resumption).
        dtype: storage dtype (float16 halves token-level caches).

    Returns:
        ``path``. A complete entry for the same identity and inputs is reused as is.

    Raises:
        KdforgeError: the entry belongs to another dataset/split/model or other inputs, or an
            embedding is NaN/inf (the shard is not written).
    """
    path = Path(path)
    n, ihash = len(data), inputs_hash(data)
    m = _read_manifest(path)
    if m is not None:
        _check_identity(path, m, dataset, split, model, n, ihash)
        if m.get("complete"):
            return path
    else:
        if path.exists() and any(path.iterdir()):
            raise KdforgeError(f"{path} exists and is not an embedding cache", "choose an empty directory")
        path.mkdir(parents=True, exist_ok=True)
        m = {"format": FORMAT_VERSION, "dataset": dataset, "split": split, "model": model, "n": n,
             "inputs_hash": ihash, "shard_size": shard_size, "dtype": str(dtype).replace("torch.", ""),
             "shape": None, "shards": [], "complete": False}  # fmt: skip
        _write_manifest(path, m)
    shard_size = int(m["shard_size"])
    done = {s["start"] for s in m["shards"]}
    hashes = row_hashes(data)
    inputs = _inputs(data)
    starts = [s for s in range(0, n, shard_size) if s not in done]
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=n, initial=n - sum(min(shard_size, n - s) for s in starts), desc=f"embed {model}")
    for start in starts:
        stop = min(start + shard_size, n)
        chunks = []
        # sequences: embed in order of length so batches carry little padding (order restored below)
        order = torch.arange(start, stop)
        if "attention_mask" in inputs:
            order = start + torch.argsort(inputs["attention_mask"][start:stop].sum(1), stable=True)
        with torch.no_grad():
            for b in range(start, stop, batch_size):
                rows = order[b - start : min(b + batch_size, stop) - start]
                batch = {k: v[rows] for k, v in inputs.items()}
                e = embed(batch).detach().float().cpu()
                if not torch.isfinite(e).all():
                    bad = (~torch.isfinite(e)).reshape(len(e), -1).any(1).nonzero().flatten()
                    raise KdforgeError(
                        f"model '{model}' produced NaN/inf embeddings for examples "
                        f"{rows[bad].tolist()[:5]} of {dataset}/{split}; shard not written",
                        "check the model/checkpoint and its inputs (padding-only rows?)",
                    )
                chunks.append(e)
                if bar is not None:
                    bar.update(len(e))
        emb = torch.empty_like(torch.cat(chunks))
        emb[order - start] = torch.cat(chunks)
        emb = emb.to(dtype).contiguous()
        shape = list(emb.shape[1:])
        if m["shape"] is not None and m["shape"] != shape:
            raise KdforgeError(f"embedding shape changed from {m['shape']} to {shape}", f"delete {path}")
        fname = f"shard-{start // shard_size:05d}.safetensors"
        save_file({"emb": emb, "row_hash": hashes[start:stop].contiguous()}, str(path / (fname + ".tmp")))
        os.replace(path / (fname + ".tmp"), path / fname)
        m["shape"] = shape
        m["shards"] = sorted(
            [*m["shards"], {"file": fname, "start": start, "stop": stop}], key=lambda s: s["start"]
        )
        m["complete"] = sum(s["stop"] - s["start"] for s in m["shards"]) == n
        _write_manifest(path, m)
    if bar is not None:
        bar.close()
    return path


def load(
    path: str | Path, *, dataset: str | None = None, model: str | None = None
) -> tuple[Tensor, Tensor, dict]:
    """Embeddings, row hashes and manifest of a complete cache entry (float32).

    Raises:
        KdforgeError: missing/incomplete entry, or one built for another dataset/model.
    """
    path = Path(path)
    m = _read_manifest(path)
    if m is None:
        raise KdforgeError(f"no embedding cache at {path}", "run `kdforge embed extract ...` first")
    for key, want in (("dataset", dataset), ("model", model)):
        if want is not None and m.get(key) != want:
            raise KdforgeError(
                f"embedding cache {path} holds {key} '{m.get(key)}', expected '{want}'",
                "point to the cache extracted for this dataset and model",
            )
    if not m.get("complete"):
        raise KdforgeError(
            f"embedding cache {path} is incomplete", "re-run the same extract command to resume"
        )
    parts = [load_file(str(path / s["file"])) for s in m["shards"]]
    emb = torch.cat([p["emb"] for p in parts]).float()
    hashes = torch.cat([p["row_hash"] for p in parts])
    if len(emb) != m["n"]:
        raise KdforgeError(f"{path} holds {len(emb)} rows, manifest says {m['n']}", f"delete {path}")
    return emb, hashes, m


def attach(data: TensorData, emb: Tensor, hashes: Tensor, key: str = "teacher_emb") -> TensorData:
    """A copy of ``data`` with each example's cached embedding added under ``key`` (matched by row hash).

    Raises:
        KdforgeError: some examples of ``data`` are not in the cache.
    """
    index = {bytes(h.tolist()): i for i, h in enumerate(hashes)}
    own = row_hashes(data)
    rows = [index.get(bytes(h.tolist()), -1) for h in own]
    missing = sum(r < 0 for r in rows)
    if missing:
        raise KdforgeError(
            f"{missing} of {len(data)} examples have no cached teacher embedding",
            "extract embeddings for the split these examples come from (e.g. split=all)",
        )
    return TensorData({**data.tensors, key: emb[torch.tensor(rows)]})


def module_embedder(model: nn.Module, path: str | None = None, pool: bool = True) -> Embedder:
    """An :data:`Embedder` from any torch module: its output, or the output of the submodule at ``path``.

    4-D feature maps are global-average-pooled to ``[B, C]`` when ``pool`` is set.
    """
    from kdforge.models.hooks import FeatureHooks

    model.eval()
    hooks = FeatureHooks(model, [path], "teacher") if path else None

    def embed(batch: dict[str, Tensor]) -> Tensor:
        out = model(**batch)
        if hooks is not None:
            out = hooks[path]
            hooks.clear()
        return out.mean((2, 3)) if pool and out.dim() == 4 else out

    return embed


__all__ = ["attach", "entry_dir", "extract", "inputs_hash", "load", "module_embedder", "row_hashes"]


def default_root() -> Path:
    """Root of the embedding caches: ``$KDFORGE_CACHE/embeddings``."""
    from kdforge.io import cache_root

    return cache_root() / "embeddings"


def all_rows(splits) -> TensorData:
    """Train, validation and test rows of a :class:`~kdforge.data.vision.Splits` as one split."""
    parts = [splits.train.tensors, splits.val.tensors, splits.test.tensors]
    return TensorData({k: torch.cat([p[k] for p in parts]) for k in parts[0]})
