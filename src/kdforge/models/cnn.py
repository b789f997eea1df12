"""Small convolutional nets with named blocks for 28x28 (or 8x8) grey images."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from kdforge.registry import register_model


def _conv_block(cin: int, cout: int, pool: bool, batchnorm: bool) -> nn.Sequential:
    layers: list[nn.Module] = [nn.Conv2d(cin, cout, 3, padding=1, bias=not batchnorm)]
    if batchnorm:
        layers.append(nn.BatchNorm2d(cout))
    layers.append(nn.ReLU())
    if pool:
        layers.append(nn.MaxPool2d(2))
    return nn.Sequential(*layers)


class CNN(nn.Module):
    """Conv blocks (``blocks.{i}``), global average pool or flatten, optional hidden FC (``fc``), ``head``.

    ``resize`` (optional) bilinearly resizes every input to ``resize x resize`` first, so one set of
    weights serves images of any size (e.g. a teacher trained on 28x28 images embedding 8x8 digits).
    """

    def __init__(
        self,
        in_channels: int,
        num_classes: int,
        channels: tuple[int, ...] = (32, 64),
        fc: int | None = 128,
        batchnorm: bool = True,
        dropout: float = 0.0,
        pool_every: int = 1,
        flat_features: int | None = None,
        resize: int | None = None,
    ) -> None:
        super().__init__()
        self.resize = resize
        widths = [in_channels, *channels]
        self.blocks = nn.ModuleList(
            _conv_block(a, b, pool=(i + 1) % pool_every == 0, batchnorm=batchnorm)
            for i, (a, b) in enumerate(zip(widths[:-1], widths[1:], strict=True))
        )
        # global average pooling, or (flat_features given) flatten the last feature map
        self.pool = nn.AdaptiveAvgPool2d(1) if flat_features is None else nn.Identity()
        last = flat_features or widths[-1]
        self.fc = nn.Sequential(nn.Linear(last, fc), nn.ReLU(), nn.Dropout(dropout)) if fc else nn.Identity()
        self.head = nn.Linear(fc or last, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        h = x
        if self.resize is not None and tuple(h.shape[-2:]) != (self.resize, self.resize):
            h = F.interpolate(h, size=(self.resize, self.resize), mode="bilinear", align_corners=False)
        for block in self.blocks:
            h = block(h)
        h = self.pool(h).flatten(1)
        return self.head(self.fc(h))


@register_model("cnn")
def cnn(
    input_shape: tuple[int, ...],
    num_classes: int,
    channels: list[int] | tuple[int, ...] = (32, 64),
    fc: int | None = 128,
    batchnorm: bool = True,
    dropout: float = 0.0,
    global_pool: bool = True,
    resize: int | None = None,
) -> CNN:
    """CNN classifier; the channel list sets depth and width (2x2 max-pool after each block).

    ``global_pool=False`` flattens the last feature map instead of averaging it
    (more parameters, better accuracy on 28x28 images). ``resize=S`` resizes inputs to ``S x S``
    first (the architecture then no longer depends on the input size).
    """
    spatial = (resize, resize) if resize else tuple(input_shape[1:])
    if min(spatial) < 2 ** len(channels):
        raise ValueError(f"{len(channels)} pooled blocks do not fit input {input_shape}")
    h, w = (d // 2 ** len(channels) for d in spatial)
    flat = None if global_pool else channels[-1] * h * w
    return CNN(
        input_shape[0],
        num_classes,
        tuple(channels),
        fc,
        batchnorm,
        dropout,
        flat_features=flat,
        resize=resize,
    )


__all__ = ["CNN", "cnn"]
