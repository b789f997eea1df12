"""Augmentation of translator inputs/targets: random masking and relative noise."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from kdforge.errors import KdforgeError


@dataclass
class Augment:
    """Random masking and noise on the input, the target, or both.

    Args:
        mask_p: Probability of zeroing each element.
        noise_sigma: Noise std relative to each tensor's scale (its std over the non-batch dims).
        on: ``"input"``, ``"target"`` or ``"both"``.
    """

    mask_p: float = 0.0
    noise_sigma: float = 0.0
    on: str = "input"

    def __post_init__(self) -> None:
        if not 0.0 <= self.mask_p < 1.0:
            raise KdforgeError(
                f"mask_p={self.mask_p} is not in [0, 1)", "choose a masking probability like 0.1"
            )
        if self.noise_sigma < 0:
            raise KdforgeError(f"noise_sigma={self.noise_sigma} is negative", "choose sigma >= 0, e.g. 0.05")
        if self.on not in ("input", "target", "both"):
            raise KdforgeError(f"augment on='{self.on}' is unknown", "use 'input', 'target' or 'both'")

    def apply(self, t: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """Augment a batch ``t`` [B, ...]; the scale is per example (std over the other dims)."""
        if self.mask_p > 0:
            keep = torch.rand(t.shape, generator=generator) >= self.mask_p
            t = t * keep
        if self.noise_sigma > 0:
            scale = t.flatten(1).std(dim=1).view(-1, *([1] * (t.dim() - 1)))
            t = t + torch.randn(t.shape, generator=generator) * self.noise_sigma * scale
        return t

    def __call__(
        self, x: Tensor, y: Tensor, generator: torch.Generator | None = None
    ) -> tuple[Tensor, Tensor]:
        """Augment (input, target) according to ``on``."""
        if self.on in ("input", "both"):
            x = self.apply(x, generator)
        if self.on in ("target", "both"):
            y = self.apply(y, generator)
        return x, y
