"""Labels to ids and seeded, stratified hold-out splits for the file-based data adapters.

An adapter reads its files into *parts*: ``{"train": Part, "val": Part, "test": Part}``,
where only ``train`` is required (the user's own split, or everything when the data come
unsplit). :func:`assemble_splits` maps the label strings to ids, checks that every
validation and test label was seen in training, carves a missing test split (with
``test_seed``, the same for every run seed) and a missing validation split (with the run
seed) out of training, stratified by class, and returns :class:`~kdforge.data.vision.Splits`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from kdforge.data._batches import TensorData
from kdforge.data.vision import Splits
from kdforge.errors import KdforgeError

#: Default share of the data held out for validation when the adapter is given none.
DEFAULT_VAL_FRACTION = 0.1


@dataclass
class Part:
    """One split as read from disk: model inputs, label strings and where each row came from.

    Attributes:
        inputs: equal-length tensors keyed by the model's argument names (``x``,
            ``input_ids``, ...).
        labels: one label string per row.
        sources: one human-readable origin per row (file, ``file:line``), named in errors.
    """

    inputs: dict[str, Tensor]
    labels: list[str]
    sources: list[str]

    def take(self, index: Tensor) -> Part:
        """Rows ``index`` of this part."""
        rows = index.tolist()
        return Part(
            {k: v[index] for k, v in self.inputs.items()},
            [self.labels[i] for i in rows],
            [self.sources[i] for i in rows],
        )


def sort_labels(labels: Sequence[str]) -> list[str]:
    """Distinct labels in a stable order: numerically when every label is an integer, else as text."""
    distinct = set(labels)
    try:
        return sorted(distinct, key=int)
    except ValueError:
        return sorted(distinct)


def holdout_count(size: int | float, n: int, what: str) -> int:
    """How many of ``n`` rows a hold-out of ``size`` takes (an int count, or a float fraction in (0, 1)).

    Raises:
        KdforgeError: ``size`` is not a positive count below ``n`` or a fraction in (0, 1),
            or ``n`` is too small for it.
    """
    if isinstance(size, bool) or not isinstance(size, int | float):
        raise KdforgeError(
            f"data.kwargs.{what}_size={size!r} is not a number",
            f"give {what}_size as a count (e.g. 100) or a fraction (e.g. 0.2)",
        )
    if isinstance(size, float) and not size.is_integer():
        if not 0 < size < 1:
            raise KdforgeError(
                f"data.kwargs.{what}_size={size} is neither a count nor a fraction in (0, 1)",
                f"give {what}_size as a count (e.g. 100) or a fraction (e.g. 0.2)",
            )
        count = round(size * n)
    else:
        count = int(size)
    if count < 1 or count >= n:
        raise KdforgeError(
            f"too few examples to split: {n} training examples cannot give a {what} split of "
            f"{count} ({what}_size={size}) and keep at least one for training",
            f"add examples, or give the {what} split as its own files, or change data.kwargs.{what}_size",
        )
    return count


def stratified_holdout(y: Tensor, size: int | float, seed: int, what: str) -> tuple[Tensor, Tensor]:
    """Split row indices into (kept, held out), each class contributing in proportion to its size.

    Every class keeps at least one row; the held-out rows are drawn with a generator seeded by
    ``seed``, so the split is a pure function of (labels, size, seed).

    Raises:
        KdforgeError: too few rows (or rows per class) to hold out ``size``.
    """
    n = len(y)
    count = holdout_count(size, n, what)
    classes, counts = torch.unique(y, return_counts=True)
    share = counts.double() * count / n
    quota = torch.minimum(share.floor().long(), counts - 1)
    room = counts - 1 - quota
    order = torch.argsort(share - share.floor(), descending=True, stable=True).tolist()
    while int(quota.sum()) < count and int(room.sum()) > 0:  # largest remainders first
        for c in order:
            if int(quota.sum()) < count and room[c] > 0:
                quota[c] += 1
                room[c] -= 1
    if int(quota.sum()) == 0:
        raise KdforgeError(
            f"too few examples to split: every class has a single example ({n} rows), "
            f"so none can go to the {what} split",
            f"add examples (at least two per class), or give the {what} split as its own files",
        )
    g = torch.Generator().manual_seed(seed)
    held = []
    for c, q in zip(classes.tolist(), quota.tolist(), strict=True):
        rows = torch.nonzero(y == c).flatten()
        held.append(rows[torch.randperm(len(rows), generator=g)[:q]])
    held_idx = torch.cat(held).sort().values
    mask = torch.ones(n, dtype=torch.bool)
    mask[held_idx] = False
    return torch.nonzero(mask).flatten(), held_idx


def encode_labels(part: Part, index: dict[str, int], split: str, given_classes: bool = False) -> Tensor:
    """Label ids of ``part``; a label missing from ``index`` is an error naming it and its row.

    Args:
        given_classes: ``index`` comes from the user's ``classes`` option rather than from
            the training labels (changes only the error message).

    Raises:
        KdforgeError: a validation/test label never seen in training (or not in ``classes``).
    """
    ids = []
    for label, source in zip(part.labels, part.sources, strict=True):
        if label not in index:
            known = ", ".join(list(index)[:10]) + (", ..." if len(index) > 10 else "")
            if given_classes:
                raise KdforgeError(
                    f"{split} label '{label}' ({source}) is not in data.kwargs.classes ({known})",
                    "add it to data.kwargs.classes, or remove the option to use the training labels",
                )
            raise KdforgeError(
                f"{split} label '{label}' ({source}) never occurs in the training split "
                f"(training labels: {known})",
                "a model cannot learn a class it never sees: add training examples of it, "
                f"or drop those {split} rows",
            )
        ids.append(index[label])
    return torch.tensor(ids, dtype=torch.int64)


def assemble_splits(
    parts: dict[str, Part],
    *,
    name: str,
    input_shape: tuple[int, ...],
    classes: Sequence[str] | None,
    val_size: int | float | None,
    test_size: int | float,
    seed: int,
    test_seed: int,
    subset: int | None,
) -> Splits:
    """Turn the parts read from disk into train/val/test :class:`Splits` with class names.

    Args:
        parts: ``train`` (required) and optionally ``val`` and ``test`` as read from disk.
        name: data-set name recorded in run summaries.
        input_shape: shape of one example (what model builders receive).
        classes: label strings in id order; ``None``: the training labels, sorted
            (numerically when all are integers).
        val_size: rows (int) or fraction (float) of training carved out for validation when
            ``parts`` has no ``val``; ``None``: a tenth.
        test_size: the same for a missing ``test`` split.
        seed: the run seed; draws the validation split.
        test_seed: draws the test split, independent of the run seed so that every seed
            is scored on the same test rows.
        subset: keep only the first ``subset`` training rows (after splitting).

    Raises:
        KdforgeError: an unknown label outside training, or too few rows to split.
    """
    train = parts["train"]
    if not train.labels:
        raise KdforgeError(f"data set '{name}' has no training examples", "check the data path and options")
    class_names = list(classes) if classes is not None else sort_labels(train.labels)
    index = {str(c): i for i, c in enumerate(class_names)}
    fixed = classes is not None
    y_train = encode_labels(train, index, "train", fixed)
    given = {s: (part, encode_labels(part, index, s, fixed)) for s, part in parts.items() if s != "train"}
    for split, size, split_seed in (("test", test_size, test_seed), ("val", val_size, seed)):
        if split in given:
            continue
        size = DEFAULT_VAL_FRACTION if size is None else size
        keep, held = stratified_holdout(y_train, size, split_seed, split)
        given[split] = (train.take(held), y_train[held])
        train, y_train = train.take(keep), y_train[keep]
    if subset is not None:
        train, y_train = train.take(torch.arange(min(subset, len(y_train)))), y_train[:subset]

    def data(part: Part, y: Tensor) -> TensorData:
        return TensorData({**part.inputs, "y": y})

    return Splits(
        data(train, y_train),
        data(*given["val"]),
        data(*given["test"]),
        len(class_names),
        tuple(input_shape),
        name,
        class_names=[str(c) for c in class_names],
    )
