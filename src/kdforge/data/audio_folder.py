"""Dataset ``audio_folder``: one subfolder per class of WAV/FLAC clips -> fixed-length log-mel features.

Layouts (``data_dir``)::

    DIR/<class>/*.wav                       seeded, class-stratified train/val/test splits
    DIR/train/<class>/*.wav [DIR/val/...] [DIR/test/...]   given splits (missing ones carved from train)
    DIR/manifest.csv (+ DIR/<class>/*.wav)  rows ``path,label[,split][,<group>...]``: a ``split`` column
                                            gives the splits; ``group_column`` (e.g. ``voice``) splits
                                            by group, so no group of the test split appears in training;
                                            ``label_column`` names another column as the class (e.g.
                                            ``voice``, split by ``label``: who speaks, on unseen words)

Each clip is read (``soundfile`` when installed, else the standard library's ``wave`` for PCM WAV; no
ffmpeg), mixed to mono, resampled to ``sample_rate`` (:func:`~kdforge.models.audio_features.resample`),
scaled to an RMS level, cropped or zero-padded to ``seconds`` and turned into a log-mel spectrogram
``x: [1, n_mels, frames]`` by :class:`~kdforge.models.audio_features.MelFrontEnd` (or kept as a
waveform ``[samples]`` with ``features="wave"``). The test split never depends on the run seed;
validation and the ``per_class`` training subset do.
"""

from __future__ import annotations

import csv
import functools
import os
import wave
from pathlib import Path

import numpy as np
import torch

from kdforge.data._batches import TensorData
from kdforge.data.vision import Splits
from kdforge.errors import KdforgeError
from kdforge.models.audio_features import MelConfig, MelFrontEnd, resample
from kdforge.registry import register_dataset

AUDIO_SUFFIXES = (".wav", ".flac")
SPLITS = ("train", "val", "test")


def read_audio(path: str | Path) -> tuple[np.ndarray, int]:
    """Mono float32 samples in [-1, 1] and the sample rate of a WAV (or, with soundfile, FLAC) file.

    Raises:
        KdforgeError: the file cannot be decoded (its path is named).
    """
    path = Path(path)
    try:
        import soundfile
    except ImportError:
        soundfile = None
    try:
        if soundfile is not None:
            data, rate = soundfile.read(str(path), dtype="float32", always_2d=True)
            return np.ascontiguousarray(data.mean(1), dtype=np.float32), int(rate)
        if path.suffix.lower() != ".wav":
            raise ValueError("only WAV can be read without the soundfile package")
        with wave.open(str(path), "rb") as f:
            width, channels, rate = f.getsampwidth(), f.getnchannels(), f.getframerate()
            raw = f.readframes(f.getnframes())
    except Exception as e:  # any decoder failure: name the file
        raise KdforgeError(
            f"cannot read audio file {path} ({type(e).__name__}: {e})",
            "replace or delete the file (PCM WAV is always readable; FLAC and float WAV need "
            "`pip install soundfile`)",
        ) from None
    if width == 1:
        samples = (np.frombuffer(raw, np.uint8).astype(np.float32) - 128.0) / 128.0
    elif width == 3:
        b = np.frombuffer(raw, np.uint8).reshape(-1, 3).astype(np.int32)
        ints = (b[:, 0] | (b[:, 1] << 8) | (b[:, 2] << 16)) << 8 >> 8  # sign-extend 24 bits
        samples = ints.astype(np.float32) / 2**23
    else:
        samples = np.frombuffer(raw, {2: "<i2", 4: "<i4"}[width]).astype(np.float32) / 2 ** (8 * width - 1)
    return samples.reshape(-1, channels).mean(1).astype(np.float32), rate


