"""Teacher-output cache: each training example's teacher outputs, computed once, reused by every run.

A frozen teacher in eval mode maps an example to the same outputs in every epoch, seed, run
and resume, so with ``train.teacher_cache: true`` they are computed once and read from disk.

**What.** :meth:`Method.teacher_targets <kdforge.methods._base.Method.teacher_targets>`: the
teacher's logits (``kd``, ``opdf`` around ``kd``), its feature at ``teacher_path``
(``fitnet``), its logits and Integrated-Gradient attribution maps (``adkd``). A method that
reads no per-example teacher outputs (``supervised``; ``theseus``, whose teacher layers run
inside the student's forward; ``east``, which reads precomputed embeddings) is refused.

**Key.** An entry ``$KDFORGE_CACHE/teacher_outputs/<dataset>/<digest>/`` (the format of
:mod:`kdforge.data.output_store`) is identified by the teacher's weights fingerprint, the
method's :meth:`~kdforge.methods._base.Method.teacher_targets_key` (method, feature path,
attribution settings), the data set and split, and ``rows_hash``: a hash of the set of
examples, each one hashed as the model sees it, so the transform (normalisation, resizing,
tokenisation, padding) is part of the key. The examples are the *training pool*, train and
validation together, which is the same set for every seed when the whole training split is
used (each seed carves another validation split out of it): seeds share one entry. Any
other teacher, path or data gives another digest (a fresh fill, never old outputs); the
manifest's identity is checked on every read.

**Fixed order.** The pool's distinct examples are sorted by row hash and sent through the
teacher in fixed batches of :data:`FILL_BATCH_SIZE`, so every stored row holds the same bits
whichever run, seed or resume filled the entry: results never depend on the composition of
training batches, and a resumed run reads exactly what the uninterrupted one read.

**Lookup.** Before training, the stored rows are gathered into the training split as extra
tensors ``teacher_out:<name>``, matched by row hash once, together with what the method derives
from them alone (:meth:`~kdforge.methods._base.Method.derived_teacher_outputs`: KD's softened
log-probabilities), computed once here rather than every step; the engine's sampler then carries
them in every batch like the labels (so resume and multi-process sharding need nothing
more), and :meth:`~kdforge.methods._base.Method.teacher_outputs` reads them. No per-step
hashing or lookup.

**Refusals.** kdforge's splits are fixed tensors, so the teacher's input is deterministic;
randomness could only enter through a model's forward (an augmentation inside it, a
stochastic teacher). Two passes over a probe batch must agree bit for bit, else the cache is
refused (it would freeze one random draw). Outputs larger than :data:`MAX_BYTES` in memory
are refused too.

**Atomic.** Shards and manifest are written to temporary files and renamed; an entry is
marked complete only after its last shard, so a killed fill is never read as complete (the
next run continues it). Under ``accelerate launch`` the main process fills and the others
wait, then every process reads the entry. Entries are never deleted by kdforge: remove
``$KDFORGE_CACHE/teacher_outputs`` to reclaim the space.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from kdforge.data import output_store
from kdforge.data._batches import TensorData
from kdforge.data.vision import Splits
from kdforge.errors import KdforgeError
from kdforge.methods._base import TEACHER_OUTPUT_PREFIX, Method, model_inputs

FILL_BATCH_SIZE = 128  # examples per teacher forward while filling (fixed: part of the bits stored)
SHARD_SIZE = 8192  # examples per shard (the unit a killed fill resumes from)
MAX_BYTES = 4 * 2**30  # refuse outputs larger than this in memory (and on disk)
PROBE_SIZE = 8  # examples sent twice through the teacher to check determinism
WHAT = "teacher-output cache"
FIX = "delete the entry (a new run fills it again), or set train.teacher_cache: false"


def cache_root() -> Path:
    """Root of the teacher-output caches: ``$KDFORGE_CACHE/teacher_outputs``."""
    return Path(os.environ.get("KDFORGE_CACHE", Path.home() / ".cache" / "kdforge")) / "teacher_outputs"


def _pool_inputs(splits: Splits) -> dict[str, Tensor]:
    """Model inputs of the training pool: train rows, then validation rows."""
    train, val = model_inputs(splits.train.tensors), model_inputs(splits.val.tensors)
    return {k: torch.cat([train[k], val[k]]) for k in train if k in val}


def _distinct_sorted(hashes: Tensor) -> Tensor:
    """Indices of the distinct row hashes, in increasing byte order (the canonical fill order)."""
    keys = [bytes(h) for h in hashes.numpy()]
    first: dict[bytes, int] = {}
    for i, key in enumerate(keys):
        first.setdefault(key, i)
    return torch.tensor([first[key] for key in sorted(first)], dtype=torch.long)


def _check_cacheable(method: Method, probe: dict[str, Tensor], name: str) -> int:
    """Refuse methods without teacher outputs and non-deterministic teachers; bytes per example."""
    first = method.teacher_targets(probe)
    if not first:
        raise KdforgeError(
            f"method '{name}' reads no per-example teacher outputs, so there is nothing to cache",
            "set train.teacher_cache: false (the cache serves methods that define teacher_targets)",
        )
    second = method.teacher_targets(probe)
    if any(not torch.equal(first[k], second[k]) for k in first):
        raise KdforgeError(
            "the teacher's outputs differ between two passes over the same examples (random "
            "augmentation in its forward, or a stochastic teacher): a cache would freeze one random draw",
            "set train.teacher_cache: false for this teacher",
        )
    return sum(v[0].numel() * v.element_size() for v in first.values())


def _check_size(row_bytes: int, n_rows: int) -> None:
    if row_bytes * n_rows > MAX_BYTES:
        raise KdforgeError(
            f"the teacher outputs of {n_rows} examples would take "
            f"{row_bytes * n_rows / 2**30:.1f} GiB (limit {MAX_BYTES / 2**30:.0f} GiB)",
            "read a smaller teacher feature (a pooled or later module), or set train.teacher_cache: false",
        )


def teacher_cache_identity(
    method: Method, splits: Splits, fingerprint: str, pool_hashes: Tensor
) -> dict[str, Any]:
    """The identity (and cache key) of the entry holding ``method``'s teacher outputs on ``splits``."""
    rows = pool_hashes[_distinct_sorted(pool_hashes)]
    return {
        "kind": "teacher_outputs",
        "fingerprint": fingerprint,
        "outputs": method.teacher_targets_key(),
        "dataset": splits.name,
        "split": "train+val",
        "n": len(rows),
        "rows_hash": hashlib.sha256(rows.numpy().tobytes()).hexdigest(),
        "fill_batch_size": FILL_BATCH_SIZE,
    }


