"""Scoring exported models on held-out or unseen data (no method, no teacher)."""

from __future__ import annotations

import torch
from torch import nn

from kdforge.data._batches import TensorData


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
