"""Hinton knowledge distillation (Hinton, Vinyals & Dean 2015).

loss = (1 - alpha) * CE(y, z_s) + alpha * T^2 * KL(softmax(z_t/T) || softmax(z_s/T)).
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor

from kdforge.losses.kd import hinton_loss_log_targets, soft_targets
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

    def derived_teacher_outputs(self, outputs: dict[str, Tensor]) -> dict[str, Tensor]:
        """The teacher's softened log-probabilities (with the cache: once per example, not per step)."""
        return {"log_probs": soft_targets(outputs["logits"], self.config.temperature)}

    def training_step(self, batch: Batch) -> tuple[Tensor, dict[str, Tensor]]:
        logits = self.student(**model_inputs(batch))
        log_p_t = self.teacher_outputs(batch)["log_probs"]
        cfg = self.config
        ce, kl = hinton_loss_log_targets(logits, log_p_t, batch["y"], cfg.temperature, cfg.alpha)
        return logits, {"ce": ce, "kd": kl}
