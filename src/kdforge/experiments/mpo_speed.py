"""MPO speed: decomposition (ours vs tensorly), training-step cost, collapsed inference latency.

Every figure is measured side by side in one process: a median over ``repeats`` timings for
the decomposition and the single layers; for the students, plain and MPO steps (and plain and
collapsed forwards) take turns and each side's fastest call counts (the vision student's
latency: each side's median).
:func:`kdforge.experiments.mpo_speed_table.mpo_speed_markdown` renders the results from their
JSON alone.
"""

from __future__ import annotations

import os
import statistics
from collections.abc import Callable, Sequence

import torch
from torch import nn

from kdforge.experiments.intervals import Interval, verdict
from kdforge.experiments.timing import interleaved_seconds, median_seconds
from kdforge.layers import MPOLinear, collapse, factorized_layers, overparameterize
from kdforge.models.mlp import count_parameters, mlp
from kdforge.tensor.mpo import bond_dims, contraction_plan, mpo_decompose, propose_factorization

SHAPES = [(384, 384), (384, 1536), (768, 3072)]  # (out, in) of the timed weights
NLP_TARGET = 1.3  # MPO / plain training step of the MiniLM student
NLP_PATTERNS = [  # the OPDF NLP recipes' targets (configs/opdf/nlp_kd_opdf.yaml)
    r"re:.*encoder\.layer\.\d+\.attention\.self\.(query|key|value)",
    r"re:.*encoder\.layer\.\d+\.attention\.output\.dense",
    r"re:.*encoder\.layer\.\d+\.(intermediate|output)\.dense",
]
FORWARD_MODES = ("contract", "sequential", "auto")
SEQUENTIAL_SKIP = 20  # sequential path not timed where it costs over this many times the contract path


def bench_decomposition(repeats: int, shapes: Sequence[tuple[int, int]] = SHAPES) -> list[dict]:
    """Decomposition time of a random (out, in) weight, ours vs tensorly's tensor_train_matrix.

    Tensorly's columns are left out where tensorly (a dev-only dependency) is not installed.
    """
    try:
        import tensorly as tl
        from tensorly.decomposition import tensor_train_matrix
        from tensorly.tt_matrix import tt_matrix_to_tensor

        tl.set_backend("numpy")
    except ImportError:
        tl = None
    rows = []
    for out_f, in_f in shapes:
        w = torch.randn(out_f, in_f, generator=torch.Generator().manual_seed(0))
        rf, cf = propose_factorization(out_f, 5), propose_factorization(in_f, 5)
        ours = median_seconds(lambda w=w, rf=rf, cf=cf: mpo_decompose(w, rf, cf), repeats)
        err = float((mpo_decompose(w, rf, cf).to_matrix() - w).norm() / w.norm())
        row = {
            "shape": [out_f, in_f],
            "row_factors": rf,
            "col_factors": cf,
            "ours_s": ours,
            "ours_rel_err": err,
        }
        if tl is not None:
            t = w.reshape(*rf, *cf).numpy()
            ranks = bond_dims(rf, cf)
            row["tensorly_s"] = median_seconds(
                lambda t=t, ranks=ranks: tensor_train_matrix(t, rank=ranks), repeats
            )
            rec = torch.from_numpy(
                tt_matrix_to_tensor(tensor_train_matrix(t, rank=ranks)).reshape(out_f, in_f)
            )
            row["tensorly_rel_err"] = float((rec - w).norm() / w.norm())
            row["tensorly_over_ours"] = row["tensorly_s"] / ours
        rows.append(row)
        print("decompose", row, flush=True)
    return rows


def sgd_step(model: nn.Module, x: torch.Tensor) -> Callable[[], None]:
    """One forward+backward+SGD step of ``model`` on ``x`` (loss: mean square of the output)."""
    opt = torch.optim.SGD(model.parameters(), lr=1e-6)

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        model(x).square().mean().backward()
        opt.step()

    return step


def bench_train_step(
    repeats: int, batch_rows: Sequence[int], shapes: Sequence[tuple[int, int]] = SHAPES
) -> list[dict]:
    """Training step of an MPO layer (each forward mode) over the dense layer's, per shape and rows."""
    rows = []
    for out_f, in_f in shapes:
        dense = nn.Linear(in_f, out_f)
        for b in batch_rows:
            x = torch.randn(b, in_f)
            t_dense = median_seconds(sgd_step(dense, x), repeats)
            row = {"shape": [out_f, in_f], "batch_rows": b, "dense_s": t_dense}
            for mode in FORWARD_MODES:
                layer = MPOLinear.from_linear(dense, n=5, forward_mode=mode)
                if mode == "sequential" and layer.sequential_flops(
                    b
                ) > SEQUENTIAL_SKIP * layer.contract_flops(b):
                    row["sequential_ratio"] = None  # skipped: estimated too slow
                    continue
                row[f"{mode}_ratio"] = median_seconds(sgd_step(layer, x), repeats) / t_dense
            row["auto_picks"] = layer.choose_mode(b)
            row["mpo_params"] = sum(c.numel() for c in layer.cores)
            row["dense_params"] = out_f * in_f
            rows.append(row)
            print("train step", row, flush=True)
    return rows


def contraction_macs_ratio(model: nn.Module, rows: int) -> float:
    """Multiply-adds of contracting every MPO layer's cores over those of its dense ``F.linear`` on ``rows``.

    Backward costs two products per forward product on both sides, so the forward ratio is the
    fwd+bwd ratio: the least extra work an exact MPO step does, relative to the plain layers. (A
    layer whose input needs no gradient, like a first layer, skips one dense product: more, then.)
    """
    layers = factorized_layers(model).values()
    extra = sum(contraction_plan([tuple(c.shape) for c in m.cores])[0] for m in layers)
    return extra / sum(rows * m.in_features * m.out_features for m in layers)


