"""A Hugging Face model directory (``hf:DIR``) as a kdforge classifier, offline.

``save_pretrained`` writes ``config.json`` and the weights; :func:`hf_model` loads them with
``local_files_only=True`` (nothing is fetched from a hub) and returns a module whose
``forward(input_ids, attention_mask)`` gives logits: the directory's own sequence-classification
head, or its encoder plus a new linear head on the mean-pooled tokens
(:class:`~kdforge.models.hf.HFClassifier`). A student can be derived from the same directory:
fewer encoder layers (``layers``) and, for BERT, narrower widths (``width_factor``).
"""

from __future__ import annotations

from pathlib import Path

from torch import Tensor, nn

from kdforge.errors import KdforgeError

HF_WEIGHTS = (
    "model.safetensors",
    "model.safetensors.index.json",
    "pytorch_model.bin",
    "pytorch_model.bin.index.json",
)


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


def hf_head_classes(directory: str | Path, head: str = "auto") -> int | None:
    """The classes of the trained head that ``hf:DIR`` with option ``head`` is built with, or
    ``None`` when it gets a new (untrained) head: an encoder without a sequence-classification
    head, or ``head: new``."""
    import json

    config = json.loads((check_hf_dir(directory) / "config.json").read_text())
    has_head = any(a.endswith("ForSequenceClassification") for a in config.get("architectures") or [])
    if not has_head or head == "new":
        return None
    labels = config.get("id2label") or {}  # what save_pretrained writes; num_labels defaults to 2
    return len(labels) if labels else int(config.get("num_labels", 2))


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
    freeze_encoder: bool = False,
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
        freeze_encoder: train only the new head (a linear probe on the frozen encoder).

    Raises:
        KdforgeError: not a model directory, a head for another number of classes, bad options.
    """
    path = check_hf_dir(directory)
    try:
        import transformers
    except ImportError:
        raise KdforgeError(
            "'hf:' models need the Python package 'transformers'", "pip install 'kdforge[nlp]'"
        ) from None
    config = transformers.AutoConfig.from_pretrained(path, local_files_only=True)
    has_head = any(a.endswith("ForSequenceClassification") for a in (config.architectures or []))
    if head not in ("auto", "keep", "new"):
        raise KdforgeError(f"hf model option head='{head}' is not one of auto, keep, new", "fix head")
    if head == "keep" and not has_head:
        raise KdforgeError(
            f"'{path}' has no sequence-classification head (architectures: {config.architectures})",
            "use head: new (or auto) to put a new head on its encoder",
        )
    if freeze_encoder and has_head and head != "new":
        raise KdforgeError(
            "freeze_encoder trains a new head on the frozen encoder",
            "set kwargs head: new as well (the directory's own head would not train)",
        )
    if has_head and head != "new":
        if config.num_labels != num_classes:
            raise KdforgeError(
                f"the classification head in '{path}' has {config.num_labels} classes, "
                f"the data {num_classes}",
                "use a model fine-tuned on this data, or set kwargs head: new for a new head (then train it)",
            )
        model: nn.Module = HFSequenceClassifier(
            transformers.AutoModelForSequenceClassification.from_pretrained(path, local_files_only=True)
        )
    else:
        from kdforge.models.hf import HFClassifier

        encoder = transformers.AutoModel.from_pretrained(path, local_files_only=True)
        model = HFClassifier(encoder, encoder.config.hidden_size, num_classes, freeze_encoder)
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


__all__ = ["HF_WEIGHTS", "HFSequenceClassifier", "check_hf_dir", "hf_head_classes", "hf_model"]
