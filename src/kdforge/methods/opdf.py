"""Over-parameterized distillation (OPDF; Zhan et al., NeurIPS 2024) as a wrapper around any base method.

The student's chosen linear layers are swapped for exact, untruncated MPO (or
SVD) layers, so it trains with many more parameters but computes the same map;
the base method (KD, FitNet, Theseus, ...) runs unchanged on that student, and
OPDF adds one term::

    loss = base-method terms + lambda_align * L_align(student aux tensors, teacher aux tensors)

The teacher's mapped layers are MPO-decomposed once, with factorizations chosen
so that the auxiliary tensors of both sides have equal shapes (the central
tensor absorbs the width difference). ``export()`` collapses the student back
to plain ``nn.Linear`` layers: same size and speed as the plain student.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from torch import Tensor, nn

from kdforge.errors import KdforgeError
from kdforge.layers import collapse, factorized_layers, match_linear, overparameterize
from kdforge.layers.overparam import name_matches
from kdforge.losses.alignment import check_alignable, default_layer_map, tensor_alignment_loss
from kdforge.methods._base import Batch, Method
from kdforge.registry import METHODS, register_method
from kdforge.tensor.mpo import mpo_decompose, propose_factorization


@dataclass
class OPDFConfig:
    """Options of OPDF."""

    base: str = "kd"  # the wrapped method (any registered method except opdf)
    base_kwargs: dict[str, Any] = field(default_factory=dict)
    overparam: str = "mpo"  # mpo | svd (svd: the baseline, never aligned)
    patterns: list[str] = field(default_factory=lambda: ["blocks.*.0"])  # student layers
    teacher_patterns: list[str] | None = None  # teacher layers to align with (default: patterns)
    layer_map: dict[str, str] | None = None  # student layer -> teacher layer (default: l*r + r - 1)
    n: int = 5  # MPO tensors per layer
    factors: dict[str, list[list[int]]] = field(default_factory=dict)  # name -> [row, col] factors
    lambda_align: float = 0.0  # weight of the tensor alignment loss (0: off)
    mpo_lr_scale: float = 1.0  # learning rate of the MPO/SVD factors = lr * mpo_lr_scale
    forward_mode: str = "auto"  # auto | contract | sequential


def _shape(layer: nn.Module) -> tuple[int, int]:
    return layer.out_features, layer.in_features  # nn.Linear and FactorizedLinear alike


def _pair_factors(s_lin: nn.Module, t_lin: nn.Module, n: int) -> tuple[list[list[int]], list[list[int]]]:
    """Factorizations of a student and a teacher weight whose auxiliary tensors can match."""
    (so, si), (to, ti) = _shape(s_lin), _shape(t_lin)
    m = (so, si) != (to, ti)  # widths differ: bonds must be matched on both dims
    s = [propose_factorization(so, n, to, m), propose_factorization(si, n, ti, m)]
    t = [propose_factorization(to, n, so, m), propose_factorization(ti, n, si, m)]
    return s, t


_INDEX = re.compile(r"\d+")


def _default_pairs(names: list[str], t_names: list[str]) -> dict[str, str]:
    """Default student -> teacher layer map: ``l -> l * r + r - 1`` over *blocks*, not over layers.

    Names are grouped by their shape with the first integer (the block index) blanked,
    e.g. ``encoder.layer.{}.attention.self.query``; within each group student block ``l``
    maps to the teacher's ``l * r + r - 1``-th block of the same group, so query maps to
    query and FFN to FFN. Names without an index fall back to one flat list.
    """

    def groups(ns: list[str]) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {}
        for n in ns:
            out.setdefault(_INDEX.sub("{}", n, count=1), []).append(n)
        return out

    s_groups, t_groups = groups(names), groups(t_names)
    if not set(s_groups) <= set(t_groups):
        s_groups, t_groups = {"": names}, {"": t_names}
    pairs: dict[str, str] = {}
    for key, s_list in s_groups.items():
        t_list = t_groups[key]
        idx = default_layer_map(len(s_list), len(t_list))
        pairs.update({s: t_list[i] for s, i in zip(s_list, idx, strict=True)})
    return {s: pairs[s] for s in names}


@register_method("opdf")
class OPDF(Method):
    """Wraps ``base``: MPO/SVD-over-parameterized student, optional tensor alignment, collapsed export."""

    Config = OPDFConfig
    needs_teacher = False  # the wrapped base method decides; alignment checks for itself

    def __init__(self, student, teacher=None, config=None, example_batch=None) -> None:
        super().__init__(student, teacher, config, example_batch)
        cfg = self.config
        if cfg.base == "opdf":
            raise KdforgeError("OPDF cannot wrap itself", "set base to kd, fitnet, theseus, adkd, ...")
        if cfg.overparam not in ("mpo", "svd"):
            raise KdforgeError(f"unknown overparam '{cfg.overparam}'", "use overparam: mpo or svd")
        if (cfg.lambda_align or cfg.layer_map) and cfg.overparam != "mpo":
            raise KdforgeError(
                "tensor alignment (lambda_align, layer_map) needs MPO layers",
                "set lambda_align: 0 and no layer_map with overparam: svd",
            )
        if (cfg.lambda_align or cfg.layer_map) and teacher is None:
            raise KdforgeError(
                "tensor alignment (lambda_align, layer_map) needs a teacher",
                "add a teacher to the recipe, or set lambda_align: 0 and no layer_map",
            )
        # the base method is built on the plain student first (it may copy teacher weights into it,
        # size regressors or hook modules); its layers are then swapped in place
        self.base = METHODS.get(cfg.base).build(student, teacher, cfg.base_kwargs, example_batch)
        # a student that is already over-parameterized (rebuilt from an OPDF checkpoint) is reused as is
        existing = {
            n: m
            for n, m in factorized_layers(student).items()
            if any(name_matches(n, p) for p in cfg.patterns)
        }
        names = list(existing) if existing else match_linear(student, cfg.patterns)
        # the "without alignment" ablation (lambda_align=0) factorizes exactly as the aligned run
        # would: with a teacher of different width the matched factorizations differ from the
        # default ones, and the ablation must train the same parameterization
        pairs: dict[str, str] = {}
        if cfg.lambda_align or cfg.layer_map:
            pairs = self._layer_pairs(names)
        elif cfg.overparam == "mpo" and teacher is not None:
            try:
                pairs = self._layer_pairs(names)
            except KdforgeError:  # no teacher layers to pair with: nothing to match, defaults
                pairs = {}
        factors = {k: (v[0], v[1]) for k, v in cfg.factors.items()}
        t_factors: dict[str, tuple[list[int], list[int]]] = {}
        for s_name, t_name in pairs.items():
            s_f, t_f = _pair_factors(student.get_submodule(s_name), teacher.get_submodule(t_name), cfg.n)
            factors.setdefault(s_name, (s_f[0], s_f[1]))
            t_factors[t_name] = (t_f[0], t_f[1])
        self.layers = existing or overparameterize(
            student, cfg.patterns, cfg.overparam, n=cfg.n, factors=factors, forward_mode=cfg.forward_mode
        )
        self.pairs = pairs
        # the teacher's cores are fixed targets: non-persistent buffers, so .to() moves them with
        # the method and checkpoints stay free of them (they are recomputed from the teacher)
        self._core_buffers: dict[str, list[str]] = {}
        for i, (t_name, (rf, cf)) in enumerate(t_factors.items() if cfg.lambda_align else ()):
            w = teacher.get_submodule(t_name).weight.detach()
            self._core_buffers[t_name] = []
            for k, core in enumerate(mpo_decompose(w, rf, cf).cores):
                self.register_buffer(f"_tcore_{i}_{k}", core.contiguous(), persistent=False)
                self._core_buffers[t_name].append(f"_tcore_{i}_{k}")
        if pairs and cfg.lambda_align:
            check_alignable(
                [list(self.layers[s].cores) for s in pairs],
                [self.teacher_cores(t) for t in pairs.values()],
                [(f"student '{s}'", f"teacher '{t}'") for s, t in pairs.items()],
            )

    def teacher_cores(self, t_name: str) -> list[Tensor]:
        """The MPO cores of teacher layer ``t_name`` (buffers: on the method's device and dtype)."""
        return [getattr(self, b) for b in self._core_buffers[t_name]]

    def _layer_pairs(self, names: list[str]) -> dict[str, str]:
        cfg = self.config
        t_names = match_linear(self.teacher, cfg.teacher_patterns or cfg.patterns)
        if cfg.layer_map is not None:
            bad = [f"{s}->{t}" for s, t in cfg.layer_map.items() if s not in names or t not in t_names]
            if bad:
                raise KdforgeError(
                    f"layer_map entries {bad} name layers outside the matched student {names} / "
                    f"teacher {t_names} layers",
                    "map matched nn.Linear names (see patterns / teacher_patterns)",
                )
            return dict(cfg.layer_map)
        return _default_pairs(names, t_names)

    # ------------------------------------------------------------------ contract
    def training_step(self, batch: Batch) -> tuple[Tensor, dict[str, Tensor]]:
        logits, losses = self.base.training_step(batch)
        if self.config.lambda_align and self.pairs:
            align = tensor_alignment_loss(
                [list(self.layers[s].cores) for s in self.pairs],
                [self.teacher_cores(t) for t in self.pairs.values()],
            )
            losses = {**losses, "align": self.config.lambda_align * align}
        return logits, losses

    def predict(self, batch: Batch) -> Tensor:
        return self.base.predict(batch)

    def teacher_targets(self, batch: Batch) -> dict[str, Tensor]:
        """The wrapped method's teacher outputs (alignment reads the teacher's weights, not outputs)."""
        return self.base.teacher_targets(batch)

    def teacher_targets_key(self) -> dict[str, Any]:
        return self.base.teacher_targets_key()

    def derived_teacher_outputs(self, outputs: dict[str, Tensor]) -> dict[str, Tensor]:
        return self.base.derived_teacher_outputs(outputs)

    def on_step_start(self, step: int, total_steps: int) -> None:
        self.base.on_step_start(step, total_steps)

    def param_groups(self, lr: float) -> list[dict[str, Any]]:
        """Two groups: the MPO/SVD factors at ``lr * mpo_lr_scale``, everything else at ``lr``."""
        layers = factorized_layers(self.student).values()
        factor_ids = {id(p) for m in layers for n, p in m.named_parameters() if n != "bias"}
        params = self.trainable_parameters()
        groups = [
            {"params": [p for p in params if id(p) in factor_ids], "lr": lr * self.config.mpo_lr_scale},
            {"params": [p for p in params if id(p) not in factor_ids], "lr": lr},
        ]
        return [g for g in groups if g["params"]]

    def checkpoint_state(self) -> dict[str, Tensor]:
        """Student, extra modules of the base method; never the teacher (nor duplicate aliases)."""
        return {
            k: v
            for k, v in self.state_dict().items()
            if not k.startswith(("teacher.", "base.teacher.", "base.student."))
        }

    def export(self) -> nn.Module:
        """The collapsed student: plain ``nn.Linear`` layers, the plain student's size and outputs."""
        return collapse(self.base.export())

    def train_time_parameters(self) -> int:
        """Trainable student parameters while over-parameterized."""
        return sum(p.numel() for p in self.student.parameters())


__all__ = ["OPDF", "OPDFConfig"]