def write_wav(path: str | Path, samples: np.ndarray, rate: int) -> Path:
    """Write mono float samples in [-1, 1] as 16-bit PCM WAV (atomically: temporary file, then rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    pcm = (np.clip(np.asarray(samples, np.float64), -1, 1) * 32767).round().astype("<i2")
    tmp = path.with_name(path.name + ".tmp")
    with wave.open(str(tmp), "wb") as f:
        f.setnchannels(1)
        f.setsampwidth(2)
        f.setframerate(rate)
        f.writeframes(pcm.tobytes())
    os.replace(tmp, path)
    return path


def fix_length(samples: torch.Tensor, length: int, align: str = "center") -> torch.Tensor:
    """Crop or zero-pad ``[T]`` to ``[length]``, keeping the middle (``center``) or the start (``start``)."""
    extra = samples.shape[-1] - length
    if extra > 0:
        start = extra // 2 if align == "center" else 0
        return samples[start : start + length]
    before = (-extra) // 2 if align == "center" else 0
    return torch.nn.functional.pad(samples, (before, -extra - before))


def _audio_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in AUDIO_SUFFIXES)


def _scan_classes(root: Path) -> list[tuple[Path, str]]:
    """(file, class) pairs of ``root/<class>/*``; every class folder must hold audio."""
    classes = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not classes:
        raise KdforgeError(
            f"{root} has no class subfolders", "put the clips of each class in DIR/<class>/*.wav"
        )
    rows = []
    for folder in classes:
        files = _audio_files(folder)
        if not files:
            raise KdforgeError(
                f"class folder {folder} holds no {'/'.join(AUDIO_SUFFIXES)} files",
                "add clips to it or remove the empty folder",
            )
        rows += [(f, folder.name) for f in files]
    return rows


def read_manifest(path: Path) -> list[dict[str, str]]:
    """Rows of a manifest CSV; it must have ``path`` and ``label`` columns (paths relative to its folder)."""
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    columns = list(rows[0]) if rows else []
    for needed in ("path", "label"):
        if needed not in columns:
            raise KdforgeError(
                f"manifest {path} has no '{needed}' column (columns: {', '.join(columns) or 'none'})",
                "write a header row with at least path,label",
            )
    return rows


def _take(n: int, fraction: float, size: int | None) -> int:
    return size if size is not None else max(1, round(n * fraction))


def _split_by_class(labels: list[str], val_fraction, test_fraction, val_size, seed, split_seed) -> list[str]:
    """Class-stratified seeded split: per class, test (``split_seed``) then val (``seed``) then train."""
    out = ["train"] * len(labels)
    n_classes = len(set(labels))
    for c in sorted(set(labels)):
        idx = [i for i, label in enumerate(labels) if label == c]
        if len(idx) < 3:
            raise KdforgeError(
                f"class '{c}' has {len(idx)} clip(s): too few to split into train/val/test",
                "add clips (3 per class at least) or give the splits (train/val/test folders)",
            )
        order = np.random.default_rng(split_seed).permutation(idx).tolist()
        n_test = min(_take(len(idx), test_fraction, None), len(idx) - 2)
        rest = np.random.default_rng(seed + 1).permutation(order[n_test:]).tolist()
        per_class_val = None if val_size is None else max(1, val_size // n_classes)
        n_val = min(_take(len(idx), val_fraction, per_class_val), len(rest) - 1)
        for i in order[:n_test]:
            out[i] = "test"
        for i in rest[:n_val]:
            out[i] = "val"
    return out


def _split_by_group(groups: list[str], val_fraction, test_fraction, val_size, seed, split_seed) -> list[str]:
    """Whole groups go to one split: test groups drawn with ``split_seed``, val groups with ``seed``."""
    names = sorted(set(groups))
    if len(names) < 3:
        raise KdforgeError(
            f"{len(names)} group(s) ({', '.join(names)}): too few to split into train/val/test by group",
            "add groups (3 at least) or give a split column",
        )
    order = np.random.default_rng(split_seed).permutation(names).tolist()
    n_test = min(_take(len(names), test_fraction, None), len(names) - 2)
    rest = np.random.default_rng(seed + 1).permutation(order[n_test:]).tolist()
    n_val = min(_take(len(names), val_fraction, val_size), len(rest) - 1)
    where = {g: "test" for g in order[:n_test]} | {g: "val" for g in rest[:n_val]}
    return [where.get(g, "train") for g in groups]


def _list_clips(
    root: Path, manifest: str | None, split_column: str, group_column: str | None, label_column: str = "label"
):
    """(files, labels, given splits or None, groups or None)."""
    manifest_path = root / manifest if manifest else None
    if manifest_path is not None:
        if not manifest_path.is_file():
            raise KdforgeError(f"manifest {manifest_path} does not exist", "fix data.kwargs.manifest")
        rows = read_manifest(manifest_path)
        for role, column in (("group_column", group_column), ("label_column", label_column)):
            if column is not None and column not in rows[0]:
                raise KdforgeError(
                    f"manifest {manifest_path} has no '{column}' column (columns: {', '.join(rows[0])})",
                    f"name an existing column as {role}",
                )
        files = [root / r["path"] for r in rows]
        for f in files:
            if not f.is_file():
                raise KdforgeError(f"manifest {manifest_path} lists {f}, which does not exist", "fix the row")
        labels = [r[label_column] for r in rows]
        given = [r[split_column] for r in rows] if split_column in rows[0] and group_column is None else None
        groups = [r[group_column] for r in rows] if group_column else None
        return files, labels, given, groups
    if group_column is not None or label_column != "label":
        raise KdforgeError(
            f"group_column='{group_column}', label_column='{label_column}' need a manifest",
            "pass manifest=manifest.csv",
        )
    present = [s for s in SPLITS if (root / s).is_dir()]
    if "train" in present:
        files, labels, given = [], [], []
        for s in present:
            pairs = _scan_classes(root / s)
            files += [p for p, _ in pairs]
            labels += [c for _, c in pairs]
            given += [s] * len(pairs)
        return files, labels, given, None
    pairs = _scan_classes(root)
    return [p for p, _ in pairs], [c for _, c in pairs], None, None


@functools.lru_cache(maxsize=8)
def _load_waves(files: tuple[str, ...], sample_rate: int, length: int, align: str, level_db: float | None):
    out = torch.empty(len(files), length)
    for i, f in enumerate(files):
        samples, rate = read_audio(f)
        x = resample(torch.from_numpy(samples).double(), rate, sample_rate).float()
        if level_db is not None:
            rms = float(x.square().mean().sqrt())
            if rms > 0:
                x = x * (10 ** (level_db / 20) / rms)
        out[i] = fix_length(x, length, align)
    return out


def clip_features(
    files: list[str | Path],
    sample_rate: int = 16000,
    seconds: float = 1.0,
    align: str = "center",
    level_db: float | None = -30.0,
    mel: dict | None = None,
) -> torch.Tensor:
    """Features of audio files as ``audio_folder`` computes them (e.g. for an extra unseen test set).

    Args:
        mel: :class:`~kdforge.models.audio_features.MelConfig` options for log-mels ``[N, 1, n_mels,
            frames]``; ``None`` returns the fixed-length waveforms ``[N, samples]``.
    """
    length = round(seconds * sample_rate)
    waves = _load_waves(tuple(str(f) for f in files), sample_rate, length, align, level_db)
    if mel is None:
        return waves
    front = MelFrontEnd(MelConfig(sample_rate=sample_rate, **mel))
    return torch.cat([front(waves[i : i + 256]) for i in range(0, len(waves), 256)]).unsqueeze(1)


@register_dataset("audio_folder")
def audio_folder(
    data_dir: str | None = None,
    manifest: str | None = None,
    split_column: str = "split",
    group_column: str | None = None,
    label_column: str = "label",
    sample_rate: int = 16000,
    seconds: float = 1.0,
    align: str = "center",
    level_db: float | None = -30.0,
    features: str = "logmel",
    n_mels: int = 40,
    n_fft: int = 400,
    hop_length: int = 160,
    val_fraction: float = 0.15,
    test_fraction: float = 0.15,
    val_size: int | None = None,
    per_class: int | None = None,
    seed: int = 0,
    split_seed: int = 0,
    subset: int | None = None,
) -> Splits:
    """A folder of WAV/FLAC clips, one subfolder per class -> log-mel ``x [1, n_mels, frames]``.

    Args:
        manifest: CSV inside ``data_dir`` (``path,label`` + optional ``split``/group columns).
        split_column: manifest column holding train/val/test (used unless ``group_column`` is set).
        group_column: manifest column to split by (e.g. ``voice``): test groups drawn with
            ``split_seed``, validation groups with ``seed``; no group is in two splits.
        label_column: manifest column holding the class (default ``label``; e.g. ``voice``).
        seconds: clip length after crop/pad (``align``: ``center`` or ``start``).
        level_db: RMS level each clip is scaled to, in dB full scale (None: unchanged).
        features: ``logmel`` (``[1, n_mels, 1 + samples // hop_length]``) or ``wave`` (``[samples]``).
        val_fraction, test_fraction: shares of each class's clips (or of the groups) held out.
        val_size: validation clips (split by class) or groups (split by group), instead of the fraction.
        per_class: keep only this many training clips per class (chosen with ``seed``).
        subset: keep only this many training clips in all (after ``per_class``).
    """
    if data_dir is None:
        raise KdforgeError(
            "dataset 'audio_folder' needs a directory", "pass data.data_dir=DIR (or --data-dir)"
        )
    root = Path(data_dir)
    if not root.is_dir():
        raise KdforgeError(f"audio folder {root} does not exist", "pass an existing data.data_dir")
    if features not in ("logmel", "wave") or align not in ("center", "start"):
        raise KdforgeError(
            f"audio_folder: features='{features}', align='{align}'",
            "use features logmel|wave, align center|start",
        )
    files, labels, given, groups = _list_clips(root, manifest, split_column, group_column, label_column)
    if given is not None:
        bad = sorted(set(given) - set(SPLITS))
        if bad:
            raise KdforgeError(
                f"unknown split name(s) {bad} in column '{split_column}'", "use train, val, test"
            )
        where = list(given)
        train_idx = [i for i, s in enumerate(where) if s == "train"]
        for missing, fraction, seed_for in (("test", test_fraction, split_seed), ("val", val_fraction, seed)):
            if missing not in where:  # carve the missing split from train, class-stratified
                carved = _split_by_class(
                    [labels[i] for i in train_idx], 0.0, fraction, None, seed_for, seed_for
                )
                for i, s in zip(train_idx, carved, strict=True):
                    where[i] = missing if s == "test" else "train"
                train_idx = [i for i in train_idx if where[i] == "train"]
    elif groups is not None:
        where = _split_by_group(groups, val_fraction, test_fraction, val_size, seed, split_seed)
    else:
        where = _split_by_class(labels, val_fraction, test_fraction, val_size, seed, split_seed)
    classes = sorted({labels[i] for i, s in enumerate(where) if s == "train"})
    unseen = sorted({labels[i] for i, s in enumerate(where) if s != "train"} - set(classes))
    if unseen:
        raise KdforgeError(
            f"label(s) {unseen[:5]} appear in val/test but never in training", "add training clips of them"
        )
    index = {c: i for i, c in enumerate(classes)}
    options = {"sample_rate": sample_rate, "seconds": seconds, "align": align, "level_db": level_db}
    mel = {"n_mels": n_mels, "n_fft": n_fft, "hop_length": hop_length} if features == "logmel" else None
    x = clip_features(files, **options, mel=mel)
    y = torch.tensor([index[label] for label in labels], dtype=torch.int64)
    parts = {s: [i for i, w in enumerate(where) if w == s] for s in SPLITS}
    order = np.random.default_rng(seed + 2).permutation(parts["train"]).tolist()
    if per_class is not None:
        kept: dict[str, int] = {}
        for i in list(order):
            kept[labels[i]] = kept.get(labels[i], 0) + 1
            if kept[labels[i]] > per_class:
                order.remove(i)
    if subset is not None:
        order = order[:subset]
    parts["train"] = sorted(order)
    for s, idx in parts.items():
        if not idx:
            raise KdforgeError(
                f"audio_folder {root}: the {s} split is empty ({len(files)} clips in all)",
                "add clips (or groups), or lower val_fraction/test_fraction",
            )
    data = {s: TensorData({"x": x[torch.tensor(idx)], "y": y[torch.tensor(idx)]}) for s, idx in parts.items()}
    splits = Splits(
        data["train"], data["val"], data["test"], len(classes), tuple(x.shape[1:]), f"audio:{root}"
    )
    splits.class_names = classes  # type: ignore[attr-defined]
    splits.files = {s: [str(files[i]) for i in idx] for s, idx in parts.items()}  # type: ignore[attr-defined]
    return splits


__all__ = ["audio_folder", "clip_features", "fix_length", "read_audio", "read_manifest", "write_wav"]
