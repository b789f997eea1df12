"""AD-KD: attribution-driven knowledge distillation (Wu et al., ACL 2023, arXiv 2305.10010).

loss = (1 - alpha) * CE + alpha * T^2 * KL(teacher || student) + beta * L_attr, where
L_attr compares L2-normalised Integrated-Gradient attribution maps of teacher and
student over input tokens (or pixels), for the teacher's top-k classes ("multi-view").

Attributions are taken on the *input embeddings*: the output of the module at
``embedding_path`` (HF BERT: ``embeddings.word_embeddings``), or, when it is
None, the raw input tensor ``batch[input_key]`` (our MLP/CNN on images).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from kdforge.losses.attribution import attribution_loss, integrated_gradients
from kdforge.losses.kd import hinton_loss
from kdforge.methods._base import Batch, Method, model_inputs
from kdforge.models.hooks import get_module
from kdforge.registry import register_method


@dataclass
class ADKDConfig:
    """Options of AD-KD."""

    temperature: float = 4.0
    alpha: float = 0.9  # soft-target weight of the KD part
    beta: float = 1.0  # weight of the attribution loss
    steps: int = 8  # Integrated-Gradient interpolation points
    top_k: int = 3  # classes (teacher's most probable) attributed per example
    input_key: str = "x"
    embedding_path: str | None = None  # module whose output is attributed (None: batch[input_key])
    student_embedding_path: str | None = None  # default: embedding_path


def _embedded_forward(
    model: nn.Module, batch: Batch, cfg: ADKDConfig, path: str | None, steps: int, grad: bool = False
) -> tuple[Tensor, Callable[[Tensor], Tensor]]:
    """``(embedding, f)`` with ``f(e')`` = logits of ``model`` with its input embedding replaced by ``e'``.

    ``e'`` stacks ``steps`` interpolations of the batch, so the other inputs are repeated.
    """
    inputs = model_inputs(batch)
    rep = {k: v.repeat(steps, *[1] * (v.dim() - 1)) for k, v in inputs.items()}
    if path is None:
        key = cfg.input_key

        def f(e: Tensor) -> Tensor:
            return model(**{**rep, key: e})

        return inputs[key].float(), f
    module = get_module(model, path, "model")
    captured: dict[str, Tensor] = {}
    handle = module.register_forward_hook(lambda _m, _i, out: captured.__setitem__("e", out))
    try:
        with torch.set_grad_enabled(grad):
            model(**inputs)
    finally:
        handle.remove()

    def f_hooked(e: Tensor) -> Tensor:
        h = module.register_forward_hook(lambda _m, _i, _o: e)
        try:
            return model(**rep)
        finally:
            h.remove()

    return captured["e"], f_hooked


def token_maps(attr: Tensor, sequence: bool) -> Tensor:
    """``(B, K, ...)`` attributions -> ``(B, K, T)``: sum over the embedding dim (sequences) or flatten."""
    return attr.sum(-1) if sequence else attr.flatten(2)


@register_method("adkd")
class ADKD(Method):
    """Hinton KD plus multi-view Integrated-Gradient attribution alignment."""

    Config = ADKDConfig

    def _attributions(self, model: nn.Module, batch: Batch, path: str | None, classes: Tensor, grad: bool):
        cfg = self.config
        emb, f = _embedded_forward(model, batch, cfg, path, cfg.steps, grad)
        attr = integrated_gradients(f, emb, classes, cfg.steps, create_graph=grad)
        return token_maps(attr, sequence=path is not None)

    def _classes(self, t_logits: Tensor) -> Tensor:
        """The teacher's ``top_k`` most probable classes of each example: the attributed views."""
        return t_logits.topk(min(self.config.top_k, t_logits.shape[-1]), dim=-1).indices

    def teacher_targets(self, batch: Batch) -> dict[str, Tensor]:
        """The teacher's logits and its attribution maps for its top-k classes."""
        t_logits = self.teacher_forward(batch)
        classes = self._classes(t_logits)
        t_attr = self._attributions(self.teacher, batch, self.config.embedding_path, classes, grad=False)
        return {"logits": t_logits, "attr": t_attr.detach()}

    def teacher_targets_key(self) -> dict[str, Any]:
        cfg = self.config
        settings = ("steps", "top_k", "input_key", "embedding_path")
        return {"method": "ADKD", **{name: getattr(cfg, name) for name in settings}}

    def training_step(self, batch: Batch) -> tuple[Tensor, dict[str, Tensor]]:
        cfg = self.config
        logits = self.student(**model_inputs(batch))
        teacher = self.teacher_outputs(batch)
        t_logits, t_attr = teacher["logits"], teacher["attr"]
        ce, kl = hinton_loss(logits, t_logits, batch["y"], cfg.temperature, cfg.alpha)
        classes = self._classes(t_logits)
        s_path = cfg.student_embedding_path or cfg.embedding_path
        s_attr = self._attributions(self.student, batch, s_path, classes, grad=True)
        return logits, {"ce": ce, "kd": kl, "attr": cfg.beta * attribution_loss(s_attr, t_attr)}
