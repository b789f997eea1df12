"""Hinton knowledge distillation (Hinton, Vinyals & Dean 2015).

loss = (1 - alpha) * CE(y, z_s) + alpha * T^2 * KL(softmax(z_t/T) || softmax(z_s/T)).
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor

from kdforge.losses.kd import hinton_loss
from kdforge.methods._base import Batch, Method, model_inputs
from kdforge.registry import register_method


@dataclass
class KDConfig:
    """Options of Hinton KD."""

    temperature: float = 4.0
    alpha: float = 0.9  # weight of the soft-target term; (1 - alpha) on the hard labels


@register_method("kd")
class KD(Method):
    """Student matches the teacher's temperature-softened output distribution."""

    Config = KDConfig

    def teacher_targets(self, batch: Batch) -> dict[str, Tensor]:
        """The teacher's logits."""
        return {"logits": self.teacher_forward(batch)}

    def training_step(self, batch: Batch) -> tuple[Tensor, dict[str, Tensor]]:
        logits = self.student(**model_inputs(batch))
        t_logits = self.teacher_outputs(batch)["logits"]
        ce, kl = hinton_loss(logits, t_logits, batch["y"], self.config.temperature, self.config.alpha)
        return logits, {"ce": ce, "kd": kl}
