"""Your own labelled text in a table: ``csv``, ``jsonl`` and ``parquet`` (with pyarrow) files.

One row per example: a text column and a label column (names set in the recipe), and
optionally a split column whose values are ``train``/``val``/``test`` (also ``training``,
``valid``, ``validation``, ``dev``, ``testing``); splits it does not give are carved out of
training, stratified and seeded. Label values are strings (a number is read as its text);
ids follow the sorted training labels (numerically when every label is an integer) and a
run records them in ``labels.json``, so predictions map back to labels.

Texts are tokenised exactly like the VADER sets (:func:`kdforge.data.text.tokenize`: the
MiniLM WordPiece tokenizer, fixed ``max_len``), so the text models and the MiniLM teacher
read them unchanged.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kdforge.data._holdout import Part, assemble_splits
from kdforge.data.vision import Splits
from kdforge.errors import KdforgeError
from kdforge.registry import register_dataset

#: split-column value (lower-cased) -> split
SPLIT_VALUES = {
    **dict.fromkeys(("train", "training"), "train"),
    **dict.fromkeys(("val", "valid", "validation", "dev"), "val"),
    **dict.fromkeys(("test", "testing"), "test"),
}
_DECODE_FIX = "set data.kwargs.encoding (e.g. latin-1, cp1252) or data.kwargs.errors=replace"


@dataclass
class Table:
    """Rows read from one file: column names, one dict per row, and each row's ``file:line``."""

    path: str
    columns: list[str]
    rows: list[dict[str, Any]]
    sources: list[str]


def _text_encoding(encoding: str) -> str:
    # a UTF-8 byte-order mark would otherwise stick to the first column name
    return "utf-8-sig" if encoding.lower().replace("_", "-") in ("utf-8", "utf8") else encoding


def _open_text(path: Path, encoding: str, errors: str):
    try:
        return path.open(encoding=_text_encoding(encoding), errors=errors, newline="")
    except LookupError as e:
        raise KdforgeError(f"{e} (data.kwargs.encoding={encoding!r})", "use a Python codec name") from None
    except OSError as e:
        raise KdforgeError(f"cannot read '{path}': {e.strerror or e}", "check data.kwargs.path") from None


def _decode_error(path: Path, encoding: str, line: int, e: Exception) -> KdforgeError:
    if isinstance(e, LookupError):
        return KdforgeError(f"{e} (data.kwargs.errors)", "use strict, replace or ignore")
    return KdforgeError(f"'{path}' is not valid {encoding} text near line {line}: {e}", _DECODE_FIX)


def read_csv(path: Path, delimiter: str = ",", encoding: str = "utf-8", errors: str = "strict") -> Table:
    """Read a CSV file with a header row (standard-library ``csv``, quoted fields allowed).

    Raises:
        KdforgeError: unreadable or undecodable file, no header, a row with a wrong field count.
    """
    rows, sources, header, line = [], [], [], 1
    with _open_text(path, encoding, errors) as f:
        reader = csv.reader(f, delimiter=delimiter)
        try:
            header = next(reader, [])
            for fields in reader:
                line = reader.line_num
                if not fields:
                    continue
                if len(fields) != len(header):
                    raise KdforgeError(
                        f"{path.name}:{line} has {len(fields)} fields, the header has {len(header)}",
                        "quote fields that contain the delimiter, or set data.kwargs.delimiter",
                    )
                rows.append(dict(zip(header, fields, strict=True)))
                sources.append(f"{path.name}:{line}")
        except (UnicodeDecodeError, LookupError) as e:
            raise _decode_error(path, encoding, line + 1, e) from None
        except csv.Error as e:
            raise KdforgeError(
                f"{path.name}:{reader.line_num} is not valid CSV: {e}", "fix the file"
            ) from None
    if not header:
        raise KdforgeError(f"'{path}' is empty", "the first line must name the columns")
    return Table(str(path), header, rows, sources)


