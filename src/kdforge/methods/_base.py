"""The method contract shared by every distillation method.

A method is an ``nn.Module`` holding ``student``, a frozen ``teacher`` (always
in eval mode, called under ``no_grad``, never in the optimizer or checkpoints)
and any extra trainable modules (regressors, compressors, translators). The
engine calls :meth:`Method.training_step` and sums the returned loss terms.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from kdforge.config import check_kwargs
from kdforge.errors import KdforgeError

Batch = dict[str, Tensor]

#: teacher fingerprint -> {example key: output row}; shared by every method in the process
_TEACHER_OUTPUTS: dict[str, dict[bytes, Tensor]] = {}


def teacher_fingerprint(teacher: nn.Module) -> str:
    """A content hash of a model's state (names, shapes, dtypes and values)."""
    h = hashlib.blake2b(digest_size=16)
    for k, v in teacher.state_dict().items():
        h.update(f"{k}{tuple(v.shape)}{v.dtype}".encode())
        h.update(v.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def example_keys(inputs: Batch) -> list[bytes]:
    """One key per example: the bytes of its row in every input tensor (inputs sorted by name)."""
    rows = [inputs[k].detach().cpu().contiguous() for k in sorted(inputs)]
    n = rows[0].shape[0]
    return [b"".join(r[i].numpy().tobytes() for r in rows) for i in range(n)]


@dataclass
class NoOptions:
    """A method without options."""


def model_inputs(batch: Batch) -> Batch:
    """Everything in a batch except the target ``y``: the model's keyword arguments."""
    return {k: v for k, v in batch.items() if k != "y"}


class Method(nn.Module):
    """Base class: student + frozen teacher + extra trainable modules.

    Subclasses set ``Config`` (an options dataclass, defaults beside the code),
    ``needs_teacher`` and implement :meth:`training_step`.
    """

    Config: ClassVar[type] = NoOptions
    needs_teacher: ClassVar[bool] = True
    #: True when a loss term is a statistic of the whole batch rather than a mean over its
    #: examples (distance correlation, per-batch standardisation). Under N processes each
    #: process computes it over its 1/N of the global batch, so the run approximates the
    #: one-process run at the same global batch instead of reproducing it to rounding.
    batch_statistics: ClassVar[bool] = False

    def __init__(
        self,
        student: nn.Module,
        teacher: nn.Module | None = None,
        config: Any = None,
        example_batch: Batch | None = None,
    ) -> None:
        super().__init__()
        if self.needs_teacher and teacher is None:
            raise KdforgeError(
                f"method '{type(self).__name__}' needs a teacher but the recipe has none",
                "add a 'teacher:' section with name, kwargs and checkpoint",
            )
        self.student = student
        self.teacher = teacher
        if teacher is not None:
            teacher.eval()
            teacher.requires_grad_(False)
        self.config = config if config is not None else self.Config()
        # The engine re-seeds this from (seed, step) alone, the same on every process, before
        # every step: draw from it every random decision that all processes must share (which
        # layers Theseus replaces). Per-example randomness (dropout) uses the global RNG, which
        # the engine seeds per process.
        self.shared_rng = torch.Generator()

    @classmethod
    def build(
        cls,
        student: nn.Module,
        teacher: nn.Module | None,
        kwargs: dict[str, Any] | None = None,
        example_batch: Batch | None = None,
    ) -> Method:
        """Validate ``kwargs`` against ``cls.Config`` and construct the method."""
        config = check_kwargs("method", cls.__name__, kwargs or {}, cls.Config)
        return cls(student, teacher, config, example_batch)

    # ------------------------------------------------------------------ contract
    def training_step(self, batch: Batch) -> tuple[Tensor, dict[str, Tensor]]:
        """Return ``(student_output, {loss_name: weighted loss term})``; the engine sums the terms."""
        raise NotImplementedError

    def predict(self, batch: Batch) -> Tensor:
        """Student logits used for evaluation."""
        return self.student(**model_inputs(batch))

    @torch.no_grad()
    def teacher_forward(self, batch: Batch) -> Tensor:
        """Teacher output without gradients (``train()`` keeps the teacher in eval mode)."""
        assert self.teacher is not None
        return self.teacher(**model_inputs(batch))

    @torch.no_grad()
    def cached_teacher_forward(self, batch: Batch) -> Tensor:
        """:meth:`teacher_forward`, memoised per example for the whole process.

        The teacher is frozen and in eval mode, so its output is a function of the example's
        inputs alone: outputs are stored by (teacher content hash, example input bytes) and an
        example is sent through the teacher only the first time any run in this process meets
        it (later epochs, other seeds and variants sharing the teacher reuse it). Cached rows
        equal recomputed ones to float round-off (batch composition changes summation order).
        """
        assert self.teacher is not None
        if getattr(self, "_teacher_fp", None) is None:
            self._teacher_fp = teacher_fingerprint(self.teacher)
        memo = _TEACHER_OUTPUTS.setdefault(self._teacher_fp, {})
        inputs = model_inputs(batch)
        keys = example_keys(inputs)
        miss = [i for i, k in enumerate(keys) if k not in memo]
        if miss:
            idx = torch.tensor(miss, device=next(iter(inputs.values())).device)
            out = self.teacher(**{k: v[idx] for k, v in inputs.items()})
            for i, row in zip(miss, out.detach().cpu(), strict=True):
                memo[keys[i]] = row.clone()
        device = next(iter(inputs.values())).device
        return torch.stack([memo[k] for k in keys]).to(device)

    def on_step_start(self, step: int, total_steps: int) -> None:
        """Hook for curricula (e.g. Theseus replacement rate). Default: nothing."""

    def param_groups(self, lr: float) -> list[dict[str, Any]]:
        """Optimizer parameter groups: every trainable parameter outside the teacher."""
        return [{"params": [p for p in self.trainable_parameters()], "lr": lr}]

    def trainable_parameters(self) -> list[nn.Parameter]:
        """Parameters that the optimizer updates (never the teacher's)."""
        return [p for n, p in self.named_parameters() if p.requires_grad and not n.startswith("teacher.")]

    def train(self, mode: bool = True) -> Method:
        super().train(mode)
        if self.teacher is not None:
            self.teacher.eval()
        return self

    def checkpoint_state(self) -> dict[str, Tensor]:
        """State to checkpoint: everything except the teacher."""
        return {k: v for k, v in self.state_dict().items() if not k.startswith("teacher.")}

    def load_checkpoint_state(self, state: dict[str, Tensor]) -> None:
        """Load :meth:`checkpoint_state` output (strict on non-teacher keys)."""
        own = self.checkpoint_state()
        missing = sorted(set(own) - set(state))
        extra = sorted(set(state) - set(own))
        if missing or extra:
            raise KdforgeError(
                f"checkpoint does not fit this method: missing {missing[:5]}, unexpected {extra[:5]}",
                "resume with the recipe that wrote the checkpoint, or start a fresh run directory",
            )
        for k, v in own.items():
            if v.shape != state[k].shape:
                raise KdforgeError(
                    f"checkpoint tensor '{k}' has shape {tuple(state[k].shape)}, model expects "
                    f"{tuple(v.shape)}",
                    "resume with the recipe that wrote the checkpoint",
                )
        self.load_state_dict(state, strict=False)

    def export(self) -> nn.Module:
        """The deployable student (plain modules; over-parameterized layers collapsed)."""
        return self.student
