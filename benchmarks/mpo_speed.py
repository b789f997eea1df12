"""MPO speed: decomposition (ours vs tensorly), training-step cost, collapsed inference latency.

Usage::

    PYTHONPATH=src python benchmarks/mpo_speed.py [--repeats 3] [--threads 1]

Writes ``benchmarks/results/mpo_speed.json`` and ``.md``. Every figure is a
median over ``--repeats`` timings taken side by side in this one process.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # numpy (tensorly) single-threaded like torch below
os.environ.setdefault("OMP_NUM_THREADS", "1")

import torch  # noqa: E402
from torch import nn  # noqa: E402

from kdforge.layers import MPOLinear, collapse, factorized_layers, overparameterize  # noqa: E402
from kdforge.models.mlp import count_parameters, mlp  # noqa: E402
from kdforge.report.provenance import provenance, write_results  # noqa: E402
from kdforge.tensor.mpo import bond_dims, contraction_plan, mpo_decompose, propose_factorization  # noqa: E402

SHAPES = [(384, 384), (384, 1536), (768, 3072)]
NLP_TARGET = 1.3  # MPO / plain training step of the MiniLM student
RESULTS = Path(__file__).parent / "results" / "mpo_speed.json"


def timeit(fn: Callable[[], object], repeats: int, warmup: int = 1) -> float:
    """Median wall time of ``fn`` in seconds."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def bench_decomposition(repeats: int) -> list[dict]:
    """Decomposition time of a random (out, in) weight, ours vs tensorly's tensor_train_matrix."""
    try:
        import tensorly as tl
        from tensorly.decomposition import tensor_train_matrix
        from tensorly.tt_matrix import tt_matrix_to_tensor

        tl.set_backend("numpy")
    except ImportError:  # tensorly is a dev-only dependency
        tl = None
    rows = []
    for out_f, in_f in SHAPES:
        w = torch.randn(out_f, in_f, generator=torch.Generator().manual_seed(0))
        rf, cf = propose_factorization(out_f, 5), propose_factorization(in_f, 5)
        ours = timeit(lambda w=w, rf=rf, cf=cf: mpo_decompose(w, rf, cf), repeats)
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
            row["tensorly_s"] = timeit(lambda t=t, ranks=ranks: tensor_train_matrix(t, rank=ranks), repeats)
            rec = torch.from_numpy(
                tt_matrix_to_tensor(tensor_train_matrix(t, rank=ranks)).reshape(out_f, in_f)
            )
            row["tensorly_rel_err"] = float((rec - w).norm() / w.norm())
            row["tensorly_over_ours"] = row["tensorly_s"] / ours
        rows.append(row)
        print("decompose", row, flush=True)
    return rows


def _step_fn(layer: nn.Module, x: torch.Tensor) -> Callable[[], None]:
    opt = torch.optim.SGD(layer.parameters(), lr=1e-6)

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        layer(x).square().mean().backward()
        opt.step()

    return step


def bench_train_step(repeats: int, batch_rows: list[int]) -> list[dict]:
    """Forward+backward+SGD step of an MPO layer (each forward mode) over the dense layer's."""
    rows = []
    for out_f, in_f in SHAPES:
        dense = nn.Linear(in_f, out_f)
        for b in batch_rows:
            x = torch.randn(b, in_f)
            t_dense = timeit(_step_fn(dense, x), repeats)
            row = {"shape": [out_f, in_f], "batch_rows": b, "dense_s": t_dense}
            for mode in ("contract", "sequential", "auto"):
                layer = MPOLinear.from_linear(dense, n=5, forward_mode=mode)
                if mode == "sequential" and layer.sequential_flops(b) > 20 * layer.contract_flops(b):
                    row["sequential_ratio"] = None  # skipped: estimated > 20x the contract path
                    continue
                row[f"{mode}_ratio"] = timeit(_step_fn(layer, x), repeats) / t_dense
            row["auto_picks"] = layer.choose_mode(b)
            row["mpo_params"] = sum(c.numel() for c in layer.cores)
            row["dense_params"] = out_f * in_f
            rows.append(row)
            print("train step", row, flush=True)
    return rows


