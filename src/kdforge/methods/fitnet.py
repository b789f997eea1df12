"""FitNet hints (Romero et al., ICLR 2015): a regressor maps a student feature onto a teacher's.

loss = CE(y, z_s) + beta * MSE(r(f_s), f_t), features taken by module path.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from kdforge.errors import KdforgeError
from kdforge.losses.fitnet import fitnet_loss
from kdforge.methods._base import Batch, Method, model_inputs
from kdforge.models.hooks import FeatureHooks
from kdforge.registry import register_method


@dataclass
class FitNetConfig:
    """Options of FitNet."""

    student_path: str = "blocks.0"
    teacher_path: str = "blocks.0"
    beta: float = 1.0  # weight of the hint loss


def make_regressor(s_shape: torch.Size, t_shape: torch.Size) -> nn.Module:
    """Linear regressor (vectors/sequences) or 1x1 conv (feature maps) from student to teacher shape."""
    if len(s_shape) != len(t_shape) or s_shape[2:] != t_shape[2:]:
        raise KdforgeError(
            f"student feature {tuple(s_shape)} and teacher feature {tuple(t_shape)} are not "
            "shape-compatible (need equal rank and equal spatial/sequence sizes)",
            "choose student_path/teacher_path whose outputs differ only in channel width",
        )
    if len(s_shape) == 4:
        return nn.Conv2d(s_shape[1], t_shape[1], kernel_size=1)
    return nn.Linear(s_shape[-1], t_shape[-1])


@register_method("fitnet")
class FitNet(Method):
    """Cross-entropy plus a hint loss between regressed student and teacher features."""

    Config = FitNetConfig

    def __init__(self, student, teacher=None, config=None, example_batch=None) -> None:
        super().__init__(student, teacher, config, example_batch)
        cfg = self.config
        self._s_hooks = FeatureHooks(student, [cfg.student_path], "student")
        self._t_hooks = FeatureHooks(teacher, [cfg.teacher_path], "teacher")
        if example_batch is None:
            raise KdforgeError("FitNet needs an example batch to size its regressor", "pass example_batch")
        with torch.no_grad():
            was = student.training
            student.eval()
            student(**model_inputs(example_batch))
            student.train(was)
            self.teacher_forward(example_batch)
        s, t = self._s_hooks[cfg.student_path], self._t_hooks[cfg.teacher_path]
        if s.dim() == 3 and s.shape[1] != t.shape[1]:
            raise KdforgeError(f"sequence lengths differ: {tuple(s.shape)} vs {tuple(t.shape)}", "")
        self.regressor = make_regressor(s.shape, t.shape)

    def teacher_targets(self, batch: Batch) -> dict[str, Tensor]:
        """The teacher's feature at ``teacher_path``."""
        self.teacher_forward(batch)
        feature = self._t_hooks[self.config.teacher_path]
        self._t_hooks.clear()
        return {"feature": feature}

    def teacher_targets_key(self) -> dict[str, Any]:
        return {"method": "FitNet", "teacher_path": self.config.teacher_path}

    def training_step(self, batch: Batch) -> tuple[Tensor, dict[str, Tensor]]:
        logits = self.student(**model_inputs(batch))
        f_s = self.regressor(self._s_hooks[self.config.student_path])
        f_t = self.teacher_outputs(batch)["feature"]
        hint = fitnet_loss(f_s, f_t)
        self._s_hooks.clear()
        self._t_hooks.clear()
        return logits, {"ce": F.cross_entropy(logits, batch["y"]), "hint": self.config.beta * hint}