def read_jsonl(path: Path, encoding: str = "utf-8", errors: str = "strict") -> Table:
    """Read a JSON-lines file: one JSON object per non-blank line.

    Raises:
        KdforgeError: unreadable or undecodable file, or a line that is not a JSON object.
    """
    rows, sources, columns, line = [], [], {}, 0
    with _open_text(path, encoding, errors) as f:
        try:
            for line, raw in enumerate(f, 1):
                if not raw.strip():
                    continue
                try:
                    row = json.loads(raw)
                except json.JSONDecodeError as e:
                    raise KdforgeError(f"{path.name}:{line} is not valid JSON: {e}", "fix the line") from None
                if not isinstance(row, dict):
                    raise KdforgeError(f"{path.name}:{line} is not a JSON object", "one {...} per line")
                columns.update(dict.fromkeys(row))
                rows.append(row)
                sources.append(f"{path.name}:{line}")
        except (UnicodeDecodeError, LookupError) as e:
            raise _decode_error(path, encoding, line + 1, e) from None
    return Table(str(path), list(columns), rows, sources)


def read_parquet(path: Path) -> Table:
    """Read a Parquet file with pyarrow (the optional extra ``parquet``).

    Raises:
        KdforgeError: pyarrow is missing, or the file is not Parquet.
    """
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise KdforgeError(
            "reading Parquet needs pyarrow, which is not installed", "pip install 'kdforge[parquet]'"
        ) from None
    try:
        table = pq.read_table(path)
    except (OSError, ValueError) as e:  # pyarrow's ArrowInvalid is a ValueError
        raise KdforgeError(f"cannot read Parquet file '{path}': {e}", "check data.kwargs.path") from None
    rows = table.to_pylist()
    return Table(
        str(path), list(table.column_names), rows, [f"{path.name} row {i}" for i in range(len(rows))]
    )


def _column(table: Table, column: str, option: str) -> list[Any]:
    if column not in table.columns:
        raise KdforgeError(
            f"'{table.path}' has no column '{column}' (its columns: {', '.join(map(str, table.columns))})",
            f"set data.kwargs.{option} to one of them",
        )
    return [row.get(column) for row in table.rows]


def table_parts(
    table: Table, text_column: str, label_column: str, split_column: str | None
) -> dict[str, tuple[list[str], list[str], list[str]]]:
    """Group rows into ``{split: (texts, labels, sources)}``; without a split column everything is ``train``.

    Raises:
        KdforgeError: a missing column (the existing ones listed), an empty label, an unknown
            split value.
    """
    texts = _column(table, text_column, "text_column")
    labels = _column(table, label_column, "label_column")
    split_of = _column(table, split_column, "split_column") if split_column else ["train"] * len(texts)
    parts: dict[str, tuple[list[str], list[str], list[str]]] = {}
    for text, label, split, source in zip(texts, labels, split_of, table.sources, strict=True):
        if label is None or str(label).strip() == "":
            raise KdforgeError(
                f"{source} has an empty label ('{label_column}')", "label the row or remove it"
            )
        key = SPLIT_VALUES.get(str(split).strip().lower())
        if key is None:
            raise KdforgeError(
                f"{source}: split value '{split}' in column '{split_column}' is not a split name",
                f"use one of {', '.join(SPLIT_VALUES)}",
            )
        bucket = parts.setdefault(key, ([], [], []))
        bucket[0].append("" if text is None else str(text))
        bucket[1].append(str(label).strip())
        bucket[2].append(source)
    if "train" not in parts:
        raise KdforgeError(
            f"'{table.path}' has no training rows" + (f" (column '{split_column}')" if split_column else ""),
            "add rows whose split is train",
        )
    return parts


def text_table_splits(
    table: Table,
    *,
    name: str,
    text_column: str,
    label_column: str,
    split_column: str | None,
    max_len: int,
    classes: list[str] | None,
    val_size: int | float | None,
    test_size: int | float,
    seed: int,
    test_seed: int,
    subset: int | None,
) -> Splits:
    """Tokenise a table's texts (MiniLM tokenizer, ``max_len``) and build the splits (see ``csv``)."""
    from kdforge.data.text import tokenize

    grouped = table_parts(table, text_column, label_column, split_column)
    all_texts = [t for texts, _, _ in grouped.values() for t in texts]
    encoded = tokenize(all_texts, max_len)
    parts, start = {}, 0
    for split, (texts, labels, sources) in grouped.items():
        inputs = {k: v[start : start + len(texts)] for k, v in encoded.items()}
        parts[split] = Part(inputs, labels, sources)
        start += len(texts)
    return assemble_splits(
        parts,
        name=name,
        input_shape=(max_len,),
        classes=classes,
        val_size=val_size,
        test_size=test_size,
        seed=seed,
        test_seed=test_seed,
        subset=subset,
    )