def bench_student(repeats: int) -> dict:
    """The vision student of configs/opdf (MLP 784-64-10, hidden layer MPO): step ratio and latency ratio."""
    torch.manual_seed(0)
    plain = mlp((1, 28, 28), 10, hidden=(64,))
    op = mlp((1, 28, 28), 10, hidden=(64,))
    op.load_state_dict(plain.state_dict())
    overparameterize(op, ["blocks.*.0"], "mpo", n=5)
    x = torch.rand(128, 1, 28, 28)
    s_plain, s_op = _step_fn(plain, x), _step_fn(op, x)
    s_plain(), s_op()  # warm-up
    t_plain, t_op = [], []
    for _ in range(repeats * 5):  # interleaved, fastest of each counts (as for the NLP student)
        t_plain.append(timeit(s_plain, 1, 0))
        t_op.append(timeit(s_op, 1, 0))
    pairs = sorted(o / p for o, p in zip(t_op, t_plain, strict=True))
    collapsed = collapse(op).eval()
    plain.eval()
    xs = torch.rand(256, 1, 28, 28)
    lat_plain, lat_col = [], []
    with torch.no_grad():
        for _ in range(repeats * 20):  # interleaved so drift hits both equally
            lat_plain.append(timeit(lambda: plain(xs), 1, 0))
            lat_col.append(timeit(lambda: collapsed(xs), 1, 0))
    return {
        "model": "mlp hidden=(64,) on 1x28x28, blocks.*.0 as MPO n=5, batch 128",
        "plain_params": count_parameters(plain),
        "train_time_params": count_parameters(op),
        "collapsed_params": count_parameters(collapsed),
        "train_step_ratio": min(t_op) / min(t_plain),
        "pair_ratios": pairs,
        "contraction_macs_over_linear": contraction_macs_ratio(op, x.shape[0]),
        "latency_ratio_collapsed_vs_plain": statistics.median(lat_col) / statistics.median(lat_plain),
        "latency_plain_ms": 1e3 * statistics.median(lat_plain),
    }


NLP_PATTERNS = [  # the OPDF NLP recipes' targets (configs/opdf/nlp_kd_opdf.yaml)
    r"re:.*encoder\.layer\.\d+\.attention\.self\.(query|key|value)",
    r"re:.*encoder\.layer\.\d+\.attention\.output\.dense",
    r"re:.*encoder\.layer\.\d+\.(intermediate|output)\.dense",
]


def contraction_macs_ratio(model: nn.Module, rows: int) -> float:
    """Multiply-adds of contracting every MPO layer's cores over those of its dense ``F.linear`` on ``rows``.

    Backward costs two products per forward product on both sides, so the forward ratio is the
    fwd+bwd ratio: the least extra work an exact MPO step does, relative to the plain layers. (A
    layer whose input needs no gradient, like a first layer, skips one dense product: more, then.)
    """
    layers = factorized_layers(model).values()
    extra = sum(contraction_plan([tuple(c.shape) for c in m.cores])[0] for m in layers)
    return extra / sum(rows * m.in_features * m.out_features for m in layers)


def verdict(ratios: list[float], target: float) -> str:
    """``met`` if every interleaved pair's ratio clears ``target``, ``missed`` if none does."""
    if max(ratios) <= target:
        return "met"
    return "missed" if min(ratios) > target else "not distinguishable"


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

    s_plain, s_op = step_fn(plain), step_fn(op)
    s_plain(), s_op()  # warm-up
    t_plain, t_op = [], []
    for _ in range(max(4, repeats * 3)):
        t_plain.append(timeit(s_plain, 1, 0))
        t_op.append(timeit(s_op, 1, 0))
    collapsed = collapse(op).eval()
    plain.eval()
    lat_plain, lat_col = [], []
    with torch.no_grad():
        for _ in range(repeats * 6):
            lat_plain.append(timeit(lambda: plain(**inputs), 1, 0))
            lat_col.append(timeit(lambda: collapsed(**inputs), 1, 0))
    pairs = sorted(o / p for o, p in zip(t_op, t_plain, strict=True))
    trainable = lambda m: sum(p.numel() for p in m.parameters() if p.requires_grad)  # noqa: E731
    return {
        "model": f"3-layer MiniLM (width 384), attention+FFN linears as MPO n={n}",
        "batch": batch,
        "seq": seq,
        "plain_params": count_parameters(plain),
        "plain_trainable": trainable(plain),
        "train_time_trainable": trainable(op),
        "collapsed_params": count_parameters(collapsed),
        "plain_step_s": min(t_plain),
        "mpo_step_s": min(t_op),
        "train_step_ratio": min(t_op) / min(t_plain),
        "pair_ratios": pairs,
        "median_pair_ratio": statistics.median(pairs),
        "target": NLP_TARGET,
        "verdict": verdict(pairs, NLP_TARGET),
        "contraction_macs_over_linear": contraction_macs_ratio(op, batch * seq),
        "latency_ratio_collapsed_vs_plain": min(lat_col) / min(lat_plain),
        "latency_plain_ms": 1e3 * min(lat_plain),
        "load_average": os.getloadavg(),
    }


