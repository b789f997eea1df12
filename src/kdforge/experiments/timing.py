"""Speed ratios measured side by side, robust to other jobs on a shared machine."""

from __future__ import annotations

import json
import statistics
import time
from collections.abc import Callable, Sequence
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


def median_seconds(fn: Callable[[], object], repeats: int, warmup: int = 1) -> float:
    """Median wall time of ``repeats`` calls of ``fn`` in seconds, after ``warmup`` untimed calls."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def interleaved_seconds(fns: Sequence[Callable[[], object]], rounds: int) -> list[list[float]]:
    """Wall seconds of each call when ``fns`` take turns, once each per round, in the given order.

    Alternating puts a busy spell of another job on a shared machine on both sides alike, so
    the per-round ratios (or each side's fastest call) stay comparable. No warm-up call.

    Returns:
        One list of ``rounds`` timings per function, in the order of ``fns``.
    """
    times: list[list[float]] = [[] for _ in fns]
    for _ in range(rounds):
        for fn, out in zip(fns, times, strict=True):
            start = time.perf_counter()
            fn()
            out.append(time.perf_counter() - start)
    return times
