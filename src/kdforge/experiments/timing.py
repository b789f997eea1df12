"""Speed ratios measured side by side, robust to other jobs on a shared machine."""

from __future__ import annotations

import json
import statistics
import time
from pathlib import Path

import torch
from torch import nn

from kdforge.engine.run import load_student
from kdforge.errors import KdforgeError
from kdforge.models import build_model


def latency_ratio(
    model: nn.Module,
    reference: nn.Module,
    inputs: dict[str, torch.Tensor],
    blocks: int = 7,
    per_block: int = 30,
    warmup: int = 10,
) -> float:
    """Inference latency of ``model`` over ``reference`` on the same keyword ``inputs``.

    The two alternate in ``blocks`` blocks; within a block each model's fastest of
    ``per_block`` calls counts (a busy spell of another job slows single calls, not the
    fastest one), and the ratio is the median over blocks. Both run in eval mode, no grad.
    """
    model, reference = model.eval(), reference.eval()

    def fastest(m: nn.Module) -> float:
        best = float("inf")
        for _ in range(per_block):
            start = time.perf_counter()
            m(**inputs)
            best = min(best, time.perf_counter() - start)
        return best

    with torch.no_grad():
        for _ in range(warmup):
            model(**inputs), reference(**inputs)
        ratios = [fastest(model) / fastest(reference) for _ in range(blocks)]
    return statistics.median(ratios)


def exported_latency_ratio(
    exported: str | Path, inputs: dict[str, torch.Tensor] | None = None, **timing: int
) -> float:
    """Latency of an exported student over a freshly built plain model of its spec.

    Args:
        exported: ``student.safetensors`` of a run (its ``student.json`` beside it).
        inputs: The forward's keyword inputs (default: 256 random inputs of the spec's shape as ``x``).
        **timing: ``blocks``, ``per_block``, ``warmup`` of :func:`latency_ratio`.

    Raises:
        KdforgeError: when the exported model's module types differ from the plain model's (an
            export that was not collapsed back to its plain form).
    """
    exported = Path(exported)
    model = load_student(exported)
    spec = json.loads(exported.with_suffix(".json").read_text())
    plain = build_model(spec["model"], tuple(spec["input_shape"]), spec["num_classes"], **spec["kwargs"])
    if [type(m) for m in model.modules()] != [type(m) for m in plain.modules()]:
        raise KdforgeError(
            f"'{exported}' does not have the plain model's module types",
            "export the collapsed student (kdforge exports collapse over-parameterized layers)",
        )
    x = inputs if inputs is not None else {"x": torch.rand(256, *spec["input_shape"])}
    return latency_ratio(model, plain, x, **timing)
