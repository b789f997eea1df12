"""Typed run configuration: YAML recipes plus dotted ``key=value`` overrides.

A recipe is a YAML file mirroring :class:`RunConfig`. Unknown keys and wrong
types fail at load time with the nearest valid key names. Free-form ``kwargs``
maps are checked later against the signature/config of the model or method
they configure.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
import os
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from kdforge.errors import KdforgeError, nearest

SCHEMA_VERSION = 1


@dataclass
class DataConfig:
    """Which data set to load and how to batch it."""

    name: str = "fashion_mnist"
    data_dir: str | None = None  # directory with the four IDX files (None: dataset default)
    val_size: int | None = None  # carved from train with the run seed (None: dataset default)
    subset: int | None = None  # use only this many training examples (fast runs)
    batch_size: int = 128  # global batch size (split across processes)
    eval_batch_size: int = 1000
    kwargs: dict[str, Any] = field(default_factory=dict)


@dataclass
class ModelConfig:
    """A model, its keyword arguments and optional weights.

    ``name`` is a registered model (``kdforge list``) or a reference: ``hf:DIR``,
    ``torchscript:FILE``, ``torchvision:ARCH``, ``timm:ARCH``, ``py:MODULE:FUNCTION`` or
    ``FILE.py:FUNCTION`` (see :mod:`kdforge.models.reference`). ``checkpoint`` is a weights
    file (``.safetensors``, or a ``.pt``/``.pth`` state dict). Relative paths in a recipe file
    resolve against its directory, ``"{output_dir}/..."`` against the run's output_dir.
    """

    name: str = "mlp"
    kwargs: dict[str, Any] = field(default_factory=dict)
    checkpoint: str | None = None  # weights to load (e.g. "{output_dir}/teacher/student.safetensors")


@dataclass
class MethodConfig:
    """A registered distillation method and its options (see the method's ``Config``)."""

    name: str = "supervised"
    kwargs: dict[str, Any] = field(default_factory=dict)


@dataclass
class TrainConfig:
    """Optimisation, evaluation and checkpointing of the one training loop."""

    epochs: int = 5
    max_steps: int | None = None  # stop after this many optimizer steps in total
    optimizer: str = "adamw"  # sgd | adam | adamw
    lr: float = 1e-3
    momentum: float = 0.9  # sgd only
    weight_decay: float = 0.0
    schedule: str = "cosine"  # constant | cosine | linear
    warmup_steps: int = 0
    grad_clip: float | None = None  # max global grad norm
    mixed_precision: str = "no"  # no | bf16 | fp16
    deterministic: bool = True
    teacher_cache: bool = False  # teacher outputs computed once per example, reused (engine/teacher_cache.py)
    eval_every_steps: int | None = None  # None: once per epoch
    checkpoint_every_steps: int | None = None  # None: at each evaluation
    checkpoint_every_s: float | None = 300.0  # also save when this long since the last (None: off)
    early_stopping_patience: int | None = None  # evaluations without improvement
    monitor: str = "val_acc"  # higher is better
    log_every_steps: int = 20
    progress_every_s: float | None = 30.0  # progress line interval when output is not a terminal


@dataclass
class RunConfig:
    """A whole experiment: data, student, optional teacher, method, training."""

    schema_version: int = SCHEMA_VERSION
    name: str = "run"
    seed: int = 0
    output_dir: str = "runs"
    data: DataConfig = field(default_factory=DataConfig)
    student: ModelConfig = field(default_factory=ModelConfig)
    teacher: ModelConfig | None = None
    method: MethodConfig = field(default_factory=MethodConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def to_dict(self) -> dict[str, Any]:
        """Plain nested dict (YAML/JSON serialisable)."""
        return dataclasses.asdict(self)

    def fingerprint(self) -> str:
        """Hash of everything that defines the model being trained and its data.

        Used to refuse resuming a checkpoint written by a different recipe.
        ``train.epochs``/``max_steps``, output paths and how often the run
        logs or saves are left out so a run can be extended. Paths below ``output_dir``
        (a teacher at ``{output_dir}/teacher/...``) count relative to it, so an output
        directory copied or moved elsewhere keeps its runs.
        """
        return self._hash(with_seed=True, with_length=False)

    def recipe_fingerprint(self) -> str:
        """Hash of the recipe apart from its seed (and names/paths): equal for the seeds of one recipe.

        Unlike :meth:`fingerprint` it includes ``train.epochs``/``max_steps``: runs of
        different lengths are different rows of a table.
        """
        return self._hash(with_seed=False, with_length=True)

    def matches_fingerprint(self, recorded: str | None) -> bool:
        """Whether ``recorded`` (from a checkpoint or summary) is this recipe's :meth:`fingerprint`.

        Also accepts the fingerprint kdforge wrote before paths below ``output_dir`` were hashed
        relative to it, so runs made by an older kdforge in the same place still resume.
        """
        return recorded in (self.fingerprint(), self._hash(with_seed=True, with_length=False, portable=False))

    def _hash(self, with_seed: bool, with_length: bool, portable: bool = True) -> str:
        d = self.to_dict()
        if portable:  # a teacher at {output_dir}/teacher is the same wherever the output dir lies
            d = map_recipe_paths(d, self._portable_path)
        keep = {k: d[k] for k in ("seed", "data", "student", "teacher", "method") if with_seed or k != "seed"}
        left_out = ("log_every_steps", "checkpoint_every_s", "progress_every_s")
        left_out += () if with_length else ("epochs", "max_steps")
        keep["train"] = {k: v for k, v in d["train"].items() if k not in left_out}
        return hashlib.sha256(json.dumps(keep, sort_keys=True).encode()).hexdigest()[:16]

    def _portable_path(self, path: str) -> str:
        """``path`` as ``{output_dir}/...`` when it lies below this run's output_dir, else unchanged.

        Only the output_dir is an anchor: relative to the current directory, the same file would
        hash differently from another working directory and a run could not be resumed there.
        """
        root = os.path.abspath(Path(self.output_dir).expanduser())
        if os.path.isabs(path) and os.path.commonpath([root, os.path.abspath(path)]) == root:
            return f"{OUTPUT_DIR_TOKEN}/{Path(os.path.relpath(path, root)).as_posix()}"
        return path

    @property
    def run_dir(self) -> Path:
        """Directory this run writes to."""
        return Path(self.output_dir) / self.name


# ----------------------------------------------------------------------------- building


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", str(tp).replace("typing.", ""))


def _coerce(value: Any, tp: Any, key: str) -> Any:
    """Check ``value`` against type hint ``tp`` (recursing into dataclasses)."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        errors = []
        for a in args:
            if a is type(None):
                continue
            try:
                return _coerce(value, a, key)
            except KdforgeError as e:
                errors.append(e)
        raise errors[0]
    if dataclasses.is_dataclass(tp):
        if isinstance(value, tp):
            return value
        if not isinstance(value, dict):
            raise KdforgeError(
                f"config key '{key}' must be a mapping, got {type(value).__name__} ({value!r})",
                f"write '{key}:' as a YAML mapping of its fields",
            )
        return _build(tp, value, key)
    if origin is dict or tp is dict:
        if not isinstance(value, dict):
            raise KdforgeError(f"config key '{key}' must be a mapping, got {value!r}", "fix the recipe")
        return dict(value)
    if origin is list or tp is list:
        if not isinstance(value, list):
            raise KdforgeError(f"config key '{key}' must be a list, got {value!r}", "fix the recipe")
        return list(value)
    if tp is Any:
        return value
    if tp is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if tp is bool and not isinstance(value, bool):
        raise KdforgeError(f"config key '{key}' must be true/false, got {value!r}", "use true or false")
    if tp is int and isinstance(value, bool):
        raise KdforgeError(f"config key '{key}' must be an integer, got {value!r}", "fix the value")
    if not isinstance(value, tp):
        raise KdforgeError(
            f"config key '{key}' must be of type {_type_name(tp)}, got {type(value).__name__} ({value!r})",
            f"give '{key}' a {_type_name(tp)} value",
        )
    return value


def _build(cls: type, data: dict[str, Any], prefix: str = "") -> Any:
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    kwargs = {}
    for k, v in data.items():
        full = f"{prefix}.{k}" if prefix else k
        if k not in names:
            near = nearest(k, names)
            raise KdforgeError(
                f"unknown config key '{full}' (did you mean: {', '.join(near)})",
                f"valid keys under '{prefix or '<top>'}': {', '.join(names)}",
            )
        kwargs[k] = _coerce(v, hints[k], full)
    return cls(**kwargs)


def from_dict(data: dict[str, Any]) -> RunConfig:
    """Build and validate a :class:`RunConfig` from a nested dict.

    Paths (see :func:`map_recipe_paths`) come out absolute: ``{output_dir}/...`` below the
    run's ``output_dir``, other relative paths against the current directory.
    """
    if not isinstance(data, dict):
        raise KdforgeError("a recipe must be a YAML mapping at the top level", "see configs/ for examples")
    version = data.get("schema_version", SCHEMA_VERSION)
    if version != SCHEMA_VERSION:
        raise KdforgeError(
            f"recipe schema_version {version} is not supported (this kdforge reads {SCHEMA_VERSION})",
            "update the recipe to the current schema (see configs/)",
        )
    output_dir = data.get("output_dir") or RunConfig.output_dir
    return _build(RunConfig, map_recipe_paths(data, lambda p: _absolute(p, Path.cwd(), str(output_dir))))


# ----------------------------------------------------------------------------- paths

OUTPUT_DIR_TOKEN = "{output_dir}"  # a path starting with it lies below the run's output_dir
PATH_KWARGS = ("init_from", "model_dir")  # model kwargs that name a file or directory
PATH_SCHEMES = ("hf", "torchscript")  # model references ``scheme:PATH`` whose target is a path


def _absolute(path: str, base: Path, output_dir: str | None) -> str:
    """``path`` made absolute: below ``output_dir`` for ``{output_dir}/...``, else against ``base``."""
    if path.startswith(OUTPUT_DIR_TOKEN):
        if output_dir is None:  # expanded later, once overrides have set output_dir
            return path
        rest = path[len(OUTPUT_DIR_TOKEN) :].lstrip("/\\")
        return os.path.abspath(Path(output_dir).expanduser() / rest)
    return os.path.abspath(base / Path(path).expanduser())


def _map_model_name(name: str, fn: Callable[[str], str]) -> str:
    """Apply ``fn`` to the path inside a model reference (``hf:DIR``, ``FILE.py:FUNCTION``...)."""
    scheme, sep, target = name.partition(":")
    if sep and scheme in PATH_SCHEMES:
        return f"{scheme}:{fn(target)}"
    file, sep, function = name.rpartition(":")
    if sep and file.endswith(".py"):
        return f"{fn(file)}:{function}"
    return name


def map_recipe_paths(data: dict[str, Any], fn: Callable[[str], str]) -> dict[str, Any]:
    """A copy of a recipe dict with ``fn`` applied to each path in it.

    The paths are ``data.data_dir``, and for ``student`` and ``teacher``: ``checkpoint``, the
    path inside a model reference (``hf:DIR``, ``torchscript:FILE``, ``FILE.py:FUNCTION``) and
    the kwargs named in :data:`PATH_KWARGS`.
    """

    def apply(section: Any, key: str, where: str) -> None:
        if not isinstance(section, dict):
            return
        value = section.get(key)
        if isinstance(value, str):
            section[key] = fn(value)
        elif isinstance(value, dict) and "output_dir" in value:  # YAML read {output_dir}/x as a mapping
            raise KdforgeError(
                f"config key '{where}' holds a mapping {value!r}, not a path",
                f'put the path in quotes: {key}: "{OUTPUT_DIR_TOKEN}/..."',
            )

    data = copy.deepcopy(data)
    apply(data.get("data"), "data_dir", "data.data_dir")
    for role in ("student", "teacher"):
        model = data.get(role)
        if not isinstance(model, dict):
            continue
        apply(model, "checkpoint", f"{role}.checkpoint")
        if isinstance(model.get("name"), str):
            model["name"] = _map_model_name(model["name"], fn)
        for key in PATH_KWARGS:
            apply(model.get("kwargs"), key, f"{role}.kwargs.{key}")
    return data


def resolve_recipe_paths(data: dict[str, Any], recipe_dir: str | Path) -> dict[str, Any]:
    """Relative paths of a recipe file made absolute against the file's directory ``recipe_dir``.

    ``{output_dir}/...`` paths are kept for :func:`from_dict` to expand (after overrides).
    """
    return map_recipe_paths(data, lambda p: _absolute(p, Path(recipe_dir), None))


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply ``a.b.c=value`` overrides (values parsed as YAML) to a nested dict."""
    data = json.loads(json.dumps(data))  # deep copy
    for ov in overrides:
        if "=" not in ov:
            raise KdforgeError(f"override '{ov}' is not of the form key=value", "write e.g. train.lr=0.01")
        key, raw = ov.split("=", 1)
        set_dotted(data, key, yaml.safe_load(raw) if raw != "" else None)
    return data


def set_dotted(data: dict[str, Any], key: str, value: Any) -> None:
    """Set ``data[a][b][c] = value`` for ``key == "a.b.c"`` in place, creating missing mappings.

    Unlike a ``key=value`` override the value is used as given (no YAML parsing), so
    ``1e-3`` stays a float and ``"4"`` stays a string.
    """
    parts = key.strip().split(".")
    node = data
    for part in parts[:-1]:
        if node.get(part) is None:
            node[part] = {}
        node = node[part]
        if not isinstance(node, dict):
            raise KdforgeError(f"override '{key}': '{part}' is not a mapping", "check the key path")
    node[parts[-1]] = value


BASE_KEY = "base"  # top-level recipe key naming the recipe(s) this one extends


def merge_recipes(base: dict[str, Any], overlay: dict[str, Any]) -> dict[str, Any]:
    """``overlay`` on top of ``base``: mappings merge key by key, any other value replaces.

    Lists replace too (``student.kwargs.hidden: [32]`` over ``[64, 64]`` gives ``[32]``).
    Neither input is modified.
    """
    out = copy.deepcopy(base)
    for key, value in overlay.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge_recipes(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def _read_yaml(path: Path, used_by: Path | None) -> dict[str, Any]:
    if not path.is_file():
        fix = "give the path of a YAML recipe (see configs/)"
        if used_by:
            fix += f"; a {BASE_KEY} path is relative to the recipe naming it"
        where = f" (the {BASE_KEY} of '{used_by}')" if used_by else ""
        raise KdforgeError(f"recipe file '{path}'{where} does not exist", fix)
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as e:
        raise KdforgeError(f"recipe '{path}' is not valid YAML: {e}", "fix the YAML syntax") from None
    if not isinstance(data, dict):
        raise KdforgeError(
            f"recipe '{path}' must be a YAML mapping at the top level", "see configs/ for examples"
        )
    return data


def read_recipe(
    path: str | Path, _chain: tuple[Path, ...] = (), _used_by: Path | None = None
) -> dict[str, Any]:
    """A recipe file as a plain dict, its ``base:`` recipes merged in (not yet validated).

    ``base:`` names one recipe file or a list of them, relative to the file naming it; they
    are merged in order (:func:`merge_recipes`), then the file's own keys on top. Bases
    may have bases of their own, and may be fragments that are no whole recipe.

    Raises:
        KdforgeError: for a missing or invalid file, a ``base`` that is not a path or list
            of paths, or a cycle of bases.
    """
    path = Path(path)
    data = _read_yaml(path, _used_by)
    bases = data.pop(BASE_KEY, None)
    data = resolve_recipe_paths(data, path.parent)  # each file's paths against its own directory
    if bases is None:
        return data
    if isinstance(bases, str):
        bases = [bases]
    if not isinstance(bases, list) or not all(isinstance(b, str) for b in bases):
        raise KdforgeError(
            f"'{BASE_KEY}' in recipe '{path}' must be a path or a list of paths, got {bases!r}",
            f"write e.g. '{BASE_KEY}: _common.yaml'",
        )
    chain = (*_chain, path.resolve())
    merged: dict[str, Any] = {}
    for base in bases:
        base_path = path.parent / base
        if base_path.resolve() in chain:
            cycle = " -> ".join(str(p.name) for p in (*chain, base_path.resolve()))
            raise KdforgeError(
                f"recipe bases form a cycle: {cycle}", f"remove one of the '{BASE_KEY}:' entries"
            )
        merged = merge_recipes(merged, read_recipe(base_path, chain, path))
    return merge_recipes(merged, data)


def load_recipe(path: str | Path, overrides: list[str] | None = None) -> RunConfig:
    """Load a YAML recipe with its ``base:`` recipes (:func:`read_recipe`), apply overrides, validate.

    Relative paths written in a recipe file (or a base) resolve against that file's directory;
    ``{output_dir}/...`` against the run's ``output_dir`` (after overrides and ``--output-dir``);
    paths given as overrides against the current directory. See :func:`map_recipe_paths`.
    """
    return from_dict(apply_overrides(read_recipe(path), overrides or []))


def save_config(cfg: RunConfig, path: str | Path) -> None:
    """Write the resolved config as YAML."""
    Path(path).write_text(yaml.safe_dump(cfg.to_dict(), sort_keys=False))


def build_config(config_cls: type, data: dict[str, Any], prefix: str = "") -> Any:
    """Build any typed config dataclass from a nested dict, with the recipe loader's key checks."""
    return _build(config_cls, data, prefix)


def check_kwargs(kind: str, name: str, kwargs: dict[str, Any], config_cls: type) -> Any:
    """Validate free-form ``kwargs`` against an options dataclass and build it."""
    return _build(config_cls, kwargs, f"{kind}.kwargs[{name}]")
