"""The method contract shared by every distillation method.

A method is an ``nn.Module`` holding ``student``, a frozen ``teacher`` (always
in eval mode, called under ``no_grad``, never in the optimizer or checkpoints)
and any extra trainable modules (regressors, compressors, translators). The
engine calls :meth:`Method.training_step` and sums the returned loss terms.

A method that reads per-example teacher outputs (logits, features, attributions) computes
them in :meth:`Method.teacher_targets` and reads them through :meth:`Method.teacher_outputs`:
with ``train.teacher_cache`` the engine computes them once per example before training
(:mod:`kdforge.engine.teacher_cache`) and every batch carries them under
``teacher_out:<name>`` keys, which are never passed to a model.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from kdforge.config import check_kwargs
from kdforge.errors import KdforgeError

Batch = dict[str, Tensor]

#: prefix of batch keys holding cached teacher outputs (``teacher_out:logits``); never model inputs
TEACHER_OUTPUT_PREFIX = "teacher_out:"


@dataclass
class NoOptions:
    """A method without options."""


def model_inputs(batch: Batch) -> Batch:
    """Everything in a batch except the target ``y`` and cached teacher outputs: the model's kwargs."""
    return {k: v for k, v in batch.items() if k != "y" and not k.startswith(TEACHER_OUTPUT_PREFIX)}


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

    def teacher_targets(self, batch: Batch) -> dict[str, Tensor]:
        """The per-example teacher outputs this method reads, computed from ``batch``.

        Row ``i`` of each output must be a function of example ``i`` alone (the teacher is
        frozen and in eval mode), so :mod:`kdforge.engine.teacher_cache` may compute them once
        per example before training. Default: none (the method reads nothing cacheable).
        """
        return {}

    def teacher_targets_key(self) -> dict[str, Any]:
        """What, besides the teacher's weights and the inputs, determines :meth:`teacher_targets`.

        Part of the teacher-output cache's key: override to add feature paths, pooling or
        attribution settings the outputs depend on.
        """
        return {"method": type(self).__name__}

    def derived_teacher_outputs(self, outputs: dict[str, Tensor]) -> dict[str, Tensor]:
        """Per-example tensors computed from :meth:`teacher_targets` outputs and options alone.

        With the cache they are computed once for the whole training split when it is attached
        (row ``i`` must depend on row ``i`` of ``outputs`` alone), else once per batch.
        Default: none. Example: KD's temperature-softened teacher log-probabilities.
        """
        return {}

    def teacher_outputs(self, batch: Batch) -> dict[str, Tensor]:
        """The batch's cached teacher outputs when it carries them, else computed from the batch.

        Either way: :meth:`teacher_targets` plus :meth:`derived_teacher_outputs`.
        """
        n = len(TEACHER_OUTPUT_PREFIX)
        cached = {k[n:]: v for k, v in batch.items() if k.startswith(TEACHER_OUTPUT_PREFIX)}
        if cached:
            return cached
        outputs = self.teacher_targets(batch)
        return {**outputs, **self.derived_teacher_outputs(outputs)}

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
