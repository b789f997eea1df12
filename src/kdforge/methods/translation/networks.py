"""Networks for Knowledge Translation: shared begin block, swappable middle block, shared last block.

Everything is *functional*: a network is a flat ``dict[str, Tensor]`` of parameters plus a dict of
BatchNorm running statistics, and :func:`forward` is a pure function of both. That lets
``torch.func.vmap`` run (and train) many networks at once, each with its own parameters.

Default shapes are the reference MNIST setting (Sun et al., 2024): begin = conv3x3 1->6, BN, ReLU,
maxpool 3/2/1; large block = ResNet basic block 6->6 with BN; small block = BN-free bottleneck
6->3->6; last = conv1x1 6->12 stride 2, BN, ReLU, flatten, Linear -> classes.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

Params = dict[str, Tensor]
BN_MOMENTUM = 0.1
BN_EPS = 1e-5


@dataclass(frozen=True)
class BlockSpec:
    """Shapes of the KT network family.

    Args:
        in_channels: Image channels.
        image_size: Image height (= width).
        channels: Width C of the begin block output and of both middle blocks.
        bottleneck: Hidden width of the small block (C -> bottleneck -> C).
        last_channels: Width of the last block's 1x1 conv.
        num_classes: Number of classes.
        kernel: Kernel size of the middle-block convs.
        small_skip: Whether the small block has the identity skip of the reference. Without it a
            random-init small block scrambles the features the frozen last block expects, so
            random init is a weak baseline and translation has room to show.
    """

    in_channels: int = 1
    image_size: int = 28
    channels: int = 6
    bottleneck: int = 3
    last_channels: int = 12
    num_classes: int = 10
    kernel: int = 3
    small_skip: bool = True

    @property
    def feat_size(self) -> int:
        """Spatial size after the begin block's stride-2 max-pool."""
        return (self.image_size + 1) // 2

    @property
    def last_size(self) -> int:
        """Spatial size after the last block's stride-2 1x1 conv."""
        return (self.feat_size + 1) // 2

    def to_dict(self) -> dict:
        """Plain-dict form (for manifests and checkpoints)."""
        return asdict(self)

    def large_shapes(self) -> dict[str, tuple[int, ...]]:
        """Parameter shapes of the large (basic) block."""
        c, k = self.channels, self.kernel
        return {
            "large.conv1": (c, c, k, k),
            "large.bn1.w": (c,),
            "large.bn1.b": (c,),
            "large.conv2": (c, c, k, k),
            "large.bn2.w": (c,),
            "large.bn2.b": (c,),
        }

    def small_shapes(self) -> dict[str, tuple[int, ...]]:
        """Parameter shapes of the small (bottleneck, BN-free) block."""
        c, h, k = self.channels, self.bottleneck, self.kernel
        return {"small.conv1": (h, c, k, k), "small.conv2": (c, h, k, k)}

    def shared_shapes(self) -> dict[str, tuple[int, ...]]:
        """Parameter shapes of the begin and last blocks."""
        c, lc = self.channels, self.last_channels
        return {
            "begin.conv": (c, self.in_channels, 3, 3),
            "begin.bn.w": (c,),
            "begin.bn.b": (c,),
            "last.conv": (lc, c, 1, 1),
            "last.bn.w": (lc,),
            "last.bn.b": (lc,),
            "last.fc.w": (self.num_classes, lc * self.last_size**2),
            "last.fc.b": (self.num_classes,),
        }

    def bn_names(self, middle: str) -> list[str]:
        """BatchNorm layers (running-stat prefixes) of the network with ``middle`` block."""
        names = ["begin.bn", "last.bn"]
        return names + (["large.bn1", "large.bn2"] if middle == "large" else [])


def init_params(spec: BlockSpec, part: str, generator: torch.Generator) -> Params:
    """PyTorch-default initialisation (uniform +-1/sqrt(fan_in); BN weight 1, bias 0).

    Args:
        spec: Block shapes.
        part: ``"large"``, ``"small"`` or ``"shared"``.
        generator: Source of randomness (one per network).
    """
    shapes = {"large": spec.large_shapes, "small": spec.small_shapes, "shared": spec.shared_shapes}[part]()
    out: Params = {}
    for name, shape in shapes.items():
        if name.endswith(".bn.w") or ".bn1.w" in name or ".bn2.w" in name:
            out[name] = torch.ones(shape)
        elif name.endswith(".bn.b") or ".bn1.b" in name or ".bn2.b" in name:
            out[name] = torch.zeros(shape)
        else:
            fan_in = math.prod(shape[1:]) if name != "last.fc.b" else spec.last_channels * spec.last_size**2
            bound = 1.0 / math.sqrt(fan_in)
            out[name] = (torch.rand(shape, generator=generator) * 2 - 1) * bound
    return out


