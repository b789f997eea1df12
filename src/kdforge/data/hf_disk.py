"""Hugging Face ``datasets`` from your disk (``hf_dataset``): a ``save_to_disk`` folder or local files.

Needs the optional extra ``datasets`` (``pip install 'kdforge[datasets]'``). Nothing is
ever fetched from the Hub: the library runs in offline mode, ``path`` must be a folder
written by ``Dataset.save_to_disk`` / ``DatasetDict.save_to_disk``, and ``data_files``
must name local CSV, JSON(-lines) or Parquet files.

Splits named ``train``, ``validation``/``val``/``dev``/``valid`` and ``test`` are used
as given (others, e.g. ``unsupervised``, are ignored); missing ones are carved out of
training as for the other adapters. A ``ClassLabel`` label column keeps its own names
and id order. A text column is tokenised like the VADER sets; an ``Image`` column goes
through the same resizing, channel and normalisation options as ``image_folder``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from kdforge.data._holdout import Part, assemble_splits
from kdforge.data.image_folder import as_gray_or_rgb, images_to_uint8, scale_and_normalise
from kdforge.data.tabular_text import SPLIT_VALUES
from kdforge.data.vision import Splits
from kdforge.errors import KdforgeError
from kdforge.registry import register_dataset

#: data_files suffix -> packaged (local) ``datasets`` builder
BUILDERS = {".csv": "csv", ".json": "json", ".jsonl": "json", ".parquet": "parquet"}


def _datasets():
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")  # never the Hub, even by accident
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    try:
        import datasets
    except ImportError:
        raise KdforgeError(
            "dataset 'hf_dataset' needs the Hugging Face 'datasets' library, which is not installed",
            "pip install 'kdforge[datasets]'",
        ) from None
    datasets.config.HF_HUB_OFFLINE = True
    return datasets


def read_hf(path: str | None, data_files: str | dict[str, str] | None) -> dict[str, Any]:
    """``{split name: datasets.Dataset}`` from a ``save_to_disk`` folder or local data files.

    Raises:
        KdforgeError: both or neither source given, a missing path, a folder not written by
            ``save_to_disk``, an unknown file type.
    """
    if (path is None) == (data_files is None):
        raise KdforgeError(
            "dataset 'hf_dataset' needs exactly one of path (a save_to_disk folder) and data_files",
            "set data.kwargs.path=DIR or data.kwargs.data_files=FILE (or {train: FILE, test: FILE})",
        )
    datasets = _datasets()
    if path is not None:
        folder = Path(path).expanduser()
        if not folder.is_dir():
            raise KdforgeError(f"dataset folder '{folder}' does not exist", "fix data.kwargs.path")
        try:
            loaded = datasets.load_from_disk(str(folder))
        except (FileNotFoundError, ValueError) as e:
            raise KdforgeError(
                f"'{folder}' is not a dataset written by save_to_disk: {e}",
                "save it with Dataset.save_to_disk / DatasetDict.save_to_disk, or use data_files",
            ) from None
        return dict(loaded) if isinstance(loaded, datasets.DatasetDict) else {"train": loaded}
    files = {"train": data_files} if isinstance(data_files, str) else dict(data_files)  # type: ignore[arg-type]
    suffixes = {Path(f).suffix.lower() for f in files.values()}
    for f in files.values():
        if not Path(f).expanduser().is_file():
            raise KdforgeError(f"data file '{f}' does not exist", "fix data.kwargs.data_files")
    if len(suffixes) != 1 or next(iter(suffixes)) not in BUILDERS:
        raise KdforgeError(
            f"data.kwargs.data_files must be files of one type among {', '.join(BUILDERS)} "
            f"(got {sorted(suffixes)})",
            "convert the files, or use the csv / jsonl / parquet / image_folder adapters",
        )
    from kdforge.models.hf import cache_root

    builder = BUILDERS[suffixes.pop()]
    files = {k: str(Path(f).expanduser()) for k, f in files.items()}
    cache = cache_root() / "hf_datasets"  # the library's Arrow copies, beside kdforge's other caches
    return dict(datasets.load_dataset(builder, data_files=files, cache_dir=str(cache)))


def _column(ds, column: str, option: str, split: str) -> list[Any]:
    if column not in ds.column_names:
        raise KdforgeError(
            f"the {split} split has no column '{column}' (its columns: {', '.join(ds.column_names)})",
            f"set data.kwargs.{option} to one of them",
        )
    return ds[column]


def _label_names(ds, label_column: str) -> list[str] | None:
    feature = ds.features.get(label_column)
    return list(feature.names) if hasattr(feature, "names") else None


def _image_column(ds) -> str | None:
    datasets = _datasets()
    return next((k for k, f in ds.features.items() if isinstance(f, datasets.Image)), None)


@register_dataset("hf_dataset")
def hf_dataset(
    path: str | None = None,
    data_files: str | dict[str, str] | None = None,
    data_dir: str | None = None,
    text_column: str = "text",
    image_column: str | None = None,
    label_column: str = "label",
    max_len: int = 64,
    size: int | list[int] | None = None,
    channels: int | None = None,
    normalize: bool = True,
    mean: list[float] | None = None,
    std: list[float] | None = None,
    classes: list[str] | None = None,
    val_size: int | float | None = None,
    test_size: int | float = 0.2,
    test_seed: int = 0,
    seed: int = 0,
    subset: int | None = None,
) -> Splits:
    """A Hugging Face dataset on disk (save_to_disk folder or local files; never the Hub).

    Args:
        path: a folder written by ``save_to_disk`` (``data_dir`` / ``--data-dir`` is used
            when neither ``path`` nor ``data_files`` is set).
        data_files: local CSV/JSON/Parquet file(s): one path, or ``{split: path}``.
        text_column: the text column (text data).
        image_column: the image column; ``None``: the first ``Image`` feature, if any
            (then the data are images and ``text_column`` is ignored).
        label_column: the label column (a ``ClassLabel`` keeps its names and order).
        max_len: tokens per text.
        size, channels, normalize, mean, std: image options, as for ``image_folder``.
        classes, val_size, test_size, test_seed, seed, subset: as for ``csv``.
    """
    if path is None and data_files is None:
        path = data_dir
    by_name = read_hf(path, data_files)
    given = {SPLIT_VALUES[k.lower()]: ds for k, ds in by_name.items() if k.lower() in SPLIT_VALUES}
    if "train" not in given:
        raise KdforgeError(
            f"the dataset has no train split (its splits: {', '.join(by_name)})",
            "name the training split 'train'",
        )
    first = given["train"]
    label_names = _label_names(first, label_column)
    image_column = image_column or _image_column(first)
    parts: dict[str, Part] = {}
    for split, ds in given.items():
        labels = _column(ds, label_column, "label_column", split)
        if label_names is not None:
            labels = [label_names[i] for i in labels]
        sources = [f"{split} row {i}" for i in range(len(labels))]
        key = image_column or text_column
        values = _column(ds, key, "image_column" if image_column else "text_column", split)
        parts[split] = Part({"values": values}, [str(v) for v in labels], sources)  # type: ignore[dict-item]
    name = f"hf_dataset:{path or data_files}"
    options = {
        "name": name,
        "classes": classes if classes is not None else label_names,
        "val_size": val_size,
        "test_size": test_size,
        "seed": seed,
        "test_seed": test_seed,
        "subset": subset,
    }
    if image_column:
        images = [as_gray_or_rgb(img) for part in parts.values() for img in part.inputs["values"]]
        names = [s for part in parts.values() for s in part.sources]
        x = images_to_uint8(images, names, size, channels)
        _attach(parts, {"x": x})
        splits = assemble_splits(parts, input_shape=tuple(x.shape[1:]), **options)
        return scale_and_normalise(splits, normalize, mean, std)
    from kdforge.data.text import tokenize

    texts = ["" if t is None else str(t) for part in parts.values() for t in part.inputs["values"]]
    _attach(parts, tokenize(texts, max_len))
    return assemble_splits(parts, input_shape=(max_len,), **options)


def _attach(parts: dict[str, Part], tensors: dict) -> None:
    """Replace each part's raw values by its rows of ``tensors`` (built over all parts in order)."""
    start = 0
    for part in parts.values():
        n = len(part.labels)
        part.inputs = {k: v[start : start + n] for k, v in tensors.items()}
        start += n