def markdown(res: dict) -> str:
    """Render the results as markdown tables."""
    lines = ["# MPO speed", "", "## Decomposition (untruncated, n=5, float32, 1 thread)", ""]
    lines += ["| shape | factors (rows / cols) | ours (s) | tensorly (s) | tensorly / ours | rel. err ours |"]
    lines += ["|---|---|---|---|---|---|"]
    for r in res["decomposition"]:
        shape = f"{r['shape'][0]}x{r['shape'][1]}"
        lines.append(
            f"| {shape} | {r['row_factors']} / {r['col_factors']} | {r['ours_s']:.3f} | "
            f"{r.get('tensorly_s', float('nan')):.3f} | {r.get('tensorly_over_ours', float('nan')):.2f} | "
            f"{r['ours_rel_err']:.1e} |"
        )
    lines += ["", "## Training step (fwd+bwd+SGD) of one MPO layer / dense layer (target <= 1.5x)", ""]
    lines += [
        "| shape | rows | MPO / dense params | contract | sequential | auto (picks) |",
        "|---|---|---|---|---|---|",
    ]

    def f(v: float | None) -> str:
        return "skipped" if v is None else f"{v:.2f}x"

    for r in res["train_step"]:
        shape, ratio = f"{r['shape'][0]}x{r['shape'][1]}", r["mpo_params"] / r["dense_params"]
        lines.append(
            f"| {shape} | {r['batch_rows']} | {ratio:.2f} | {f(r['contract_ratio'])} | "
            f"{f(r.get('sequential_ratio'))} | {f(r['auto_ratio'])} ({r['auto_picks']}) |"
        )
    s = res["student"]
    lines += [
        "",
        f"## Vision student: {s['model']}",
        "",
        f"- parameters: plain {s['plain_params']:,}, training {s['train_time_params']:,}, "
        f"collapsed {s['collapsed_params']:,}",
        f"- training step ratio MPO / plain (interleaved, fastest of each): {s['train_step_ratio']:.2f}x; "
        f"pairs min / median / max {s['pair_ratios'][0]:.2f} / {statistics.median(s['pair_ratios']):.2f} / "
        f"{s['pair_ratios'][-1]:.2f}; floor (contraction / dense multiply-adds of the MPO layer) "
        f"+{s['contraction_macs_over_linear']:.2f}",
        f"- inference latency collapsed / plain: {s['latency_ratio_collapsed_vs_plain']:.3f} "
        f"(plain {s['latency_plain_ms']:.3f} ms per batch of 256)",
    ]
    bert = res.get("bert_student") or []
    if bert:
        b0 = bert[0]
        lines += [
            "",
            f"## NLP student: {b0['model']}",
            "",
            f"Parameters: plain {b0['plain_params']:,} ({b0['plain_trainable']:,} trainable), training "
            f"{b0['train_time_trainable']:,} trainable, collapsed {b0['collapsed_params']:,}. "
            "Cross-entropy + AdamW step; plain and MPO steps alternate, fastest of each counts "
            f"(load average at the end: {b0['load_average'][0]:.1f} on {os.cpu_count()} cores).",
            "",
            f"Target: MPO step <= {NLP_TARGET}x plain; verdict over the interleaved pairs' ratios (met: all "
            "clear it; not distinguishable: they straddle it). Floor: multiply-adds of contracting the "
            "cores over those of the same layers' dense matmuls (fwd+bwd), the least extra work of an "
            "exact MPO step.",
            "",
            "| batch x tokens | plain step (s) | MPO step (s) | step ratio, fastest "
            "| pairs min / median / max | verdict | floor | latency collapsed / plain |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for b in bert:
            pr = b["pair_ratios"]
            lines.append(
                f"| {b['batch']}x{b['seq']} | {b['plain_step_s']:.2f} | {b['mpo_step_s']:.2f} | "
                f"{b['train_step_ratio']:.2f}x | {pr[0]:.2f} / {b['median_pair_ratio']:.2f} / {pr[-1]:.2f} | "
                f"{b['verdict']} | +{b['contraction_macs_over_linear']:.2f} | "
                f"{b['latency_ratio_collapsed_vs_plain']:.3f} |"
            )
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--rows", type=int, nargs="+", default=[1, 128, 2048])
    ap.add_argument(
        "--tokens", type=int, nargs="+", default=[32, 128], help="NLP student sequence lengths (32: recipes)"
    )
    ap.add_argument("--out", default=str(RESULTS))
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    res = {
        "decomposition": bench_decomposition(args.repeats),
        "train_step": bench_train_step(args.repeats, args.rows),
        "student": bench_student(args.repeats),
        "bert_student": [bench_bert_student(args.repeats, seq=t) for t in args.tokens],
    }
    cfg = {"repeats": args.repeats, "threads": args.threads, "rows": args.rows, "tokens": args.tokens}
    res["provenance"] = provenance(cfg, command=" ".join(["python", *sys.argv]))
    write_results(args.out, res, markdown(res))
    print(markdown(res))


if __name__ == "__main__":
    main()
