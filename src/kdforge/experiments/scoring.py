"""Scoring exported models on held-out or unseen data (no method, no teacher)."""

from __future__ import annotations

import torch
from torch import nn

from kdforge.config import RunConfig
from kdforge.data._batches import TensorData
from kdforge.engine.run import build_method, load_splits
from kdforge.engine.trainer import evaluate


@torch.no_grad()
def model_accuracy(model: nn.Module, data: TensorData, batch_size: int = 512) -> float:
    """Accuracy of a classifier on a split: its inputs (every tensor but ``y``) as keyword arguments.

    The model is put in eval mode; ``data`` holds ``y`` plus the model's inputs (``x`` for images,
    ``input_ids``/``attention_mask`` for text).
    """
    model.eval()
    tensors = data.tensors
    inputs = [k for k in tensors if k != "y"]
    correct = 0
    for start in range(0, len(data), batch_size):
        batch = {k: tensors[k][start : start + batch_size] for k in inputs}
        correct += (model(**batch).argmax(-1) == tensors["y"][start : start + batch_size]).sum().item()
    return correct / len(data)


def teacher_scores(cfg: RunConfig) -> dict[str, float]:
    """The recipe's (trained, loaded) teacher scored on the recipe's own validation and test splits.

    Returns:
        ``val_acc``, ``test_acc`` and ``test_size``: the teacher on exactly the examples its
        students are selected and scored on.
    """
    splits = load_splits(cfg)
    method = build_method(cfg, splits)
    method.predict = method.teacher_forward  # the engine's evaluation, on the teacher's outputs
    device = torch.device("cpu")
    val = evaluate(method, splits.val, cfg.data.eval_batch_size, device)
    test = evaluate(method, splits.test, cfg.data.eval_batch_size, device)
    return {"val_acc": val["acc"], "test_acc": test["acc"], "test_size": len(splits.test)}


@torch.no_grad()
def length_sorted_accuracy(model: nn.Module, data: TensorData, batch_size: int = 128) -> float:
    """:func:`model_accuracy` of a text classifier, batched shortest texts first.

    The same accuracy (every example is scored once, with its own mask) at a fraction of the
    cost for models that drop all-padding columns per batch (``HFClassifier``): a batch of texts
    of similar length carries little padding. ``data`` holds ``input_ids``, ``attention_mask``
    and ``y``.
    """
    model.eval()
    tensors = data.tensors
    order = torch.argsort(tensors["attention_mask"].sum(1), stable=True)
    correct = 0
    for start in range(0, len(order), batch_size):
        idx = order[start : start + batch_size]
        logits = model(input_ids=tensors["input_ids"][idx], attention_mask=tensors["attention_mask"][idx])
        correct += (logits.argmax(-1) == tensors["y"][idx]).sum().item()
    return correct / len(order)
