"""Dataset ``with_teacher_emb``: a registered dataset plus cached teacher embeddings on its train split."""

from __future__ import annotations

from typing import Any

from kdforge.data.embeddings import attach, default_root, entry_dir, load
from kdforge.data.vision import Splits
from kdforge.registry import DATASETS, register_dataset


@register_dataset("with_teacher_emb")
def with_teacher_emb(
    base: str = "vader_movies",
    model: str = "minilm",
    cache: str | None = None,
    split: str = "all",
    data_dir: str | None = None,
    val_size: int | None = None,
    seed: int = 0,
    subset: int | None = None,
    base_kwargs: dict[str, Any] | None = None,
) -> Splits:
    """Dataset ``base`` whose *train* split carries ``teacher_emb`` (cache of ``kdforge embed extract``).

    Validation and test splits stay untouched (evaluation never sees the teacher).
    The cache entry is ``cache`` or ``$KDFORGE_CACHE/embeddings/<base>/<split>/<model>``;
    examples are matched by content hash, so any seed's split reuses one extraction.
    """
    kw: dict[str, Any] = {"data_dir": data_dir, "seed": seed, "subset": subset, **(base_kwargs or {})}
    if val_size is not None:
        kw["val_size"] = val_size
    splits: Splits = DATASETS.get(base)(**kw)
    path = cache or entry_dir(default_root(), base, split, model)
    emb, hashes, _ = load(path, dataset=base, model=model)
    splits.train = attach(splits.train, emb, hashes)
    splits.name = f"{splits.name}+{model}"
    return splits
