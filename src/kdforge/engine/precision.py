"""Mixed precision through HF Accelerate, on GPUs and (for fp16 too) on the CPU.

``train.mixed_precision`` is ``no``, ``bf16`` or ``fp16``. The forward pass runs under
``torch.autocast`` in that dtype; parameters, gradients and optimizer state stay float32.

* ``fp16`` has a narrow range, so the loss is multiplied by a dynamic scale before the
  backward pass (a ``torch.amp.GradScaler``). The gradients are divided by the scale again
  before clipping; a step whose gradients hold an inf or NaN is skipped (weights and
  optimizer state unchanged) and the scale is halved; after 2000 clean steps it doubles.
* ``bf16`` has float32's range and needs no scaling.

Accelerate 1.x creates the GradScaler and the fp16 autocast only on accelerators; on a
CPU it would silently train float32 for ``fp16``. :func:`build_accelerator` gives the CPU
torch's own CPU GradScaler and fp16 autocast instead, so that fp16 means the same
arithmetic everywhere and the CPU test suite exercises the scaler path.
"""

from __future__ import annotations

import atexit

import torch
import torch.distributed as dist
from accelerate import Accelerator
from accelerate.state import AcceleratorState

from kdforge.errors import KdforgeError

PRECISIONS = ("no", "bf16", "fp16")


def build_accelerator(mixed_precision: str) -> Accelerator:
    """An :class:`Accelerator` for this machine in ``mixed_precision`` (``no`` | ``bf16`` | ``fp16``).

    Raises:
        KdforgeError: for an unknown precision name.
    """
    if mixed_precision not in PRECISIONS:
        raise KdforgeError(
            f"unknown train.mixed_precision '{mixed_precision}'",
            f"use one of {', '.join(PRECISIONS)}",
        )
    # Accelerate keeps a process-wide singleton; several runs in one process (sweeps,
    # benchmarks, tests) may ask for different precisions, so drop the precision part of it.
    # The process group (PartialState) is kept.
    if AcceleratorState._shared_state:
        AcceleratorState._reset_state(reset_partial_state=False)
    acc = Accelerator(cpu=not torch.cuda.is_available(), mixed_precision=mixed_precision)
    if dist.is_available() and dist.is_initialized():
        atexit.unregister(_destroy_process_group)  # registered once however many runs a process makes
        atexit.register(_destroy_process_group)
    if mixed_precision == "fp16" and acc.scaler is None and acc.device.type == "cpu":
        # Accelerate's own switches for "autocast to fp16 and scale the loss" (its autocast()
        # reads native_amp; backward(), unscale_gradients() and prepared optimizers use scaler).
        acc.native_amp = True
        acc.scaler = torch.amp.GradScaler("cpu")
    return acc


def grads_finite(params: list[torch.nn.Parameter]) -> bool:
    """Whether every existing gradient of ``params`` is free of inf and NaN (one host sync)."""
    flags = [torch.isfinite(p.grad).all() for p in params if p.grad is not None]
    return bool(torch.stack(flags).all()) if flags else True


def _destroy_process_group() -> None:
    """Destroy the process group at interpreter exit.

    Under ``accelerate launch`` a process that exits with its gloo group still alive can be
    aborted by the group's C++ destructor ("terminate called without an active exception",
    exit code -6) after a finished run; atexit handlers run before that destructor.
    """
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
