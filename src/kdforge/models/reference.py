"""Models by reference: a user's own teacher or student named in a recipe, without registering it.

:func:`kdforge.models.build_model` accepts, besides registered names, these references
(``ModelConfig.name`` in a recipe, for teacher and student alike):

=========================  =================================================================
``hf:DIR``                 a Hugging Face model directory (``config.json`` + weights), offline
                           (``local_files_only=True``). With a sequence-classification head for
                           the data's classes it is used as is; otherwise (an encoder, or
                           ``head: new``) the encoder gets a new linear head on its mean-pooled
                           tokens. ``layers: [0, 2]`` keeps those encoder layers and
                           ``width_factor: 2`` narrows a BERT encoder (a student derived from
                           the teacher); ``init_from`` loads saved weights first
                           (:mod:`kdforge.models.hf_dir`).
``torchscript:FILE``       a ``torch.jit.save``-d module (:class:`TorchScriptModel`: a single
                           batch input is passed by position).
``torchvision:ARCH``       ``torchvision.models.get_model(ARCH, num_classes=...)``; weights from
                           the recipe's ``checkpoint`` (optional extra ``torchvision``).
``timm:ARCH``              ``timm.create_model(ARCH, num_classes=..., in_chans=...)``; weights
                           from ``checkpoint`` (optional extra ``timm``).
``py:MODULE:FUNCTION``     a builder from an importable module.
``FILE.py:FUNCTION``       a builder from a Python file.
=========================  =================================================================

A builder is called as ``FUNCTION(input_shape=..., num_classes=..., **kwargs)`` and must
return an ``nn.Module``. Every model's ``forward`` takes the batch's inputs as keyword
arguments (``x`` for images; ``input_ids``, ``attention_mask`` for text) and returns logits.
Nothing is ever downloaded: hub names are not references, and pre-trained weights come from
local files only.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import inspect
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from kdforge.errors import KdforgeError, nearest
from kdforge.models.hf_dir import hf_model
from kdforge.registry import REFERENCE_FORMS

#: the reference forms, for error messages and ``kdforge list``


def is_reference(name: str) -> bool:
    """Whether a model name is a reference (``scheme:target``) rather than a registered name."""
    return ":" in name


def carries_weights(name: str) -> bool:
    """Whether a model name brings trained weights without a ``checkpoint``.

    True for ``hf:``, ``torchscript:`` and user builders (``py:``, ``FILE.py:``, which may load
    their own weights); False for registered names and ``torchvision:``/``timm:`` architectures.
    """
    scheme = name.partition(":")[0]
    return is_reference(name) and scheme not in ("torchvision", "timm")


def call_builder(
    name: str, builder: Callable[..., Any], input_shape: tuple[int, ...], num_classes: int, kwargs: dict
) -> nn.Module:
    """Call ``builder(input_shape=..., num_classes=..., **kwargs)`` with clear errors.

    Raises:
        KdforgeError: ``builder`` is not callable, lacks an option in ``kwargs`` (nearest ones
            listed), fails on its arguments, or returns something other than an ``nn.Module``.
    """
    if not callable(builder):
        raise KdforgeError(
            f"model '{name}' is a {type(builder).__name__}, not a callable builder",
            "point at a function (input_shape, num_classes, **kwargs) -> nn.Module",
        )
    params = inspect.signature(builder).parameters
    has_var_kw = any(p.kind is p.VAR_KEYWORD for p in params.values())
    valid = [k for k in params if k not in ("input_shape", "num_classes")]
    for k in kwargs:
        if k not in params and not has_var_kw:
            raise KdforgeError(
                f"model '{name}' has no option '{k}' (did you mean: {', '.join(nearest(k, valid))})",
                f"valid options for '{name}': {', '.join(valid) or '(none)'}",
            )
    try:
        model = builder(input_shape=tuple(input_shape), num_classes=num_classes, **kwargs)
    except (TypeError, ValueError) as e:
        raise KdforgeError(f"cannot build model '{name}' with {kwargs}: {e}", "fix its kwargs") from None
    if not isinstance(model, nn.Module):
        raise KdforgeError(
            f"model builder '{name}' returned a {type(model).__name__}, not a torch nn.Module",
            "make the builder return the model (an nn.Module)",
        )
    return model


def build_reference(name: str, input_shape: tuple[int, ...], num_classes: int, **kwargs: Any) -> nn.Module:
    """Build the model a reference names (see the module docstring for the forms).

    Raises:
        KdforgeError: unknown scheme (the valid forms are listed), or the reference's own error.
    """
    scheme, _, target = name.partition(":")
    if scheme in _SCHEMES:
        return _SCHEMES[scheme](target, tuple(input_shape), num_classes, kwargs)
    file, _, function = name.rpartition(":")
    if file.endswith(".py"):
        return call_builder(
            name, _attribute(_load_file(file), function, file), input_shape, num_classes, kwargs
        )
    raise KdforgeError(
        f"unknown model reference scheme '{scheme}:' in '{name}'",
        f"use a registered model name (`kdforge list`) or one of: {', '.join(REFERENCE_FORMS)}",
    )


# ----------------------------------------------------------------------------- Hugging Face


def _hf(target: str, input_shape: tuple[int, ...], num_classes: int, kwargs: dict) -> nn.Module:
    return call_builder(f"hf:{target}", _bind(hf_model, target), input_shape, num_classes, kwargs)


def _bind(function: Callable[..., nn.Module], target: str) -> Callable[..., nn.Module]:
    """``function`` with its first argument fixed, keeping the signature of the rest for checks."""

    def bound(**kwargs: Any) -> nn.Module:
        return function(target, **kwargs)

    sig = inspect.signature(function)
    bound.__signature__ = sig.replace(parameters=list(sig.parameters.values())[1:])  # type: ignore[attr-defined]
    return bound


# ----------------------------------------------------------------------------- TorchScript


class TorchScriptModel(nn.Module):
    """A loaded TorchScript module called the kdforge way: one batch input goes in positionally.

    A scripted ``nn.Sequential`` names its input ``input``, a user's module perhaps ``x``: with a
    single input (images: ``x``) the batch value is passed by position, with several (text:
    ``input_ids``, ``attention_mask``) by name. Module paths gain the prefix ``module.``.
    """

    def __init__(self, module: nn.Module) -> None:
        super().__init__()
        self.module = module

    def forward(self, **inputs: Tensor) -> Tensor:
        if len(inputs) == 1:
            return self.module(next(iter(inputs.values())))
        return self.module(**inputs)


def _torchscript(target: str, input_shape: tuple[int, ...], num_classes: int, kwargs: dict) -> nn.Module:
    if kwargs:
        raise KdforgeError(
            f"a TorchScript model takes no kwargs (got {sorted(kwargs)})", "remove kwargs from the recipe"
        )
    path = Path(target)
    if not path.is_file():
        raise KdforgeError(
            f"TorchScript file '{path}' does not exist", "give torchscript:FILE an existing file"
        )
    try:
        return TorchScriptModel(torch.jit.load(str(path), map_location="cpu"))
    except (RuntimeError, ValueError, OSError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise KdforgeError(
            f"TorchScript file '{path}' does not load: {first}",
            "write it with torch.jit.save(torch.jit.script(model), FILE) (or torch.jit.trace)",
        ) from None


# ----------------------------------------------------------------------------- torchvision / timm


def _optional(module: str, scheme: str, extra: str) -> Any:
    """Import an optional package, or say which extra installs it."""
    try:
        return importlib.import_module(module)
    except Exception as e:  # noqa: BLE001  (a broken install raises RuntimeError, not ImportError)
        raise KdforgeError(
            f"'{scheme}:' models need the Python package '{module}', which does not import here "
            f"({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''})",
            f"pip install 'kdforge[{extra}]' (a {module} build matching your torch), or export the "
            "model with torch.jit.save and use torchscript:FILE",
        ) from None


def _unknown_arch(kind: str, arch: str, names: list[str]) -> KdforgeError:
    return KdforgeError(
        f"{kind} has no architecture '{arch}' (nearest: {', '.join(nearest(arch, names))})",
        f"use one of {kind}'s model names",
    )


def _torchvision(target: str, input_shape: tuple[int, ...], num_classes: int, kwargs: dict) -> nn.Module:
    torchvision = _optional("torchvision", "torchvision", "torchvision")
    names = list(torchvision.models.list_models())
    if target not in names:
        raise _unknown_arch("torchvision", target, names)
    return call_builder(
        f"torchvision:{target}",
        lambda input_shape, num_classes, **kw: torchvision.models.get_model(
            target, weights=None, num_classes=num_classes, **kw
        ),
        input_shape,
        num_classes,
        kwargs,
    )


def _timm(target: str, input_shape: tuple[int, ...], num_classes: int, kwargs: dict) -> nn.Module:
    timm = _optional("timm", "timm", "timm")
    names = list(timm.list_models())
    if target not in names:
        raise _unknown_arch("timm", target, names)
    channels = {"in_chans": input_shape[0]} if len(input_shape) == 3 else {}
    return call_builder(
        f"timm:{target}",
        lambda input_shape, num_classes, **kw: timm.create_model(
            target, pretrained=False, num_classes=num_classes, **{**channels, **kw}
        ),
        input_shape,
        num_classes,
        kwargs,
    )


# ----------------------------------------------------------------------------- user code

_FILE_MODULES: dict[tuple[str, float], Any] = {}


def _load_file(file: str) -> Any:
    """Import a Python file once per content version (its ``register_*`` calls run once)."""
    path = Path(file)
    if not path.is_file():
        raise KdforgeError(
            f"model builder file '{path}' does not exist", "give FILE.py:FUNCTION an existing file"
        )
    key = (str(path.resolve()), path.stat().st_mtime)
    if key not in _FILE_MODULES:
        digest = hashlib.sha1(key[0].encode()).hexdigest()[:10]
        module_name = f"kdforge_user_{path.stem}_{digest}"
        spec = importlib.util.spec_from_file_location(module_name, path)
        module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
        sys.modules[module_name] = module
        try:
            spec.loader.exec_module(module)  # type: ignore[union-attr]
        except Exception as e:
            sys.modules.pop(module_name, None)
            raise KdforgeError(
                f"running model builder file '{path}' failed: {type(e).__name__}: {e}",
                "fix the error in that file",
            ) from e
        _FILE_MODULES[key] = module
    return _FILE_MODULES[key]


def _attribute(module: Any, function: str, where: str) -> Any:
    if not function or not hasattr(module, function):
        names = [n for n, v in vars(module).items() if callable(v) and not n.startswith("_")]
        raise KdforgeError(
            f"'{where}' has no '{function}' (nearest: {', '.join(nearest(function, names)) or 'none'})",
            f"name a builder function defined in '{where}'",
        )
    return getattr(module, function)


def _python(target: str, input_shape: tuple[int, ...], num_classes: int, kwargs: dict) -> nn.Module:
    module_name, _, function = target.rpartition(":")
    if not module_name:
        raise KdforgeError(f"reference 'py:{target}' lacks the module", "write py:MODULE:FUNCTION")
    try:
        module = importlib.import_module(module_name)
    except ImportError as e:
        raise KdforgeError(
            f"cannot import module '{module_name}' for model 'py:{target}': {e}",
            "install it or add its directory to PYTHONPATH, or name the file: path/to/file.py:FUNCTION",
        ) from None
    builder = _attribute(module, function, module_name)
    return call_builder(f"py:{target}", builder, input_shape, num_classes, kwargs)


_SCHEMES: dict[str, Callable[[str, tuple[int, ...], int, dict], nn.Module]] = {
    "hf": _hf,
    "torchscript": _torchscript,
    "torchvision": _torchvision,
    "timm": _timm,
    "py": _python,
}


__all__ = [
    "REFERENCE_FORMS",
    "TorchScriptModel",
    "build_reference",
    "call_builder",
    "carries_weights",
    "is_reference",
]