def entry_path(root: Path, identity: dict[str, Any]) -> Path:
    """``root/<dataset>/<digest of identity>``: another identity is another directory."""
    digest = hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:20]
    return root / re.sub(r"[^A-Za-z0-9_.=-]+", "_", identity["dataset"] or "data") / digest


def attach_teacher_outputs(
    method: Method,
    splits: Splits,
    method_name: str = "",
    root: str | Path | None = None,
    progress: bool = True,
) -> TensorData:
    """The training split plus each example's cached teacher outputs (``teacher_out:<name>``).

    Fills the cache entry first if it is missing or unfinished (main process only).

    Raises:
        KdforgeError: the method reads no teacher outputs, the teacher is not deterministic,
            the outputs are too large, or the entry on disk has another identity.
    """
    from accelerate import PartialState

    if method.teacher is None:
        raise KdforgeError(
            f"train.teacher_cache is set but method '{method_name}' has no teacher",
            "set train.teacher_cache: false",
        )
    state = PartialState()
    method.to(state.device)
    name = method_name or type(method).__name__
    probe = {k: v[:PROBE_SIZE].to(state.device) for k, v in model_inputs(splits.train.tensors).items()}
    with torch.random.fork_rng(devices=[]):  # the probe and the fill leave the run's RNG untouched
        row_bytes = _check_cacheable(method, probe, name)
        pool = _pool_inputs(splits)
        pool_hashes = output_store.row_hashes(pool)
        distinct = _distinct_sorted(pool_hashes)
        _check_size(row_bytes, len(distinct))
        identity = teacher_cache_identity(
            method, splits, output_store.model_fingerprint(method.teacher), pool_hashes
        )
        path = entry_path(Path(root) if root else cache_root(), identity)

        def compute(batch: dict[str, Tensor]) -> dict[str, Tensor]:
            return method.teacher_targets({k: v.to(state.device) for k, v in batch.items()})

        if state.is_main_process:
            output_store.fill(
                compute,
                {k: v[distinct] for k, v in pool.items()},
                path,
                identity,
                what=WHAT,
                fix=FIX,
                source=f"teacher outputs ({name})",
                batch_size=FILL_BATCH_SIZE,
                shard_size=SHARD_SIZE,
                dtype=None,
                progress=progress,
                hashes=pool_hashes[distinct],
            )
        state.wait_for_everyone()
    outputs, stored, manifest = output_store.read(path, WHAT, FIX)
    output_store.check_identity(path, manifest, identity, WHAT, FIX)
    rows = output_store.row_index(stored, pool_hashes[: len(splits.train)])
    if (rows < 0).any():
        raise KdforgeError(
            f"{int((rows < 0).sum())} training examples are missing from {WHAT} {path}", f"delete {path}"
        )
    gathered = {k: v[rows] for k, v in outputs.items()}
    with torch.no_grad():  # once for the whole split instead of once per step
        gathered.update(method.derived_teacher_outputs(gathered))
    extra = {TEACHER_OUTPUT_PREFIX + k: v for k, v in gathered.items()}
    return TensorData({**splits.train.tensors, **extra})


__all__ = ["attach_teacher_outputs", "cache_root", "entry_path", "teacher_cache_identity"]
