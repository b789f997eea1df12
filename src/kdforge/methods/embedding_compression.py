"""Embeddings as teachers (EAsT) with embedding compression (EC).

Ding & Lerch, "Audio Embeddings as Teachers for Music Classification" (ISMIR
2023) and "Embedding Compression for Teacher-to-Student Knowledge Transfer"
(arXiv 2402.06761). A frozen pre-trained model's embedding ``e`` of each
training example (cached once by ``kdforge embed extract``, arriving in the
batch as ``teacher_emb``) teaches a student trained from scratch:

.. math::

    L = (1 - \\lambda) \\, CE(y, z_s) + \\lambda \\, L_{reg}(f_s, t)
        \\; [+ \\, w_g \\, CE(y, h(g(e)))] \\; [+ \\, w_{kd} \\, KD(z_s, z_{probe})]

- EAsT (``compress=False``): target ``t = e``.
- EC (``compress=True``): a teacher transformation ``g: R^D -> R^d`` (linear or
  MLP) compresses ``e``; ``g`` is trained only by its own linear head ``h`` on
  the labels, and the student's target is ``t = g(e).detach()`` (the distance
  loss never updates ``g``). Both are trained in the same loop.
- ``L_reg``: distance correlation ``1 - dCor(f_s, t)`` (no regressor; dims may
  differ) or FitNet ``MSE(r(f_s), t)`` with a trainable linear regressor ``r``
  (the target is standardised per batch so the loss scale does not depend on
  the embedding's norm).
- ``f_s``: the student feature at ``student_path``; 4-D maps are average-pooled
  to ``[N, C]``. Sequences ``[N, T, C]`` are aligned in time with a sequence
  target (repeat the coarser, truncate to the shorter) or mean-pooled when the
  target is one vector per example.
- Optional Hinton KD from a linear probe on the teacher embedding (``h`` on
  ``g(e)`` under EC; a separate probe on ``e`` otherwise), trained on labels.

No teacher network is needed at train time (``needs_teacher = False``).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from kdforge.errors import KdforgeError
from kdforge.losses.dcor import dcor_loss
from kdforge.losses.fitnet import fitnet_loss
from kdforge.losses.kd import kd_loss
from kdforge.methods._base import Batch, Method
from kdforge.models.hooks import FeatureHooks
from kdforge.registry import register_method


@dataclass
class EAsTConfig:
    """Options of EAsT / EC."""

    compress: bool = True  # EC (True) or plain EAsT (False)
    loss: str = "dcor"  # dcor | fitnet
    lam: float = 0.7  # loss = (1 - lam) * task + lam * reg
    d: int = 32  # compressed dimension (EC only)
    transform: str = "linear"  # linear | mlp
    mlp_hidden: int = 128
    student_path: str = "pool"  # module whose output is the student feature
    g_weight: float = 1.0  # weight of g's own classification loss (EC only)
    kd_weight: float = 0.0  # + Hinton KD from a linear probe on the teacher embedding
    kd_temperature: float = 4.0
    emb_key: str = "teacher_emb"


def align_time(f: Tensor, t: Tensor) -> tuple[Tensor, Tensor]:
    """Make student ``f`` and target ``t`` comparable over time.

    ``[N, T1, C]`` vs ``[N, T2, D]``: repeat each step of the coarser sequence
    ``round(T_fine / T_coarse)`` times, then truncate both to the shorter length.
    A sequence against one vector per example is mean-pooled over time.
    """
    if f.dim() == 3 and t.dim() == 3:
        tf, tt = f.shape[1], t.shape[1]
        if tf < tt:
            f = f.repeat_interleave(max(1, round(tt / tf)), dim=1)
        elif tt < tf:
            t = t.repeat_interleave(max(1, round(tf / tt)), dim=1)
        n = min(f.shape[1], t.shape[1])
        return f[:, :n], t[:, :n]
    if f.dim() == 3:
        f = f.mean(1)
    if t.dim() == 3:
        t = t.mean(1)
    return f, t


def _standardise(t: Tensor) -> Tensor:
    dims = tuple(range(t.dim() - 1))
    return (t - t.mean(dims, keepdim=True)) / (t.std(dims, keepdim=True) + 1e-6)


@register_method("east")
class EmbeddingCompression(Method):
    """EAsT / EC: a (compressed) frozen teacher embedding pulls a student feature via dCor or FitNet."""

    Config = EAsTConfig
    needs_teacher = False
    batch_statistics = True  # dCor and the standardised FitNet target are per-batch statistics

    def __init__(self, student, teacher=None, config=None, example_batch=None) -> None:
        super().__init__(student, teacher, config, example_batch)
        cfg = self.config
        if cfg.loss not in ("dcor", "fitnet"):
            raise KdforgeError(f"east: unknown loss '{cfg.loss}'", "use loss=dcor or loss=fitnet")
        if cfg.transform not in ("linear", "mlp"):
            raise KdforgeError(f"east: unknown transform '{cfg.transform}'", "use transform=linear or mlp")
        if not 0.0 <= cfg.lam <= 1.0:
            raise KdforgeError(f"east: lam={cfg.lam} must be in [0, 1]", "loss = (1-lam)*task + lam*reg")
        if example_batch is None or cfg.emb_key not in example_batch:
            raise KdforgeError(
                f"method 'east' needs '{cfg.emb_key}' in its training batches",
                "use dataset with_teacher_emb (after `kdforge embed extract`) so train batches carry it",
            )
        self._hooks = FeatureHooks(student, [cfg.student_path], "student")
        emb = example_batch[cfg.emb_key].float()
        with torch.no_grad():
            was = student.training
            student.eval()
            logits = student(**self._inputs(example_batch))
            student.train(was)
        feat = self._feature()
        num_classes, dim_e = logits.shape[-1], emb.shape[-1]
        self.g: nn.Module | None = None
        self.g_head: nn.Module | None = None
        self.probe: nn.Module | None = None
        if cfg.compress:
            if cfg.transform == "linear":
                self.g = nn.Linear(dim_e, cfg.d)
            else:
                self.g = nn.Sequential(
                    nn.Linear(dim_e, cfg.mlp_hidden), nn.ReLU(), nn.Linear(cfg.mlp_hidden, cfg.d)
                )
            self.g_head = nn.Linear(cfg.d, num_classes)
        elif cfg.kd_weight > 0:
            self.probe = nn.Linear(dim_e, num_classes)
        target_dim = cfg.d if cfg.compress else dim_e
        self.regressor = nn.Linear(feat.shape[-1], target_dim) if cfg.loss == "fitnet" else None

    def _inputs(self, batch: Batch) -> Batch:
        return {k: v for k, v in batch.items() if k not in ("y", self.config.emb_key)}

    def _feature(self) -> Tensor:
        f = self._hooks[self.config.student_path]
        self._hooks.clear()
        return f.mean((2, 3)) if f.dim() == 4 else f

    def predict(self, batch: Batch) -> Tensor:
        """Student logits (the teacher embedding, if present, is ignored)."""
        out = self.student(**self._inputs(batch))
        self._hooks.clear()
        return out

    def training_step(self, batch: Batch) -> tuple[Tensor, dict[str, Tensor]]:
        cfg = self.config
        if cfg.emb_key not in batch:
            raise KdforgeError(f"training batch lacks '{cfg.emb_key}'", "use dataset with_teacher_emb")
        e, y = batch[cfg.emb_key].float(), batch["y"]
        logits = self.student(**self._inputs(batch))
        f = self._feature()
        terms: dict[str, Tensor] = {"task": (1 - cfg.lam) * F.cross_entropy(logits, y)}
        probe_logits = None
        if self.g is not None:
            z = self.g(e)  # gradient into g only from its own head
            g_logits = self.g_head(z.mean(1) if z.dim() == 3 else z)
            terms["g_head"] = cfg.g_weight * F.cross_entropy(g_logits, y)
            target, probe_logits = z.detach(), g_logits.detach()
        else:
            target = e
            if self.probe is not None:
                p = self.probe(e.mean(1) if e.dim() == 3 else e)
                terms["probe"] = F.cross_entropy(p, y)
                probe_logits = p.detach()
        f, target = align_time(f, target)
        if cfg.loss == "dcor":
            reg = dcor_loss(f, target)
        else:
            reg = fitnet_loss(self.regressor(f), _standardise(target))
        terms["reg"] = cfg.lam * reg
        if cfg.kd_weight > 0 and probe_logits is not None:
            terms["kd"] = cfg.kd_weight * kd_loss(logits, probe_logits, cfg.kd_temperature)
        return logits, terms


__all__ = ["EAsTConfig", "EmbeddingCompression", "align_time"]
