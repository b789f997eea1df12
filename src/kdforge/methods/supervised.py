"""Plain supervised training (teachers, and the student-alone baseline)."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

from kdforge.methods._base import Batch, Method, model_inputs
from kdforge.registry import register_method


@register_method("supervised")
class Supervised(Method):
    """Cross-entropy on the targets; no teacher."""

    needs_teacher = False

    def training_step(self, batch: Batch) -> tuple[Tensor, dict[str, Tensor]]:
        logits = self.student(**model_inputs(batch))
        return logits, {"ce": F.cross_entropy(logits, batch["y"])}
