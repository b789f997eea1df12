"""A trained model with a new classification head: fit a teacher to a data set's classes.

A teacher trained for other classes (or an encoder that outputs features) gets a linear head
for the data's classes. With ``freeze_body`` only the head trains (a linear probe) and the body
stays in eval mode; without it the whole model is fine-tuned.
"""

from __future__ import annotations

from typing import Any

from safetensors import SafetensorError
from safetensors.torch import load_file
from torch import Tensor, nn

from kdforge.errors import KdforgeError
from kdforge.registry import register_model


class WithHead(nn.Module):
    """``head(body(**inputs))``; ``body`` outputs ``[B, features]``.

    Feature paths: ``body.<its own paths>``, ``head``.
    """

    def __init__(self, body: nn.Module, features: int, num_classes: int, freeze_body: bool) -> None:
        super().__init__()
        self.body = body
        self.head = nn.Linear(features, num_classes)
        self.freeze_body = freeze_body
        if freeze_body:
            body.requires_grad_(False)

    def forward(self, **inputs: Tensor) -> Tensor:
        return self.head(self.body(**inputs).flatten(1))

    def train(self, mode: bool = True) -> WithHead:
        super().train(mode)
        if self.freeze_body:  # a probed body keeps its eval-mode behaviour (dropout, batch norm)
            self.body.eval()
        return self


def load_weights_file(model: nn.Module, path: str, role: str) -> None:
    """Load a safetensors file into ``model`` exactly (clear errors for missing/mismatching files)."""
    try:
        state = load_file(path)
    except FileNotFoundError:
        raise KdforgeError(
            f"{role} weights '{path}' do not exist", f"fix the {role} checkpoint path"
        ) from None
    except (SafetensorError, OSError) as e:
        raise KdforgeError(f"{role} weights '{path}' are unreadable: {e}", "re-export them") from None
    try:
        model.load_state_dict(state)
    except RuntimeError as e:
        first = str(e).splitlines()[0]
        raise KdforgeError(
            f"{role} weights '{path}' do not fit its architecture ({first})",
            f"give the {role} the name and kwargs of the model that wrote the weights",
        ) from None


@register_model("with_head")
def with_head(
    input_shape: tuple[int, ...],
    num_classes: int,
    body: dict[str, Any] | None = None,
    freeze_body: bool = True,
) -> WithHead:
    """A built model (``body``: name, kwargs, outputs, optional checkpoint) plus a linear head.

    ``body["outputs"]`` is the width of the body's output (its own class count, or its feature
    size); the new head maps it to this data set's ``num_classes``. ``freeze_body`` trains the head
    alone (linear probe); ``false`` fine-tunes everything. Without ``body``: an untrained
    one-hidden-layer MLP with 64 outputs.
    """
    from kdforge.models import build_model

    body = body or {"name": "mlp", "kwargs": {"hidden": [64]}, "outputs": 64}
    if "name" not in body or "outputs" not in body:
        raise KdforgeError(
            "model 'with_head' needs body={name, kwargs, outputs[, checkpoint]}",
            "describe the trained model the head goes on",
        )
    model = build_model(body["name"], input_shape, int(body["outputs"]), **body.get("kwargs", {}))
    if body.get("checkpoint"):
        load_weights_file(model, str(body["checkpoint"]), "teacher body")
    return WithHead(model, int(body["outputs"]), num_classes, freeze_body)
