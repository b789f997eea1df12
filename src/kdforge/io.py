"""The one place where kdforge reads and writes files of its own.

* **Atomic writes** (:func:`atomic_write`, :func:`atomic_write_bytes`, :func:`atomic_write_text`):
  the content goes to a temporary file beside the target, is flushed to disk and renamed over
  the target with ``os.replace``; a crash or a full disk leaves the previous file intact.
* **Tensors** (:func:`save_tensors` / :func:`load_tensors`): safetensors files with optional
  string metadata, written atomically, read with one clear error for a missing or corrupt file;
  :func:`load_tensors` also reads ``.pt``/``.pth``/``.bin`` state dicts (``weights_only=True``).
* **Models** (:func:`save_model` / :func:`load_model`, a ``from_pretrained``-style pair):
  ``<path>.safetensors`` holds the weights and ``<path>.json`` the spec that rebuilds the
  architecture (``{"model": name, "kwargs": {...}, "input_shape": [...], "num_classes": n}``).
  :func:`load_weights` loads a weights file strictly into an existing model.
* **Cache root** (:func:`cache_root`): ``$KDFORGE_CACHE``, default ``~/.cache/kdforge``.

This module sits at the bottom of the package: it imports nothing from kdforge but
:mod:`kdforge.errors`. Rebuilding a model from its spec needs the model registry, so
:func:`load_model` takes the builder as an argument (:func:`kdforge.models.load_model`
passes :func:`kdforge.models.build_model`).
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Callable, Collection, Mapping
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file
from torch import Tensor, nn

from kdforge.errors import KdforgeError

CACHE_ENV = "KDFORGE_CACHE"
TORCH_SUFFIXES = (".pt", ".pth", ".bin")  # read with torch.load(weights_only=True); the rest: safetensors
STATE_DICT_KEYS = ("state_dict", "model_state", "model_state_dict", "model")
SPEC_KEYS = ("model", "kwargs", "input_shape", "num_classes")

StateCheck = Callable[[Collection[str], Collection[str], str], None]
_STATE_CHECKS: list[StateCheck] = []


def cache_root() -> Path:
    """Root of kdforge's local caches: ``$KDFORGE_CACHE`` when set, else ``~/.cache/kdforge``.

    Unzipped model files, the VADER sdist and teacher-embedding caches live below it.
    """
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "kdforge")


# ----------------------------------------------------------------------------- atomic writes


def atomic_write(
    path: str | Path,
    writer: Callable[[Path], None],
    what: str = "file",
    fix: str = "free disk space or choose a writable directory; the previous file (if any) is intact",
) -> Path:
    """Write ``path`` all-or-nothing: ``writer(tmp)`` fills a temporary file, which is renamed over it.

    Args:
        path: the file to (re)write; its directory is created if missing.
        writer: called with the temporary path; must create that file.
        what: how to name the file in an error (``"checkpoint"``).
        fix: what the user should do when the write fails.

    Returns:
        ``path`` as a :class:`~pathlib.Path`.

    Raises:
        KdforgeError: the file cannot be written (full disk, no permission); the previous
            content of ``path``, if any, is intact and no temporary file is left behind.
    """
    path = Path(path)
    tmp = path.with_name(f"{path.name}.tmp{os.getpid()}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        writer(tmp)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as e:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise KdforgeError(f"cannot write {what} '{path}': {e.strerror or e}", fix) from None
    return path


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically (see :func:`atomic_write`)."""
    return atomic_write(path, lambda tmp: tmp.write_bytes(data))


