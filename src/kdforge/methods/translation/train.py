"""Training a translator: parameter-space MSE and/or a functional objective; checkpoints.

Functional objective: the translated small block is inserted between each pair's own frozen begin
and last blocks, and the translator is trained on the small network's task loss plus agreement (KL)
with the large network's outputs on a small bank of training images. The frozen begin activations
and the large network's logits on that bank are computed once per pair. Translating a new network
afterwards uses no data and no gradient step (:meth:`TrainedTranslator.translate`).
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.func import vmap
from tqdm import tqdm

from kdforge.errors import KdforgeError
from kdforge.io import load_tensors, read_metadata, save_tensors
from kdforge.methods.translation import grouped, networks
from kdforge.methods.translation.augment import Augment
from kdforge.methods.translation.pairs import HAS_SMALL
from kdforge.methods.translation.translator import (
    Translator,
    context_features,
    detokenize_small,
    hidden_permutation,
    hidden_rescale,
    tokenize_large,
    tokenize_small,
)


@dataclass
class TranslatorConfig:
    """Translator training settings.

    Args:
        kind, dim, depth, dropout: Translator architecture (see :class:`Translator`).
        mse_weight: Weight of the parameter-space MSE (reference objective).
        func_weight: Weight of the functional objective (0 = off).
        kd_weight: Share of the functional loss that is KL agreement with the large net (rest = CE).
            Both terms are means over (network, image) pairs, so their weight does not depend on
            ``batch_size`` (networks per step) or ``img_batch`` (images per network and step).
        epochs, batch_size, lr: Adam with a cosine schedule.
        bank: Training images per pair for the functional objective; ``img_batch`` used per step.
        eval_every: Epochs between validation-network evaluations (checkpoint selection).
        template: Translate to a *correction* of a fixed template: the small block of the training
            pair that scores best on the *validation* images (never the test split). Without it a
            fresh translator writes near-average weights; for a skip-less small block these are
            dead (ReLU outputs all zero), so the functional objective gets no gradient and never
            leaves chance accuracy.
        context: Context tokens from the begin/last blocks (see :class:`Translator`); 0 = none.
        hidden_perm: Augmentation: reorder the large block's hidden channels at random per network
            and step (an exact symmetry of its function, so the target is unchanged).
        hidden_scale: Augmentation: rescale each hidden channel by ``exp(U(-s, s))`` through BN1 and
            back through conv2 (exact by ReLU's positive homogeneity); 0 = off.
    """

    kind: str = "mixer"
    dim: int = 64
    depth: int = 4
    dropout: float = 0.0
    mse_weight: float = 1.0
    func_weight: float = 0.0
    kd_weight: float = 0.5
    epochs: int = 200
    batch_size: int = 64
    lr: float = 1e-3
    bank: int = 512
    img_batch: int = 128
    eval_every: int = 10
    seed: int = 0
    template: bool = False
    context: int = 0
    hidden_perm: bool = False
    hidden_scale: float = 0.0
    augment: Augment = field(default_factory=Augment)

    @classmethod
    def for_objective(cls, objective: str, **options) -> TranslatorConfig:
        """A config whose loss weights follow a named objective (see :data:`OBJECTIVES`).

        Raises:
            KdforgeError: an unknown objective name.
        """
        if objective not in OBJECTIVES:
            raise KdforgeError(
                f"unknown translator objective '{objective}'", f"use one of: {', '.join(OBJECTIVES)}"
            )
        mse_weight, func_weight = OBJECTIVES[objective]
        return cls(mse_weight=mse_weight, func_weight=func_weight, **options)


#: objective name -> (mse_weight, func_weight): parameter-space MSE, the functional loss, or both
OBJECTIVES: dict[str, tuple[float, float]] = {
    "mse": (1.0, 0.0),
    "functional": (0.0, 1.0),
    "both": (1.0, 1.0),
}

#: validation images the translator's checkpoint (and template) is selected on
VAL_IMAGES = 1000


def validation_images(splits, count: int = VAL_IMAGES) -> tuple[Tensor, Tensor]:
    """The first ``count`` images and labels of a data set's validation split (never test)."""
    val = splits.val.tensors
    return val["x"][:count], val["y"][:count]


class TrainedTranslator:
    """A translator plus the token normalisation it was trained with."""

    def __init__(self, net: Translator, norm: dict[str, Tensor], cfg: TranslatorConfig) -> None:
        self.net, self.norm, self.cfg, self.spec = net, norm, cfg, net.spec

    def predict(self, x: Tensor, ctx: Tensor | None = None) -> Tensor:
        """Normalised large-block tokens (+ context) -> normalised small-block tokens (+ template)."""
        y = self.net(x, ctx)
        return y + self.norm["base"] if "base" in self.norm else y

    def context(self, pairs: dict[str, Tensor]) -> Tensor | None:
        """Normalised context vectors of stacked networks, or None for a large-block-only translator."""
        if not self.net.context:
            return None
        return (context_features(pairs, self.spec) - self.norm["ctx_mean"]) / self.norm["ctx_std"]

    def translate_tokens(self, pairs: dict[str, Tensor]) -> dict[str, Tensor]:
        """Differentiable translation of stacked large blocks into small-block params."""
        x = (tokenize_large(pairs, self.spec) - self.norm["in_mean"]) / self.norm["in_std"]
        y = self.predict(x, self.context(pairs)) * self.norm["out_std"] + self.norm["out_mean"]
        return detokenize_small(y, self.spec)

    @torch.no_grad()
    def translate(self, pairs: dict[str, Tensor]) -> dict[str, Tensor]:
        """Translate new networks: one forward pass, no data, no gradient step."""
        self.net.eval()
        return self.translate_tokens(pairs)

    def save(self, path: str | Path) -> None:
        """Write a safetensors checkpoint (weights + normalisation + config in metadata)."""
        t = {f"net.{k}": v.contiguous() for k, v in self.net.state_dict().items()}
        t.update({f"norm.{k}": v.contiguous() for k, v in self.norm.items()})
        cfg = asdict(self.cfg)
        meta = {"spec": json.dumps(self.spec.to_dict()), "config": json.dumps(cfg)}
        save_tensors(path, t, metadata=meta)

    @classmethod
    def load(cls, path: str | Path, spec: networks.BlockSpec | None = None) -> TrainedTranslator:
        """Load a checkpoint; fails clearly on a corrupt file or other block shapes than ``spec``."""
        fix = "pass a file written by `train`"
        t = load_tensors(path, "translator checkpoint", fix)
        meta = read_metadata(path, "translator checkpoint")
        try:
            have = networks.BlockSpec(**json.loads(meta["spec"]))
            raw = json.loads(meta["config"])
        except (KeyError, TypeError, ValueError) as e:
            raise KdforgeError(f"'{path}' is not a readable translator checkpoint ({e})", fix) from e
        if spec is not None and have != spec:
            raise KdforgeError(
                f"translator '{path}' was trained for block shapes {have}, not {spec}",
                "use a translator trained on pairs with these block shapes",
            )
        cfg = TranslatorConfig(**{**raw, "augment": Augment(**raw["augment"])})
        net = Translator(have, cfg.kind, cfg.dim, cfg.depth, cfg.dropout, cfg.context)
        net.load_state_dict({k[4:]: v for k, v in t.items() if k.startswith("net.")})
        return cls(net, {k[5:]: v for k, v in t.items() if k.startswith("norm.")}, cfg)


def has_small(pairs: dict[str, Tensor]) -> Tensor:
    """Bool [P]: which networks carry a trained small block (pair sets without the flag: all)."""
    if HAS_SMALL in pairs:
        return pairs[HAS_SMALL].bool()
    return torch.ones(len(pairs["seed"]), dtype=torch.bool)


def norm_stats(pairs: dict[str, Tensor], spec: networks.BlockSpec) -> dict[str, Tensor]:
    """Per-(token, feature) mean/std of inputs and context (all networks) and of targets (trained
    small blocks only)."""
    x = tokenize_large(pairs, spec)
    y = tokenize_small(pairs, spec)[has_small(pairs)]
    c = context_features(pairs, spec)
    return {
        "in_mean": x.mean(0),
        "in_std": x.std(0).clamp_min(1e-6),
        "out_mean": y.mean(0),
        "out_std": y.std(0).clamp_min(1e-6),
        "ctx_mean": c.mean(0),
        "ctx_std": c.std(0).clamp_min(1e-6),
    }


@torch.no_grad()
def feature_bank(
    pairs: dict[str, Tensor], images: Tensor, chunk: int = 16, img_chunk: int = 256
) -> tuple[Tensor, Tensor, dict[str, Tensor]]:
    """Frozen begin activations and large-net logits of each pair on ``images`` (grouped engine).

    Returns (feats [P, M, C, h, w], large logits [P, M, classes], folded last-block params stacked).
    """
    stats = {k[6:]: v for k, v in pairs.items() if k.startswith("stats.")}
    p = {k: v for k, v in pairs.items() if k.startswith(("begin.", "large.", "last."))}
    feats: Tensor | None = None  # filled in place: the bank is the run's largest tensor (GBs)
    logits = []
    for i in range(0, len(pairs["seed"]), chunk):
        pp = {k: v[i : i + chunk] for k, v in p.items()}
        ss = {k: v[i : i + chunk] for k, v in stats.items()}
        k = len(pp["begin.conv"])
        l_parts = []
        for j in range(0, len(images), img_chunk):
            xb = images[j : j + img_chunk].repeat(1, k, 1, 1)
            h = grouped.begin(pp, ss, xb, False)  # [b, k*C, h, w]
            l_parts.append(grouped.last(pp, ss, grouped.large(pp, ss, h, False), False))  # [k, b, classes]
            h = h.reshape(len(xb), k, -1, *h.shape[2:]).transpose(0, 1)
            if feats is None:
                feats = h.new_empty(len(pairs["seed"]), len(images), *h.shape[2:])
            feats[i : i + k, j : j + len(xb)] = h
        logits.append(torch.cat(l_parts, 1))
    return feats, torch.cat(logits), vmap(networks.fold_last)(p, stats)


def small_logits(
    small: dict[str, Tensor], folded: dict[str, Tensor], feats: Tensor, skip: bool = True
) -> Tensor:
    """Logits [P, M, classes] of P small networks on their own cached begin activations [P, M, ...].

    All P networks run as one grouped-conv network (see :mod:`.grouped`).
    """
    h = feats.transpose(0, 1).flatten(1, 2)  # [M, P*C, h, w]: network j in channel slice j
    return grouped.folded_last(folded, grouped.small(small, h, skip))


def _take(d: dict[str, Tensor], idx: Tensor) -> dict[str, Tensor]:
    return {k: v[idx] for k, v in d.items()}


@torch.no_grad()
def bank_accuracy(
    small: dict[str, Tensor], folded: dict[str, Tensor], feats: Tensor, y: Tensor, skip: bool, chunk: int = 32
) -> Tensor:
    """Accuracy of each small network on its cached features: [P]."""
    out = []
    for i in range(0, len(feats), chunk):
        sl = slice(i, i + chunk)
        lo = small_logits(
            {k: v[sl] for k, v in small.items()}, {k: v[sl] for k, v in folded.items()}, feats[sl], skip
        )
        out.append((lo.argmax(-1) == y).float().mean(-1))
    return torch.cat(out)


def agreement_kl(translated_logits: Tensor, large_logits: Tensor) -> Tensor:
    """Mean KL(large || small) over every (network, image) pair of ``[P, M, classes]`` logits.

    ``KL = 1/(P*M) * sum_{p,m} sum_c q_pmc * (log q_pmc - log s_pmc)`` with ``q`` the large
    network's softmax and ``s`` the translated small network's. A mean over both batch axes, so the
    term's weight against the cross-entropy (also a mean) does not change with how many networks
    or images a step holds.
    """
    log_small = F.log_softmax(translated_logits, -1).flatten(0, 1)
    log_large = F.log_softmax(large_logits, -1).flatten(0, 1)
    return F.kl_div(log_small, log_large, log_target=True, reduction="batchmean")


@torch.no_grad()
def template_index(pairs: dict[str, Tensor], images: Tensor, labels: Tensor, skip: bool) -> int:
    """Index of the trained small block that scores best on ``images`` (validation images).

    The stored ``acc_small`` of a pair set is measured on test images, so it must not choose
    anything; this scores each full pair's own small block inside its own network instead.
    Large-only networks (untrained small block) are never chosen.
    """
    idx = torch.nonzero(has_small(pairs)).flatten()
    full = {k: v[idx] for k, v in pairs.items()}
    small = {k: v for k, v in full.items() if k.startswith("small.")}
    acc = grouped.small_accuracy(full, small, images, labels, skip)
    return int(idx[int(acc.argmax())])


def _symmetry_augment(
    x: Tensor, spec: networks.BlockSpec, cfg: TranslatorConfig, gen: torch.Generator
) -> Tensor:
    """Random function-preserving reorderings/rescalings of the large blocks' hidden channels."""
    b, c = len(x), spec.channels
    if cfg.hidden_perm:
        order = torch.argsort(torch.rand(b, c, generator=gen), 1)
        x = x.gather(1, hidden_permutation(spec, order)[..., None].expand_as(x))
    if cfg.hidden_scale:
        x = hidden_rescale(x, spec, torch.exp((torch.rand(b, c, generator=gen) * 2 - 1) * cfg.hidden_scale))
    return x


def train_translator(
    train_pairs: dict[str, Tensor],
    val_pairs: dict[str, Tensor],
    spec: networks.BlockSpec,
    cfg: TranslatorConfig,
    train_images: tuple[Tensor, Tensor],
    val_images: tuple[Tensor, Tensor],
    progress: bool = True,
    bank_cache: dict | None = None,
) -> tuple[TrainedTranslator, dict]:
    """Train a translator; keep the checkpoint with the best mean accuracy on the validation networks.

    Args:
        bank_cache: Optional dict reused across calls with the same pairs and images (e.g. several
            translator seeds): the frozen feature banks are computed once and stored in it.

    Returns (best translator, history with per-epoch loss and validation accuracy).
    """
    cache = {} if bank_cache is None else bank_cache
    if len(train_pairs.get("seed", [])) == 0:
        raise KdforgeError("no training pairs (empty pair set)", "generate pairs with `make-pairs` first")
    full = has_small(train_pairs)
    if not bool(full.any()):
        raise KdforgeError(
            "no training network has a trained small block (all are large-only, epochs_small=0)",
            "add full pairs: the output normalisation and the template come from trained small blocks",
        )
    if cfg.mse_weight > 0 and not bool(full.all()):
        raise KdforgeError(
            f"the MSE objective needs small-block targets, but {int((~full).sum())} of the "
            f"{len(full)} training networks are large-only (made with epochs_small=0)",
            "train large-only networks with the functional objective only (mse_weight=0), "
            "or leave them out of the training set",
        )
    torch.manual_seed(cfg.seed)
    gen = torch.Generator().manual_seed(cfg.seed)
    net = Translator(spec, cfg.kind, cfg.dim, cfg.depth, cfg.dropout, cfg.context)
    tt = TrainedTranslator(net, norm_stats(train_pairs, spec), cfg)
    x_raw = tokenize_large(train_pairs, spec)
    x_all = (x_raw - tt.norm["in_mean"]) / tt.norm["in_std"]
    ctx_all = tt.context(train_pairs)
    y_all = (tokenize_small(train_pairs, spec) - tt.norm["out_mean"]) / tt.norm["out_std"]
    if cfg.template:
        tt.norm["base"] = y_all[template_index(train_pairs, *val_images, spec.small_skip)].clone()
    if cfg.func_weight > 0:
        xi, yi = train_images[0][: cfg.bank], train_images[1][: cfg.bank]
        if ("train", cfg.bank) not in cache:
            cache["train", cfg.bank] = feature_bank(train_pairs, xi)
        feats, large_lo, folded = cache["train", cfg.bank]
    if "val" not in cache:
        cache["val"] = feature_bank(val_pairs, val_images[0])
    v_feats, _, v_folded = cache["val"]
    opt = torch.optim.Adam(net.parameters(), lr=cfg.lr)
    n = len(x_all)
    steps = cfg.epochs * math.ceil(n / cfg.batch_size)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: 0.5 * (1 + math.cos(math.pi * min(s / steps, 1)))
    )
    hist: dict[str, list] = {"epoch": [], "loss": [], "val_acc": []}
    best, best_acc, t0 = None, -1.0, time.perf_counter()
    for epoch in tqdm(range(cfg.epochs), desc=f"translator {cfg.kind}", disable=not progress):
        net.train()
        perm, tot = torch.randperm(n, generator=gen), 0.0
        for b in range(0, n, cfg.batch_size):
            idx = perm[b : b + cfg.batch_size]
            if cfg.hidden_perm or cfg.hidden_scale:
                xb = (_symmetry_augment(x_raw[idx], spec, cfg, gen) - tt.norm["in_mean"]) / tt.norm["in_std"]
            else:
                xb = x_all[idx]
            xb, yb = cfg.augment(xb, y_all[idx], gen)
            pred = tt.predict(xb, None if ctx_all is None else ctx_all[idx])
            loss = cfg.mse_weight * F.mse_loss(pred, yb) if cfg.mse_weight else torch.zeros(())
            if cfg.func_weight > 0:
                small = detokenize_small(pred * tt.norm["out_std"] + tt.norm["out_mean"], spec)
                m = torch.randint(0, len(xi), (cfg.img_batch,), generator=gen)
                lo = small_logits(small, _take(folded, idx), feats[idx][:, m], spec.small_skip)
                ce = F.cross_entropy(lo.flatten(0, 1), yi[m].repeat(len(idx)))
                kl = agreement_kl(lo, large_lo[idx][:, m])
                loss = loss + cfg.func_weight * ((1 - cfg.kd_weight) * ce + cfg.kd_weight * kl)
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            tot += float(loss.detach()) * len(idx)
        if (epoch + 1) % cfg.eval_every == 0 or epoch + 1 == cfg.epochs:
            small_va = tt.translate(val_pairs)
            acc = float(bank_accuracy(small_va, v_folded, v_feats, val_images[1], spec.small_skip).mean())
            hist["epoch"].append(epoch + 1)
            hist["loss"].append(tot / n)
            hist["val_acc"].append(acc)
            if acc > best_acc:
                best_acc, best = acc, {k: v.clone() for k, v in net.state_dict().items()}
    net.load_state_dict(best)
    hist.update(best_val_acc=best_acc, seconds=time.perf_counter() - t0)
    return tt, hist
