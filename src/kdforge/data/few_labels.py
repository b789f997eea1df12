"""Few labels plus an unlabelled pool: the setting where distillation pays most in practice.

A practitioner often has a small labelled set and much more unlabelled data of the same kind.
A student trained alone learns from the labelled examples only; a distilled student also learns
from the teacher's soft targets on the unlabelled pool (its targets are ``-1``, see
:func:`kdforge.losses.kd.labelled_cross_entropy`).
"""

from __future__ import annotations

import torch

from kdforge.data._batches import TensorData
from kdforge.data.vision import Splits
from kdforge.errors import KdforgeError
from kdforge.losses.kd import UNLABELLED
from kdforge.registry import register_dataset


def mask_labels(
    train: TensorData, labelled: int, unlabelled: int | None, keep_unlabelled: bool, seed: int
) -> TensorData:
    """Keep ``labelled`` training labels (seeded choice); the next ``unlabelled`` examples get ``-1``.

    Args:
        train: the full training split.
        labelled: how many examples keep their label.
        unlabelled: size of the unlabelled pool (``None``: every other training example).
        keep_unlabelled: ``False`` drops the pool (what a student trained alone sees).
        seed: seeds which examples are labelled.
    """
    n = len(train)
    if not 0 < labelled < n:
        raise KdforgeError(
            f"data.kwargs.labelled={labelled} must be between 1 and {n - 1} (the training split has {n})",
            "choose fewer labelled examples",
        )
    order = torch.randperm(n, generator=torch.Generator().manual_seed(20_011 + seed))
    pool = n - labelled if unlabelled is None else unlabelled
    if not 0 <= pool <= n - labelled:
        raise KdforgeError(
            f"data.kwargs.unlabelled={unlabelled} must be between 0 and {n - labelled}",
            "choose a smaller unlabelled pool, or leave it unset to use every unlabelled example",
        )
    labelled_idx, pool_idx = order[:labelled], order[labelled : labelled + pool]
    if not keep_unlabelled:
        pool_idx = pool_idx[:0]
    index = torch.cat([labelled_idx, pool_idx])
    tensors = train.take(index)
    y = tensors["y"].clone()
    y[labelled:] = UNLABELLED
    return TensorData({**tensors, "y": y})


@register_dataset("few_labels")
def few_labels(
    base: str = "fashion_mnist",
    labelled: int = 1000,
    unlabelled: int | None = None,
    keep_unlabelled: bool = True,
    data_dir: str | None = None,
    val_size: int | None = None,
    seed: int = 0,
    subset: int | None = None,
    **base_kwargs,
) -> Splits:
    """Another data set's splits with only ``labelled`` training labels; the rest an unlabelled pool.

    Validation and test keep their labels. ``keep_unlabelled=false`` drops the pool (the
    student-alone baseline); targets of pool examples are ``-1``.
    """
    from kdforge.data import load_dataset

    if base == "few_labels":
        raise KdforgeError("few_labels cannot wrap itself", "set data.kwargs.base to another data set")
    kwargs = dict(base_kwargs, data_dir=data_dir, seed=seed, subset=subset)
    if val_size is not None:
        kwargs["val_size"] = val_size
    splits = load_dataset(base, **kwargs)
    train = mask_labels(splits.train, labelled, unlabelled, keep_unlabelled, seed)
    name = f"{splits.name}:{labelled}labelled" + ("+pool" if keep_unlabelled else "")
    return Splits(train, splits.val, splits.test, splits.num_classes, splits.input_shape, name)
