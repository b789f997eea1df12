"""Image teachers for embeddings-as-teachers experiments: an autoencoder and an other-task classifier.

Both teachers are plain registered ``cnn`` models (``resize=28`` so one set of weights embeds
28x28 Fashion-MNIST and upsampled 8x8 digits alike); the embedding is the output of ``fc``.

- *Unsupervised*: :func:`train_autoencoder` trains the CNN's conv blocks + ``fc`` as the encoder of a
  convolutional autoencoder (MSE reconstruction, no labels); the classifier ``head`` stays unused.
- *Other task*: :func:`train_classifier` trains the CNN on different labels, e.g. the coarse
  Fashion-MNIST super-classes of :data:`FMNIST_COARSE`, while students learn the 10 fine classes.

:func:`save_exported` writes ``X.safetensors`` + ``X.json`` in the format of exported students, so
``kdforge embed extract --model cnn --checkpoint X.safetensors --path fc --name NAME`` caches them.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from kdforge.io import model_spec, save_model
from kdforge.models.cnn import CNN

#: Fashion-MNIST fine class -> super-class: 0 tops (T-shirt, pullover, coat, shirt), 1 trousers,
#: 2 dresses, 3 footwear (sandal, sneaker, ankle boot), 4 bags.
FMNIST_COARSE: tuple[int, ...] = (0, 1, 0, 2, 0, 3, 0, 3, 4, 3)


def coarse_labels(y: Tensor) -> Tensor:
    """Map Fashion-MNIST labels (0-9) to the 5 super-classes of :data:`FMNIST_COARSE`."""
    return torch.tensor(FMNIST_COARSE, dtype=torch.int64)[y]


def encode(cnn: CNN, x: Tensor) -> Tensor:
    """The CNN's embedding: the output of its ``fc`` (what ``--path fc`` caches), before ``head``."""
    h = x
    if cnn.resize is not None and tuple(h.shape[-2:]) != (cnn.resize, cnn.resize):
        h = F.interpolate(h, size=(cnn.resize, cnn.resize), mode="bilinear", align_corners=False)
    for block in cnn.blocks:
        h = block(h)
    return cnn.fc(cnn.pool(h).flatten(1))


class ConvDecoder(nn.Module):
    """Embedding ``[N, D]`` -> image ``[N, 1, 4s, 4s]`` in [0, 1] (two stride-2 transposed convs)."""

    def __init__(self, dim: int, size: int = 28, width: int = 32) -> None:
        super().__init__()
        self.s = size // 4
        self.width = width
        self.fc = nn.Linear(dim, width * self.s * self.s)
        self.up = nn.Sequential(
            nn.ReLU(),
            nn.ConvTranspose2d(width, width // 2, 4, stride=2, padding=1),
            nn.ReLU(),
            nn.ConvTranspose2d(width // 2, 1, 4, stride=2, padding=1),
        )

    def forward(self, z: Tensor) -> Tensor:
        return torch.sigmoid(self.up(self.fc(z).view(-1, self.width, self.s, self.s)))


def _batches(n: int, batch_size: int, g: torch.Generator):
    perm = torch.randperm(n, generator=g)
    for i in range(0, n, batch_size):
        yield perm[i : i + batch_size]


def train_autoencoder(
    encoder: CNN,
    images: Tensor,
    epochs: int = 3,
    batch_size: int = 128,
    lr: float = 2e-3,
    seed: int = 0,
    log: bool = True,
) -> list[float]:
    """Train ``encoder`` (blocks + ``fc``) with a :class:`ConvDecoder` to reconstruct ``images``; no labels.

    Args:
        encoder: a :class:`CNN` with ``resize`` set (the reconstruction target is the resized input).
        images: ``[N, 1, H, W]`` in [0, 1].

    Returns:
        Mean reconstruction MSE of each epoch (decreasing when it learns).
    """
    torch.manual_seed(seed)
    size = encoder.resize or images.shape[-1]
    dim = encoder.head.in_features
    decoder = ConvDecoder(dim, size, width=encoder.blocks[-1][0].out_channels)
    params = [p for n, p in encoder.named_parameters() if not n.startswith("head.")]
    opt = torch.optim.Adam([*params, *decoder.parameters()], lr=lr)
    g = torch.Generator().manual_seed(seed)
    encoder.train()
    history = []
    for epoch in range(epochs):
        t0, total = time.perf_counter(), 0.0
        for idx in _batches(len(images), batch_size, g):
            x = images[idx]
            target = x if x.shape[-1] == size else F.interpolate(x, size=(size, size), mode="bilinear")
            loss = F.mse_loss(decoder(encode(encoder, x)), target)
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += loss.item() * len(idx)
        history.append(total / len(images))
        if log:
            print(f"autoencoder epoch {epoch}: mse {history[-1]:.4f} ({time.perf_counter() - t0:.0f}s)")
    encoder.eval()
    return history


def train_classifier(
    model: nn.Module,
    images: Tensor,
    labels: Tensor,
    epochs: int = 2,
    batch_size: int = 128,
    lr: float = 2e-3,
    seed: int = 0,
    log: bool = True,
) -> list[float]:
    """Train ``model`` with cross-entropy on ``(images, labels)`` (e.g. super-class labels).

    Returns:
        Training accuracy of each epoch.
    """
    torch.manual_seed(seed)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    g = torch.Generator().manual_seed(seed)
    model.train()
    history = []
    for epoch in range(epochs):
        t0, correct = time.perf_counter(), 0
        for idx in _batches(len(images), batch_size, g):
            logits = model(images[idx])
            loss = F.cross_entropy(logits, labels[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            correct += (logits.argmax(-1) == labels[idx]).sum().item()
        history.append(correct / len(images))
        if log:
            print(f"classifier epoch {epoch}: train acc {history[-1]:.4f} ({time.perf_counter() - t0:.0f}s)")
    model.eval()
    return history


def save_exported(
    model: nn.Module, path: str | Path, name: str, kwargs: dict[str, Any], input_shape, num_classes: int
) -> Path:
    """Write ``<path>.safetensors`` + ``<path>.json`` (builder + kwargs), like exported students."""
    return save_model(model, model_spec(name, kwargs, input_shape, num_classes), path)


__all__ = [
    "FMNIST_COARSE",
    "ConvDecoder",
    "coarse_labels",
    "encode",
    "save_exported",
    "train_autoencoder",
    "train_classifier",
]