def init_stats(spec: BlockSpec, middle: str) -> Params:
    """Fresh BN running statistics (mean 0, var 1)."""
    out: Params = {}
    for name in spec.bn_names(middle):
        n = spec.last_channels if name == "last.bn" else spec.channels
        out[f"{name}.mean"], out[f"{name}.var"] = torch.zeros(n), torch.ones(n)
    return out


def _bn(x: Tensor, p: Params, s: Params, name: str, train: bool, new: Params) -> Tensor:
    """BatchNorm2d as a pure function; in training mode writes updated running stats to ``new``."""
    if train:
        mean = x.mean(dim=(0, 2, 3))
        var = x.var(dim=(0, 2, 3), unbiased=False)
        n = x.numel() / x.shape[1]
        new[f"{name}.mean"] = (1 - BN_MOMENTUM) * s[f"{name}.mean"] + BN_MOMENTUM * mean.detach()
        unbiased = var.detach() * n / max(n - 1, 1)
        new[f"{name}.var"] = (1 - BN_MOMENTUM) * s[f"{name}.var"] + BN_MOMENTUM * unbiased
    else:
        mean, var = s[f"{name}.mean"], s[f"{name}.var"]
    xhat = (x - mean[:, None, None]) / torch.sqrt(var[:, None, None] + BN_EPS)
    return xhat * p[f"{name}.w"][:, None, None] + p[f"{name}.b"][:, None, None]


def begin_forward(p: Params, s: Params, x: Tensor, train: bool, new: Params) -> Tensor:
    """Begin block: conv3x3, BN, ReLU, maxpool 3/2/1."""
    h = F.relu(_bn(F.conv2d(x, p["begin.conv"], padding=1), p, s, "begin.bn", train, new))
    return F.max_pool2d(h, 3, stride=2, padding=1)


def large_forward(p: Params, s: Params, h: Tensor, train: bool, new: Params) -> Tensor:
    """Large block: ResNet basic block (conv, BN, ReLU, conv, BN, + identity, ReLU)."""
    pad = p["large.conv1"].shape[-1] // 2
    z = F.relu(_bn(F.conv2d(h, p["large.conv1"], padding=pad), p, s, "large.bn1", train, new))
    z = _bn(F.conv2d(z, p["large.conv2"], padding=pad), p, s, "large.bn2", train, new)
    return F.relu(z + h)


def small_forward(p: Params, h: Tensor, skip: bool = True) -> Tensor:
    """Small block: BN-free bottleneck (conv C->b, ReLU, conv b->C, [+ identity], ReLU)."""
    pad = p["small.conv1"].shape[-1] // 2
    z = F.conv2d(F.relu(F.conv2d(h, p["small.conv1"], padding=pad)), p["small.conv2"], padding=pad)
    return F.relu(z + h if skip else z)


def last_forward(p: Params, s: Params, h: Tensor, train: bool, new: Params) -> Tensor:
    """Last block: conv1x1 stride 2, BN, ReLU, flatten, Linear."""
    z = F.relu(_bn(F.conv2d(h, p["last.conv"], stride=2), p, s, "last.bn", train, new))
    return F.linear(z.flatten(1), p["last.fc.w"], p["last.fc.b"])


def forward(
    p: Params, s: Params, x: Tensor, middle: str, train: bool, skip: bool = True
) -> tuple[Tensor, Params]:
    """Whole network. Returns (logits, updated running stats; equal to ``s`` when not training).

    Args:
        p: Parameters (shared + the chosen middle block's).
        s: BN running statistics.
        x: Images [N, C, H, W].
        middle: ``"large"`` or ``"small"``.
        train: Use batch statistics and update running stats.
        skip: Identity skip in the small block (``BlockSpec.small_skip``).
    """
    new: Params = dict(s)
    h = begin_forward(p, s, x, train, new)
    h = large_forward(p, s, h, train, new) if middle == "large" else small_forward(p, h, skip)
    return last_forward(p, s, h, train, new), new


def fold_last(p: Params, s: Params) -> Params:
    """Frozen last block with its eval-mode BN folded into the 1x1 conv (same outputs, cheaper)."""
    scale = p["last.bn.w"] / torch.sqrt(s["last.bn.var"] + BN_EPS)
    return {
        "conv": p["last.conv"] * scale[:, None, None, None],
        "bias": p["last.bn.b"] - s["last.bn.mean"] * scale,
        "fc.w": p["last.fc.w"],
        "fc.b": p["last.fc.b"],
    }


def folded_last_forward(q: Params, h: Tensor) -> Tensor:
    """Forward of :func:`fold_last`'s output."""
    z = F.relu(F.conv2d(h, q["conv"], q["bias"], stride=2))
    return F.linear(z.flatten(1), q["fc.w"], q["fc.b"])
