"""BERT-of-Theseus: progressive module replacement (Xu et al., EMNLP 2020, arXiv 2002.02925).

The teacher's ``N`` layers (found by path, ``blocks`` for our MLP/CNN,
``encoder.layer`` for HF BERT) form ``n`` groups of ``N / n`` consecutive
layers; the student has ``n`` layers of the same width ("successors"). At each
training step every successor independently replaces its group with
probability ``p`` (drawn from :attr:`Method.shared_rng`, so every process replaces the
same groups); the other groups run the teacher's frozen layers. ``p``
follows the linear curriculum ``p = min(1, p0 + k * t)``; once it reaches 1
the student trains alone. Only the task loss (cross-entropy) is used. The
deployed model is the student: successors plus its embeddings and head, which
are initialised from the teacher's where names and shapes match.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from kdforge.errors import KdforgeError
from kdforge.methods._base import Batch, Method, model_inputs
from kdforge.registry import register_method


@dataclass
class TheseusConfig:
    """Options of BERT-of-Theseus."""

    student_layers: str = "blocks"  # path of the student's layer list (HF BERT: encoder.layer)
    teacher_layers: str = "blocks"
    p0: float = 0.5  # initial replacement rate
    k: float | None = None  # slope per step; None: reach p = 1 at curriculum_fraction of training
    curriculum_fraction: float = 0.5
    init_from_teacher: bool = True  # successor i <- first layer of group i; shared parts <- teacher


def replacement_rate(step: int, total_steps: int, p0: float, k: float | None, fraction: float) -> float:
    """Linear curriculum ``p = min(1, p0 + k * step)``; default ``k`` reaches 1 at ``fraction * total``."""
    if k is None:
        k = (1.0 - p0) / max(1.0, fraction * total_steps)
    return float(min(1.0, p0 + k * step))


class _Group(nn.Module):
    """Consecutive frozen teacher layers standing in for one successor.

    Unlike ``nn.Sequential`` it hands every extra argument (HF BERT layers get the attention
    mask) to each layer, and passes a tuple output's first item on as the next hidden state.
    """

    def __init__(self, layers: list[nn.Module]) -> None:
        super().__init__()
        self.layers = nn.ModuleList(layers)

    def forward(self, hidden: Tensor, *args, **kwargs):
        out = hidden
        for layer in self.layers:
            out = layer(hidden, *args, **kwargs)
            hidden = out[0] if isinstance(out, tuple) else out
        return out


def _layer_list(model: nn.Module, path: str, role: str) -> tuple[nn.Module, str, nn.ModuleList]:
    try:
        layers = model.get_submodule(path)
    except AttributeError:
        layers = None
    if not isinstance(layers, nn.ModuleList):
        lists = [n for n, m in model.named_modules() if isinstance(m, nn.ModuleList)]
        raise KdforgeError(
            f"{role} has no layer list (nn.ModuleList) at '{path}'",
            f"set {role}_layers to one of: {', '.join(lists) or '(none)'}",
        )
    parent_name, _, leaf = path.rpartition(".")
    return (model.get_submodule(parent_name) if parent_name else model), leaf, layers


@register_method("theseus")
class Theseus(Method):
    """Successor layers progressively replace groups of frozen teacher layers."""

    Config = TheseusConfig

    def __init__(self, student, teacher=None, config=None, example_batch=None) -> None:
        super().__init__(student, teacher, config, example_batch)
        cfg = self.config
        # the layer list's parent is looked up by path, never stored: as a module attribute it would
        # register the student a second time (duplicate, shared tensors in state_dict and checkpoints)
        _, self._leaf, s_layers = _layer_list(student, cfg.student_layers, "student")
        _, _, t_layers = _layer_list(teacher, cfg.teacher_layers, "teacher")
        n, big_n = len(s_layers), len(t_layers)
        if n == 0 or big_n % n:
            raise KdforgeError(
                f"teacher has {big_n} layers, student {n}: the teacher's layers must split into "
                f"{n} equal groups",
                "give the student a number of layers that divides the teacher's",
            )
        g = big_n // n
        self.groups = [list(range(i * g, (i + 1) * g)) for i in range(n)]
        if cfg.init_from_teacher:
            self._init_from_teacher(student, teacher, s_layers, t_layers)
        self.p = cfg.p0
        if example_batch is not None:  # fail now, not mid-training, if widths are incompatible
            try:
                with torch.no_grad():
                    self._mixed_forward(model_inputs(example_batch), [False] * n)
            except RuntimeError as e:
                raise KdforgeError(
                    f"teacher layer groups cannot stand in for the student's layers: {e}",
                    "Theseus needs a student whose layers have the teacher's width (fewer of them)",
                ) from None

    def _init_from_teacher(self, student, teacher, s_layers, t_layers) -> None:
        with torch.no_grad():
            for i, group in enumerate(self.groups):
                src = t_layers[group[0]].state_dict()
                dst = s_layers[i].state_dict()
                if {k: v.shape for k, v in src.items()} == {k: v.shape for k, v in dst.items()}:
                    s_layers[i].load_state_dict(src)
            skip_s = self.config.student_layers + "."
            t_state = teacher.state_dict()
            for name, tensor in student.state_dict().items():
                if not name.startswith(skip_s) and name in t_state and t_state[name].shape == tensor.shape:
                    tensor.copy_(t_state[name])

    @property
    def _parent(self) -> nn.Module:
        parent_path = self.config.student_layers.rpartition(".")[0]
        return self.student.get_submodule(parent_path) if parent_path else self.student

    def _mixed_forward(self, inputs: Batch, replace: list[bool]) -> Tensor:
        parent = self._parent
        s_layers = getattr(parent, self._leaf)
        t_layers = self.teacher.get_submodule(self.config.teacher_layers)
        mixed = nn.ModuleList(
            s_layers[i] if r else _Group([t_layers[j] for j in self.groups[i]]) for i, r in enumerate(replace)
        )
        parent._modules[self._leaf] = mixed  # swap the stack for this forward only
        try:
            return self.student(**inputs)
        finally:
            parent._modules[self._leaf] = s_layers

    def on_step_start(self, step: int, total_steps: int) -> None:
        cfg = self.config
        self.p = replacement_rate(step, total_steps, cfg.p0, cfg.k, cfg.curriculum_fraction)

    def training_step(self, batch: Batch) -> tuple[Tensor, dict[str, Tensor]]:
        inputs = model_inputs(batch)
        if self.p >= 1.0:
            logits = self.student(**inputs)
        else:
            # one draw shared by every process (a per-process draw would train different graphs)
            replace = (torch.rand(len(self.groups), generator=self.shared_rng) < self.p).tolist()
            logits = self._mixed_forward(inputs, replace)
        return logits, {"ce": F.cross_entropy(logits, batch["y"])}
