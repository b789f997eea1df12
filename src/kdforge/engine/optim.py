"""Optimizers and learning-rate schedules configured by :class:`~kdforge.config.TrainConfig`."""

from __future__ import annotations

import math
from typing import Any

import torch

from kdforge.config import TrainConfig
from kdforge.errors import KdforgeError

SCHEDULES = ("constant", "cosine", "linear")
OPTIMIZERS = ("sgd", "adam", "adamw")


def build_optimizer(groups: list[dict[str, Any]], cfg: TrainConfig) -> torch.optim.Optimizer:
    """Build the optimizer over parameter ``groups`` (each may carry its own ``lr``)."""
    if not any(g["params"] for g in groups):
        raise KdforgeError("the method has no trainable parameters", "check the method and student config")
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    if cfg.optimizer == "adam":
        return torch.optim.Adam(groups, lr=cfg.lr, weight_decay=cfg.weight_decay)
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(groups, lr=cfg.lr, weight_decay=cfg.weight_decay)
    raise KdforgeError(f"unknown optimizer '{cfg.optimizer}'", f"use one of {', '.join(OPTIMIZERS)}")


def lr_factor(step: int, total: int, warmup: int, kind: str) -> float:
    """Multiplier of the base learning rate at ``step`` (linear warm-up, then ``kind`` decay)."""
    if warmup > 0 and step < warmup:
        return (step + 1) / warmup
    if kind == "constant":
        return 1.0
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    if kind == "cosine":
        return 0.5 * (1.0 + math.cos(math.pi * progress))
    if kind == "linear":
        return 1.0 - progress
    raise KdforgeError(f"unknown schedule '{kind}'", f"use one of {', '.join(SCHEDULES)}")


def build_scheduler(optimizer: torch.optim.Optimizer, cfg: TrainConfig, total_steps: int):
    """A LambdaLR applying :func:`lr_factor` to every parameter group."""
    lr_factor(0, total_steps, cfg.warmup_steps, cfg.schedule)  # validate the name early
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: lr_factor(s, total_steps, cfg.warmup_steps, cfg.schedule)
    )
