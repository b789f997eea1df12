"""Teacher-embedding cache: run a frozen model over a split once, reuse its embeddings in every run.

One cache entry is a directory (by default ``$KDFORGE_CACHE/embeddings/<dataset>/<split>/<model>``)
in the format of :mod:`kdforge.data.output_store` (manifest + safetensors shards holding the
embedding ``emb`` and a ``row_hash`` per example).

An entry is keyed by its identity: dataset, split and name, the **weights fingerprint** of the
model that computed it, the module **path** read and the **pooling**, the number of examples and
``inputs_hash`` (a SHA-256 over every model-input tensor of the split, labels excluded). Extracting
again under the same name with a retrained teacher, another path or pooling is one clear error,
never the old embeddings (:func:`module_embedder` carries that identity; a plain function as
embedder carries none, so give it a unique name). ``row_hash`` lets :func:`attach` find the
embedding of any example, whatever split or order it is in (so validation splits carved with
different seeds reuse one extraction).

Extraction is resumable: shards are written atomically one at a time and the manifest records
the finished ones; a killed extraction continues where it stopped. Nothing is ever overwritten;
NaN/inf embeddings abort before their shard is written.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from kdforge.data import output_store
from kdforge.data._batches import TensorData
from kdforge.errors import KdforgeError

Embedder = Callable[[dict[str, Tensor]], Tensor]
WHAT = "embedding cache"
FIX = "extract under another --name or into a new cache directory (or delete the old entry and extract again)"


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
    return output_store.row_hashes(_inputs(data))


def entry_dir(root: str | Path, dataset: str, split: str, model: str) -> Path:
    """Default directory of the cache entry for (dataset, split, model)."""
    safe = [re.sub(r"[^A-Za-z0-9_.=-]+", "_", s) for s in (dataset, split, model)]
    return Path(root) / safe[0] / safe[1] / safe[2]


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
        embed: batch (model inputs only) -> embeddings ``[B, ...]`` (pooled ``[B, D]`` or
            ``[B, T, D]``); an ``identity`` attribute (see :func:`module_embedder`: weights
            fingerprint, path, pooling) joins the entry's key.
        data: the split; labels ``y`` are never passed to ``embed``.
        path: cache entry directory (see :func:`entry_dir`).
        dataset, split, model: identity recorded in (and checked against) the manifest.
        shard_size: examples per safetensors shard (the unit of resumption).
        dtype: storage dtype (float16 halves token-level caches).

    Returns:
        ``path``. A complete entry for the same identity and inputs is reused as is.

    Raises:
        KdforgeError: the entry belongs to another dataset/split/model, model weights, path,
            pooling or other inputs, or an embedding is NaN/inf (the shard is not written).
    """
    identity: dict[str, Any] = {"dataset": dataset, "split": split, "model": model}
    identity.update(getattr(embed, "identity", {}))
    identity.update({"n": len(data), "inputs_hash": inputs_hash(data)})

    @torch.no_grad()
    def compute(batch: dict[str, Tensor]) -> dict[str, Tensor]:
        return {"emb": embed(batch).float()}

    return output_store.fill(
        compute,
        _inputs(data),
        path,
        identity,
        what=WHAT,
        fix=FIX,
        source=f"model '{model}' embedding {dataset}/{split}",
        batch_size=batch_size,
        shard_size=shard_size,
        dtype=dtype,
        progress=progress,
    )


def load(
    path: str | Path, *, dataset: str | None = None, model: str | None = None
) -> tuple[Tensor, Tensor, dict]:
    """Embeddings, row hashes and manifest of a complete cache entry (float32).

    Raises:
        KdforgeError: missing/incomplete entry, or one built for another dataset/model.
    """
    path = Path(path)
    m = output_store.read_manifest(path, WHAT)
    if m is None:
        raise KdforgeError(f"no embedding cache at {path}", "run `kdforge embed extract ...` first")
    identity = m.get("identity", {})
    for key, want in (("dataset", dataset), ("model", model)):
        if want is not None and identity.get(key) != want:
            raise KdforgeError(
                f"embedding cache {path} holds {key} '{identity.get(key)}', expected '{want}'",
                "point to the cache extracted for this dataset and model",
            )
    outputs, hashes, m = output_store.read(path, WHAT, "run `kdforge embed extract ...` first")
    return outputs["emb"].float(), hashes, m


def attach(data: TensorData, emb: Tensor, hashes: Tensor, key: str = "teacher_emb") -> TensorData:
    """A copy of ``data`` with each example's cached embedding added under ``key`` (matched by row hash).

    Raises:
        KdforgeError: some examples of ``data`` are not in the cache.
    """
    rows = output_store.row_index(hashes, row_hashes(data))
    missing = int((rows < 0).sum())
    if missing:
        raise KdforgeError(
            f"{missing} of {len(data)} examples have no cached teacher embedding",
            "extract embeddings for the split these examples come from (e.g. split=all)",
        )
    return TensorData({**data.tensors, key: emb[rows]})


class ModuleEmbedder:
    """An :data:`Embedder` from a torch module: its output, or the output of the submodule at ``path``.

    4-D feature maps are global-average-pooled to ``[B, C]`` when ``pool`` is set. ``identity``
    (weights fingerprint, path, pooling) keys the cache entries it fills.
    """

    def __init__(self, model: nn.Module, path: str | None = None, pool: bool = True) -> None:
        from kdforge.models.hooks import FeatureHooks

        model.eval()
        self.model, self.path, self.pool = model, path, pool
        self.hooks = FeatureHooks(model, [path], "teacher") if path else None

    @property
    def identity(self) -> dict[str, str]:
        """The model's weights fingerprint (as they are now), the path read and the pooling."""
        return {
            "fingerprint": output_store.model_fingerprint(self.model),
            "path": self.path or "",
            "pooling": "mean_hw" if self.pool else "none",
        }

    def __call__(self, batch: dict[str, Tensor]) -> Tensor:
        out = self.model(**batch)
        if self.hooks is not None:
            out = self.hooks[self.path]
            self.hooks.clear()
        return out.mean((2, 3)) if self.pool and out.dim() == 4 else out


def module_embedder(model: nn.Module, path: str | None = None, pool: bool = True) -> ModuleEmbedder:
    """A :class:`ModuleEmbedder` of ``model`` (its output, or the submodule at ``path``)."""
    return ModuleEmbedder(model, path, pool)


__all__ = [
    "ModuleEmbedder",
    "attach",
    "entry_dir",
    "extract",
    "inputs_hash",
    "load",
    "module_embedder",
    "row_hashes",
]


def default_root() -> Path:
    """Root of the embedding caches: ``$KDFORGE_CACHE/embeddings``."""
    from kdforge.io import cache_root

    return cache_root() / "embeddings"


def all_rows(splits) -> TensorData:
    """Train, validation and test rows of a :class:`~kdforge.data.vision.Splits` as one split."""
    parts = [splits.train.tensors, splits.val.tensors, splits.test.tensors]
    return TensorData({k: torch.cat([p[k] for p in parts]) for k in parts[0]})