def _file(path: str | None, data_dir: str | None, kind: str) -> Path:
    given = path or data_dir
    if given is None:
        raise KdforgeError(
            f"dataset '{kind}' needs a file", f"set data.kwargs.path=FILE.{kind} (or --data-dir)"
        )
    file = Path(given).expanduser()
    if not file.is_file():
        raise KdforgeError(f"{kind} file '{file}' does not exist", "fix data.kwargs.path")
    return file


@register_dataset("csv")
def csv_text(
    path: str | None = None,
    data_dir: str | None = None,
    text_column: str = "text",
    label_column: str = "label",
    split_column: str | None = None,
    delimiter: str = ",",
    encoding: str = "utf-8",
    errors: str = "strict",
    max_len: int = 64,
    classes: list[str] | None = None,
    val_size: int | float | None = None,
    test_size: int | float = 0.2,
    test_seed: int = 0,
    seed: int = 0,
    subset: int | None = None,
) -> Splits:
    """Your own labelled text in a CSV file (header row; text and label columns named in the recipe).

    Args:
        path: the file (``data_dir`` / ``--data-dir`` is used when ``path`` is unset).
        text_column, label_column: column names of the text and of its label.
        split_column: optional column whose values name each row's split
            (train/val/test); splits it lacks are carved out of training.
        delimiter: the field separator (``"\\t"`` for TSV).
        encoding, errors: how to decode the file (Python codec names; ``errors``
            ``strict`` fails on invalid bytes, ``replace``/``ignore`` do not).
        max_len: tokens per text (longer texts are truncated, shorter ones padded).
        classes: label names in id order (e.g. the order of a teacher's head); ``None``:
            the sorted training labels.
        val_size, test_size: rows (int) or fraction (float) carved from training when no
            split is given; ``val_size=None`` means a tenth.
        test_seed: draws the carved test split (the same for every run seed).
        seed: the run seed; draws the carved validation split.
        subset: keep only this many training rows.
    """
    file = _file(path, data_dir, "csv")
    return text_table_splits(
        read_csv(file, delimiter, encoding, errors),
        name=f"csv:{file}",
        text_column=text_column,
        label_column=label_column,
        split_column=split_column,
        max_len=max_len,
        classes=classes,
        val_size=val_size,
        test_size=test_size,
        seed=seed,
        test_seed=test_seed,
        subset=subset,
    )


@register_dataset("jsonl")
def jsonl_text(
    path: str | None = None,
    data_dir: str | None = None,
    text_column: str = "text",
    label_column: str = "label",
    split_column: str | None = None,
    encoding: str = "utf-8",
    errors: str = "strict",
    max_len: int = 64,
    classes: list[str] | None = None,
    val_size: int | float | None = None,
    test_size: int | float = 0.2,
    test_seed: int = 0,
    seed: int = 0,
    subset: int | None = None,
) -> Splits:
    """Your own labelled text in a JSON-lines file (one object per line, text and label keys).

    Options as for ``csv`` (without ``delimiter``).
    """
    file = _file(path, data_dir, "jsonl")
    return text_table_splits(
        read_jsonl(file, encoding, errors),
        name=f"jsonl:{file}",
        text_column=text_column,
        label_column=label_column,
        split_column=split_column,
        max_len=max_len,
        classes=classes,
        val_size=val_size,
        test_size=test_size,
        seed=seed,
        test_seed=test_seed,
        subset=subset,
    )


@register_dataset("parquet")
def parquet_text(
    path: str | None = None,
    data_dir: str | None = None,
    text_column: str = "text",
    label_column: str = "label",
    split_column: str | None = None,
    max_len: int = 64,
    classes: list[str] | None = None,
    val_size: int | float | None = None,
    test_size: int | float = 0.2,
    test_seed: int = 0,
    seed: int = 0,
    subset: int | None = None,
) -> Splits:
    """Your own labelled text in a Parquet file (needs pyarrow: ``pip install 'kdforge[parquet]'``).

    Options as for ``csv`` (without ``delimiter``, ``encoding`` and ``errors``).
    """
    file = _file(path, data_dir, "parquet")
    return text_table_splits(
        read_parquet(file),
        name=f"parquet:{file}",
        text_column=text_column,
        label_column=label_column,
        split_column=split_column,
        max_len=max_len,
        classes=classes,
        val_size=val_size,
        test_size=test_size,
        seed=seed,
        test_seed=test_seed,
        subset=subset,
    )