def atomic_write_text(path: str | Path, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically (see :func:`atomic_write`)."""
    return atomic_write_bytes(path, text.encode("utf-8"))


# ----------------------------------------------------------------------------- tensors


def save_tensors(
    path: str | Path, tensors: Mapping[str, Tensor], metadata: dict[str, str] | None = None
) -> Path:
    """Write ``tensors`` (moved to CPU, made contiguous) as one safetensors file, atomically.

    Tensors sharing memory (tied weights) are written as separate copies, as safetensors requires.
    """
    plain, storages = {}, set()
    for key, value in tensors.items():
        tensor = value.detach().cpu().contiguous()
        storage = tensor.untyped_storage().data_ptr()
        plain[key] = tensor.clone() if storage in storages else tensor
        storages.add(storage)
    return atomic_write(path, lambda tmp: save_file(plain, str(tmp), metadata=metadata))


def load_tensors(
    path: str | Path, what: str = "tensor file", fix: str = "write it again"
) -> dict[str, Tensor]:
    """Read a safetensors file (or a ``torch.save``-d state dict: ``.pt``, ``.pth``, ``.bin``) onto the CPU.

    Args:
        path: the file.
        what: how to name the file in an error (``"teacher checkpoint"``).
        fix: what the user should do about a missing or corrupt file.

    Raises:
        KdforgeError: the file is missing or not a readable safetensors file.
    """
    path = Path(path)
    if not path.is_file():
        raise KdforgeError(f"{what} '{path}' does not exist", fix)
    if path.suffix in TORCH_SUFFIXES:
        return _load_torch_state(path, what, fix)
    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError) as e:
        raise KdforgeError(
            f"{what} '{path}' is corrupt (not a readable safetensors file: {e})", fix
        ) from None


def _load_torch_state(path: Path, what: str, fix: str) -> dict[str, Tensor]:
    """A state dict saved with ``torch.save`` (tensors only: ``weights_only=True``, no code runs)."""
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001  (unpickling raises many kinds)
        raise KdforgeError(
            f"{what} '{path}' is corrupt (not a readable torch state dict: {e})", fix
        ) from None
    for key in STATE_DICT_KEYS:  # training scripts often wrap the state dict
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            obj = obj[key]
            break
    if not isinstance(obj, dict) or not all(isinstance(v, Tensor) for v in obj.values()):
        raise KdforgeError(
            f"{what} '{path}' holds a {type(obj).__name__}, not a state dict of tensors",
            "save model.state_dict() with torch.save (or use .safetensors)",
        )
    return dict(obj)


def read_metadata(path: str | Path, what: str = "tensor file") -> dict[str, str]:
    """The string metadata stored in a safetensors header (empty when there is none).

    Raises:
        KdforgeError: the file is missing or corrupt.
    """
    try:
        with safe_open(str(path), "pt") as f:
            return dict(f.metadata() or {})
    except (SafetensorError, OSError, ValueError) as e:
        raise KdforgeError(f"{what} '{path}' is unreadable: {e}", "write it again") from None


# ----------------------------------------------------------------------------- models


def register_state_check(check: StateCheck) -> StateCheck:
    """Add a check run before a state dict is loaded strictly (:func:`load_state`).

    ``check(model_keys, state_keys, source)`` raises a :class:`KdforgeError` that explains a
    particular kind of mismatch better than the generic one (e.g. the over-parameterized
    layers register one for MPO/SVD tensors meeting plain ``nn.Linear`` layers).
    """
    if check not in _STATE_CHECKS:
        _STATE_CHECKS.append(check)
    return check


def load_state(
    model: nn.Module, state: Mapping[str, Tensor], source: str = "checkpoint", role: str = "model"
) -> nn.Module:
    """Load ``state`` into ``model`` strictly: every key present with its exact shape, none extra.

    Args:
        model: the module to fill.
        state: tensors by state-dict key.
        source: how to name the state in an error (``"teacher checkpoint 'x.safetensors'"``).
        role: the model's role in the recipe (``teacher``/``student``), named in the fix.

    Raises:
        KdforgeError: naming the missing, mismatching and unexpected keys (first four of each).
    """
    own = model.state_dict()
    for check in _STATE_CHECKS:
        check(own.keys(), state.keys(), source)
    missing = sorted(k for k in own if k not in state)
    wrong = sorted(k for k in own if k in state and tuple(state[k].shape) != tuple(own[k].shape))
    unexpected = sorted(k for k in state if k not in own)
    if missing or wrong or unexpected:
        shapes = [f"{k} {tuple(state[k].shape)} vs {tuple(own[k].shape)}" for k in wrong[:4]]
        raise KdforgeError(
            f"{source} does not fit the {role} architecture (missing: {missing[:4]}, "
            f"wrong shape (file vs model): {shapes}, unexpected: {unexpected[:4]})",
            f"make {role}.name/kwargs match the model that wrote the checkpoint",
        )
    model.load_state_dict(dict(state))
    return model


def load_weights(model: nn.Module, path: str | Path, role: str = "model") -> nn.Module:
    """Load a weights file (``.safetensors``) strictly into ``model``.

    Raises:
        KdforgeError: missing or corrupt file, or a file written for another architecture.
    """
    path = Path(path)
    state = load_tensors(
        path,
        f"{role} checkpoint",
        f"train the {role} first (e.g. `kdforge quickstart`) or fix {role}.checkpoint",
    )
    return load_state(model, state, f"{role} checkpoint '{path}'", role)


def model_spec(
    name: str, kwargs: dict[str, Any], input_shape: tuple[int, ...], num_classes: int
) -> dict[str, Any]:
    """The JSON spec that rebuilds a model: builder name or reference, kwargs, data shape, classes."""
    return {
        "model": name,
        "kwargs": dict(kwargs),
        "input_shape": [int(s) for s in input_shape],
        "num_classes": int(num_classes),
    }


def _pair(path: str | Path) -> tuple[Path, Path]:
    """``(weights, spec)`` paths of a saved model given either file or their common stem."""
    path = Path(path)
    stem = path.with_suffix("") if path.suffix in (".safetensors", ".json") else path
    return stem.with_name(stem.name + ".safetensors"), stem.with_name(stem.name + ".json")


def save_model(model: nn.Module, spec: dict[str, Any], path: str | Path) -> Path:
    """Save ``model`` as ``<path>.safetensors`` (weights) + ``<path>.json`` (``spec``), both atomically.

    Args:
        model: the module whose ``state_dict`` is written.
        spec: from :func:`model_spec`.
        path: ``runs/x/student``, or either file name of the pair.

    Returns:
        The weights file.
    """
    missing = [k for k in SPEC_KEYS if k not in spec]
    if missing:
        raise ValueError(f"model spec lacks {missing}; build it with model_spec()")
    weights, spec_path = _pair(path)
    save_tensors(weights, model.state_dict())
    atomic_write_text(spec_path, json.dumps(spec, indent=1))
    return weights


def read_spec(path: str | Path) -> dict[str, Any]:
    """The spec saved beside a model's weights.

    Raises:
        KdforgeError: the ``.json`` is missing, not JSON, or lacks a key.
    """
    spec_path = _pair(path)[1]
    if not spec_path.is_file():
        raise KdforgeError(
            f"'{spec_path}' (the model spec beside the weights) is missing",
            "save models with kdforge (kdforge.io.save_model) so both files exist",
        )
    try:
        spec = json.loads(spec_path.read_text())
    except (OSError, ValueError) as e:
        raise KdforgeError(f"model spec '{spec_path}' is unreadable: {e}", "save the model again") from None
    missing = [k for k in SPEC_KEYS if not isinstance(spec, dict) or k not in spec]
    if missing:
        raise KdforgeError(f"model spec '{spec_path}' lacks {missing}", "save the model again with kdforge")
    return spec


def load_model(path: str | Path, build: Callable[[dict[str, Any]], nn.Module]) -> nn.Module:
    """Rebuild a model saved by :func:`save_model`: ``build(spec)``, then its weights, strictly.

    Most callers want :func:`kdforge.models.load_model`, which supplies ``build``.
    """
    weights, _ = _pair(path)
    model = build(read_spec(path))
    return load_weights(model, weights, "model")


__all__ = [
    "CACHE_ENV",
    "atomic_write",
    "atomic_write_bytes",
    "atomic_write_text",
    "cache_root",
    "load_model",
    "load_state",
    "load_tensors",
    "load_weights",
    "model_spec",
    "read_metadata",
    "read_spec",
    "register_state_check",
    "save_model",
    "save_tensors",
]