def pair_verdict(ratios: Sequence[float], target: float) -> str:
    """``met`` if every interleaved pair's ratio is at most ``target`` (lower is better), ``missed`` if
    none is, ``not distinguishable`` otherwise: :func:`~kdforge.experiments.intervals.verdict` with
    the pairs' range as the interval, signs turned so that "clears" means "at most"."""
    return verdict(Interval(-statistics.median(ratios), -max(ratios), -min(ratios), 1.0), -target)


def paired_step_times(
    plain_step: Callable[[], None], mpo_step: Callable[[], None], rounds: int
) -> tuple[list[float], list[float]]:
    """Seconds of ``rounds`` plain and MPO steps taking turns, after one warm-up step each."""
    plain_step(), mpo_step()
    plain, mpo = interleaved_seconds([plain_step, mpo_step], rounds)
    return plain, mpo


def paired_latencies(
    plain: Callable[[], object], collapsed: Callable[[], object], rounds: int
) -> tuple[list[float], list[float]]:
    """Seconds of ``rounds`` plain and collapsed forwards taking turns, under ``no_grad``."""
    with torch.no_grad():
        lat_plain, lat_col = interleaved_seconds([plain, collapsed], rounds)
    return lat_plain, lat_col


def bench_student(repeats: int) -> dict:
    """The vision student of configs/opdf (MLP 784-64-10, hidden layer MPO): step ratio and latency ratio."""
    torch.manual_seed(0)
    plain = mlp((1, 28, 28), 10, hidden=(64,))
    op = mlp((1, 28, 28), 10, hidden=(64,))
    op.load_state_dict(plain.state_dict())
    overparameterize(op, ["blocks.*.0"], "mpo", n=5)
    x = torch.rand(128, 1, 28, 28)
    t_plain, t_op = paired_step_times(sgd_step(plain, x), sgd_step(op, x), repeats * 5)
    collapsed = collapse(op).eval()
    plain.eval()
    xs = torch.rand(256, 1, 28, 28)
    lat_plain, lat_col = paired_latencies(lambda: plain(xs), lambda: collapsed(xs), repeats * 20)
    return {
        "model": "mlp hidden=(64,) on 1x28x28, blocks.*.0 as MPO n=5, batch 128",
        "plain_params": count_parameters(plain),
        "train_time_params": count_parameters(op),
        "collapsed_params": count_parameters(collapsed),
        "train_step_ratio": min(t_op) / min(t_plain),
        "pair_ratios": sorted(o / p for o, p in zip(t_op, t_plain, strict=True)),
        "contraction_macs_over_linear": contraction_macs_ratio(op, x.shape[0]),
        "latency_ratio_collapsed_vs_plain": statistics.median(lat_col) / statistics.median(lat_plain),
        "latency_plain_ms": 1e3 * statistics.median(lat_plain),
    }


def _trainable(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def bench_bert_student(repeats: int, batch: int = 32, seq: int = 32, n: int = 3) -> dict:
    """The NLP student of configs/opdf (3-layer MiniLM, width 384, every attention/FFN linear as MPO).

    A cross-entropy step on random token ids (batch x seq, no padding) with AdamW, word embeddings
    frozen as in the recipes. Plain and MPO steps alternate and the *fastest* of each counts: other
    jobs on a shared machine only ever add time, so the minimum is the least disturbed estimate;
    the ratios of the interleaved pairs give the spread.
    """
    from kdforge.models.hf import minilm_student  # late: loads transformers

    torch.manual_seed(0)
    plain = minilm_student((seq,), 2, freeze_word_embeddings=True)
    op = minilm_student((seq,), 2, freeze_word_embeddings=True)
    op.load_state_dict(plain.state_dict())
    overparameterize(op, NLP_PATTERNS, "mpo", n=n)
    ids = torch.randint(1000, 30000, (batch, seq))
    inputs = {"input_ids": ids, "attention_mask": torch.ones_like(ids)}
    y = torch.randint(0, 2, (batch,))

    def step_fn(model: nn.Module) -> Callable[[], None]:
        opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-6)

        def step() -> None:
            opt.zero_grad(set_to_none=True)
            nn.functional.cross_entropy(model(**inputs), y).backward()
            opt.step()

        return step

    t_plain, t_op = paired_step_times(step_fn(plain), step_fn(op), max(4, repeats * 3))
    collapsed = collapse(op).eval()
    plain.eval()
    lat_plain, lat_col = paired_latencies(lambda: plain(**inputs), lambda: collapsed(**inputs), repeats * 6)
    pairs = sorted(o / p for o, p in zip(t_op, t_plain, strict=True))
    return {
        "model": f"3-layer MiniLM (width 384), attention+FFN linears as MPO n={n}",
        "batch": batch,
        "seq": seq,
        "plain_params": count_parameters(plain),
        "plain_trainable": _trainable(plain),
        "train_time_trainable": _trainable(op),
        "collapsed_params": count_parameters(collapsed),
        "plain_step_s": min(t_plain),
        "mpo_step_s": min(t_op),
        "train_step_ratio": min(t_op) / min(t_plain),
        "pair_ratios": pairs,
        "median_pair_ratio": statistics.median(pairs),
        "target": NLP_TARGET,
        "verdict": pair_verdict(pairs, NLP_TARGET),
        "contraction_macs_over_linear": contraction_macs_ratio(op, batch * seq),
        "latency_ratio_collapsed_vs_plain": min(lat_col) / min(lat_plain),
        "latency_plain_ms": 1e3 * min(lat_plain),
        "load_average": os.getloadavg(),
    }
