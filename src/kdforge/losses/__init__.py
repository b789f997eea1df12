"""Distillation losses as pure functions (each cites its paper and states its formula)."""

from kdforge.losses.fitnet import fitnet_loss
from kdforge.losses.kd import hinton_loss, kd_loss

__all__ = ["fitnet_loss", "hinton_loss", "kd_loss"]
