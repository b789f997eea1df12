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
                           the teacher); ``init_from`` loads saved weights first.
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

#: the reference forms, for error messages and ``kdforge list``
REFERENCE_FORMS = (
    "hf:DIR",
    "torchscript:FILE",
    "torchvision:ARCH",
    "timm:ARCH",
    "py:MODULE:FUNCTION",
    "FILE.py:FUNCTION",
)
HF_WEIGHTS = (
    "model.safetensors",
    "model.safetensors.index.json",
    "pytorch_model.bin",
    "pytorch_model.bin.index.json",
)


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


class HFSequenceClassifier(nn.Module):
    """A ``transformers`` sequence-classification model that returns its logits tensor."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, input_ids: Tensor, attention_mask: Tensor | None = None, **inputs: Tensor) -> Tensor:
        return self.model(input_ids=input_ids, attention_mask=attention_mask, **inputs).logits


def check_hf_dir(directory: str | Path) -> Path:
    """``directory`` if it holds a Hugging Face model (``config.json`` and weights).

    Raises:
        KdforgeError: naming what is missing.
    """
    path = Path(directory)
    if not path.is_dir():
        raise KdforgeError(
            f"Hugging Face model directory '{path}' does not exist",
            "give hf:DIR the directory written by save_pretrained (config.json + model.safetensors)",
        )
    missing = [] if (path / "config.json").is_file() else ["config.json"]
    if not any((path / f).is_file() for f in HF_WEIGHTS):
        missing.append(f"model weights (one of {', '.join(HF_WEIGHTS)})")
    if missing:
        raise KdforgeError(
            f"'{path}' is not a Hugging Face model directory: missing {'; '.join(missing)}",
            "point hf:DIR at a directory written by model.save_pretrained(DIR)",
        )
    return path


def _keep_encoder_layers(model: nn.Module, layers: list[int]) -> None:
    """Keep only encoder ``layers`` (in that order) of the first ``*.encoder.layer`` list, in place."""
    found = [
        (name, module)
        for name, module in model.named_modules()
        if isinstance(module, nn.ModuleList) and name.endswith(("encoder.layer", "transformer.layer"))
    ]
    if not found:
        raise KdforgeError(
            "the model has no encoder layer list ('...encoder.layer')", "drop the layers option"
        )
    name, stack = found[0]
    if not layers or any(not 0 <= i < len(stack) for i in layers):
        raise KdforgeError(
            f"cannot keep encoder layers {list(layers)} of a {len(stack)}-layer model",
            f"choose one or more layer indices in 0..{len(stack) - 1}",
        )
    parent = model.get_submodule(name.rsplit(".", 1)[0])
    setattr(parent, name.rsplit(".", 1)[1], nn.ModuleList(stack[i] for i in layers))
    for config in {id(m.config): m.config for m in model.modules() if hasattr(m, "config")}.values():
        if hasattr(config, "num_hidden_layers"):
            config.num_hidden_layers = len(layers)


def hf_model(
    directory: str,
    input_shape: tuple[int, ...],
    num_classes: int,
    head: str = "auto",
    layers: list[int] | None = None,
    width_factor: int = 1,
    init_from: str | None = None,
) -> nn.Module:
    """A classifier from a Hugging Face model directory, offline.

    Args:
        directory: written by ``save_pretrained`` (``config.json`` + weights).
        input_shape: ``(max_len,)`` of the tokenized data.
        num_classes: the data's classes.
        head: ``auto`` (the directory's sequence-classification head if it has one, else a
            new head), ``keep`` (require that head) or ``new`` (encoder + new linear head on
            the mean-pooled tokens).
        layers: keep only these encoder layers (a shallower student from the teacher).
        width_factor: divide a BERT encoder's widths by this (weight selection; new head only).
        init_from: weights saved by kdforge for this reference (``layers``/``width_factor``
            unset), loaded before layers are dropped and widths divided.

    Raises:
        KdforgeError: not a model directory, a head for another number of classes, bad options.
    """
    from transformers import AutoConfig, AutoModel, AutoModelForSequenceClassification

    path = check_hf_dir(directory)
    config = AutoConfig.from_pretrained(path, local_files_only=True)
    has_head = any(a.endswith("ForSequenceClassification") for a in (config.architectures or []))
    if head not in ("auto", "keep", "new"):
        raise KdforgeError(f"hf model option head='{head}' is not one of auto, keep, new", "fix head")
    if head == "keep" and not has_head:
        raise KdforgeError(
            f"'{path}' has no sequence-classification head (architectures: {config.architectures})",
            "use head: new (or auto) to put a new head on its encoder",
        )
    if has_head and head != "new":
        if config.num_labels != num_classes:
            raise KdforgeError(
                f"the classification head in '{path}' has {config.num_labels} classes, "
                f"the data {num_classes}",
                "use a model fine-tuned on this data, or set kwargs head: new for a new head (then train it)",
            )
        model: nn.Module = HFSequenceClassifier(
            AutoModelForSequenceClassification.from_pretrained(path, local_files_only=True)
        )
    else:
        from kdforge.models.hf import HFClassifier

        encoder = AutoModel.from_pretrained(path, local_files_only=True)
        model = HFClassifier(encoder, encoder.config.hidden_size, num_classes)
    if init_from:
        from kdforge.io import load_weights

        load_weights(model, init_from, "student init (init_from)")
    if layers is not None:
        _keep_encoder_layers(model, list(layers))
    if width_factor != 1:
        from kdforge.models.bert_narrow import narrow_bert
        from kdforge.models.hf import HFClassifier

        if not isinstance(model, HFClassifier) or type(model.encoder).__name__ != "BertModel":
            raise KdforgeError(
                "width_factor narrows a BERT encoder with a new head only",
                "set kwargs head: new on a BERT model directory, or drop width_factor",
            )
        model = narrow_bert(model, int(width_factor))
    return model


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


def _optional(module: str) -> Any:
    try:
        return importlib.import_module(module)
    except Exception as e:  # noqa: BLE001  (a broken install raises RuntimeError, not ImportError)
        raise KdforgeError(
            f"'{module}:' models need the Python package '{module}', which does not import here "
            f"({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''})",
            f"pip install 'kdforge[{module}]' (a {module} build matching your torch), or export the "
            "model with torch.jit.save and use torchscript:FILE",
        ) from None


def _unknown_arch(kind: str, arch: str, names: list[str]) -> KdforgeError:
    return KdforgeError(
        f"{kind} has no architecture '{arch}' (nearest: {', '.join(nearest(arch, names))})",
        f"use one of {kind}'s model names",
    )


def _torchvision(target: str, input_shape: tuple[int, ...], num_classes: int, kwargs: dict) -> nn.Module:
    torchvision = _optional("torchvision")
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
    timm = _optional("timm")
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
    "HFSequenceClassifier",
    "TorchScriptModel",
    "build_reference",
    "call_builder",
    "carries_weights",
    "check_hf_dir",
    "hf_model",
    "is_reference",
]
