"""OPDF vision grid: {KD, FitNet, AD-KD, Theseus} x {plain, +SVD, +OPDF (+/- align)} x seeds, Fashion-MNIST.

Usage::

    PYTHONPATH=src python benchmarks/opdf_vision.py [--seeds 0 1 2] [--bases kd fitnet adkd theseus]
    PYTHONPATH=src python benchmarks/opdf_vision.py --bases kd --lambdas 0 1 100 10000  # alignment sweep

Trains each base's teacher (``configs/opdf/teacher.yaml``; Theseus, whose teacher layers must
have the student's width: ``configs/opdf/teacher_theseus.yaml``) if its export is missing, then
runs every ``configs/opdf/<base>_<variant>.yaml`` recipe once per seed through
the engine (model selection on the validation split only; test accuracy of the
selected checkpoint), reusing finished runs (``summary.json``). Measures the
exported (collapsed) student's latency against a plain student side by side.
Writes ``benchmarks/results/opdf_vision.{json,md}``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch

from kdforge.config import load_recipe
from kdforge.engine import checkpoint as ckpt
from kdforge.engine.logger import read_metrics
from kdforge.engine.run import load_student, run_experiment
from kdforge.models import build_model
from kdforge.report.provenance import provenance, write_results

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ROOT / "configs" / "opdf"
RESULTS = ROOT / "benchmarks" / "results" / "opdf_vision.json"
VARIANTS = ["plain", "svd", "opdf", "opdf_noalign", "plain_lr3x"]
TEACHERS = {"theseus": "teacher_theseus"}  # base -> teacher recipe (default: teacher)
NOTES = {  # how a base method is set up in its recipes, printed under the table
    "adkd": "AD-KD attributes the raw input pixels (Integrated Gradients with 4 steps, the teacher's top-2 "
    "classes; the paper attributes token embeddings) on top of Hinton KD (T=4, alpha=0.9), beta=1.",
    "theseus": "Theseus: each of the 2 successors (and the head) starts from the teacher (first layer of its "
    "group of 2), replacement rate 0.5 -> 1 over the first half of training, then the student alone; task "
    "loss only. OPDF aligns successor 0 with teacher layer 0 (the only 784-input layer) and successor 1 "
    "with teacher layer 3 (l*r + r - 1).",
}
LABELS = {
    "plain": "plain",
    "svd": "+SVD",
    "opdf": "+OPDF",
    "opdf_noalign": "+OPDF w/o alignment",
    "plain_lr3x": "plain, 3x lr (control)",
}


def _run(recipe: Path, overrides: list[str]) -> dict:
    cfg = load_recipe(recipe, overrides)
    summary_path = cfg.run_dir / "summary.json"
    if summary_path.is_file():
        return json.loads(summary_path.read_text())
    resume = ckpt.has_checkpoint(cfg.run_dir / "checkpoints")
    t = time.perf_counter()
    summary = run_experiment(cfg, resume=resume, progress=False)
    print(f"  {cfg.name}: test_acc={summary['test_acc']:.4f} ({time.perf_counter() - t:.0f}s)", flush=True)
    return summary


def latency_ratio(
    exported: Path,
    inputs: dict[str, torch.Tensor] | None = None,
    blocks: int = 7,
    per_block: int = 30,
    warmup: int = 10,
) -> float:
    """Latency of the exported student over a freshly built plain one (same arch), side by side.

    ``inputs``: the forward's keyword inputs (default: a batch of 256 random images as ``x``).
    Interleaved blocks; within a block the fastest call of each model counts (robust to other
    jobs on a shared machine); the ratio is the median over blocks.
    """
    model = load_student(exported).eval()
    spec = json.loads(exported.with_suffix(".json").read_text())
    plain = build_model(
        spec["model"], tuple(spec["input_shape"]), spec["num_classes"], **spec["kwargs"]
    ).eval()
    assert [type(m) for m in model.modules()] == [type(m) for m in plain.modules()]
    x = inputs if inputs is not None else {"x": torch.rand(256, *spec["input_shape"])}

    def fastest(m: torch.nn.Module) -> float:
        best = float("inf")
        for _ in range(per_block):
            t = time.perf_counter()
            m(**x)
            best = min(best, time.perf_counter() - t)
        return best

    with torch.no_grad():
        for _ in range(warmup):
            model(**x), plain(**x)
        ratios = [fastest(model) / fastest(plain) for _ in range(blocks)]
    return statistics.median(ratios)


def grid_row(base: str, variant: str, recipe: Path, runs: list[dict], **extra) -> dict:
    """One table row from a recipe's finished runs (one per seed); ``extra`` fields go in as given."""
    return {
        "base": base,
        "variant": variant,
        "recipe": str(recipe.relative_to(ROOT)),
        **extra,
        "test_acc": [r["test_acc"] for r in runs],
        "val_acc": [r["val_acc"] for r in runs],
        "train_params": runs[0]["train_params"],
        "inference_params": runs[0]["student_params"],
        "train_time_s": [r["train_time_s"] for r in runs],
    }


def opdf_deltas(rows: list[dict], teacher_acc: float | None = None) -> list[dict]:
    """Each OPDF row's mean test accuracy minus its base's plain row (and 3x-lr control, teacher), points."""
    deltas = []
    for r in rows:
        same = {p["variant"]: p for p in rows if p["base"] == r["base"]}
        if "plain" not in same or not r["variant"].startswith("opdf"):
            continue
        mean = statistics.mean(r["test_acc"])
        ctrl = same.get("plain_lr3x")
        d = {
            "base": r["base"],
            "variant": r["variant"],
            "delta_points": 100 * (mean - statistics.mean(same["plain"]["test_acc"])),
            "delta_vs_control": 100 * (mean - statistics.mean(ctrl["test_acc"])) if ctrl else None,
        }
        if teacher_acc is not None:
            d["delta_vs_teacher"] = 100 * (mean - teacher_acc)
        deltas.append(d)
    return deltas


def teacher_of(base: str) -> str:
    """Name of the teacher recipe (``configs/opdf/<name>.yaml``) a base method's recipes load."""
    return TEACHERS.get(base, "teacher")


def describe_mlp(kwargs: dict) -> str:
    """``MLP 784-64-10`` for an MLP recipe's ``student.kwargs`` (Fashion-MNIST in/out widths)."""
    return "MLP " + "-".join(str(w) for w in [784, *kwargs.get("hidden", [256]), 10])


def _ms(values: list[float]) -> str:
    if len(values) < 2:
        return f"{100 * values[0]:.2f}"
    return f"{100 * statistics.mean(values):.2f} ± {100 * statistics.stdev(values):.2f}"


def markdown(res: dict) -> str:
    """The results table (one row per base method x variant, teacher row first)."""
    teachers = res.get("teachers") or {"teacher": res["teacher"]}
    lines = [
        "# OPDF on Fashion-MNIST (vision)",
        "",
        f"Students train on a {res['subset']:,}-example training subset, teachers on the full training "
        "split. Test accuracy (%) of the checkpoint selected on validation, "
        f"mean ± std over seeds {res['seeds']}.",
        "",
    ]
    bases = list(dict.fromkeys(r["base"] for r in res["rows"]))
    for base in bases:
        r = next(r for r in res["rows"] if r["base"] == base)
        t = teachers[r.get("teacher", "teacher")]
        lines.append(
            f"- {base}: student {r.get('student', 'MLP 784-64-10')}, teacher `{r.get('teacher', 'teacher')}` "
            f"({t.get('arch', 'MLP 784-1024-512-10')})"
        )
    notes = [NOTES[b] for b in bases if b in NOTES]
    lines += ["", *notes] if notes else []
    lines += [
        "",
        "| method | test acc (%) | val acc (%) | train-time params | inference params | latency vs plain "
        "| train time (s) |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, t in teachers.items():
        lines.append(
            f"| teacher `{name}` ({t.get('arch', 'MLP 784-1024-512-10')}) | {100 * t['test_acc']:.2f} | "
            f"{100 * t['val_acc']:.2f} | {t['train_params']:,} | {t['student_params']:,} | - | "
            f"{t['train_time_s']:.0f} |"
        )
    for r in res["rows"]:
        lines.append(
            f"| {r['base']} {LABELS[r['variant']]} | {_ms(r['test_acc'])} | {_ms(r['val_acc'])} | "
            f"{r['train_params']:,} | {r['inference_params']:,} | {r['latency_ratio']:.2f} | "
            f"{statistics.mean(r['train_time_s']):.0f} |"
        )
    lines += ["", "## OPDF vs the same base method (target: >= +1.0 point over plain)", ""]
    for d in res["deltas"]:
        verdict = "met" if d["delta_points"] >= 1.0 else "**missed**"
        line = f"- {d['base']} {LABELS[d['variant']]}: {d['delta_points']:+.2f} points vs plain ({verdict})"
        if d.get("delta_vs_control") is not None:
            line += f"; {d['delta_vs_control']:+.2f} vs the plain 3x-lr control"
        lines.append(line)
    acc = {(r["base"], r["variant"]): 100 * statistics.mean(r["test_acc"]) for r in res["rows"]}
    lines += ["", "Alignment on minus off (same factorization, same seeds):"]
    for base in sorted({b for b, _ in acc}):
        if (base, "opdf") in acc and (base, "opdf_noalign") in acc:
            lines.append(f"- {base}: {acc[base, 'opdf'] - acc[base, 'opdf_noalign']:+.2f} points")
    lines += ["", "Hyper-parameters (lr, lambda_align=1, mpo_lr_scale=1, epochs) were not tuned for any row."]
    return "\n".join(lines)


def lambda_sweep(bases: list[str], lambdas: list[float], seeds: list[int], out: str) -> None:
    """Does the tensor alignment matter at any weight? ``<base>_opdf`` with ``lambda_align`` swept.

    Records each run's test/val accuracy and the logged alignment term (weighted, mean over the
    last 20 logged steps) so a null result can be told apart from a term too small to act.
    """
    rows = []
    for base in bases:
        recipe = CONFIGS / f"{base}_opdf.yaml"
        for lam in lambdas:
            tag = f"{base}_opdf_lam{lam:g}"
            runs, align = [], []
            for s in seeds:
                over = [f"seed={s}", f"name={tag}_s{s}", f"method.kwargs.lambda_align={lam}"]
                runs.append(_run(recipe, over))
                logged = [r["align"] for r in read_metrics(load_recipe(recipe, over).run_dir) if "align" in r]
                align.append(statistics.mean(logged[-20:]) if logged else 0.0)
            rows.append(
                {
                    "base": base,
                    "lambda_align": lam,
                    "test_acc": [r["test_acc"] for r in runs],
                    "val_acc": [r["val_acc"] for r in runs],
                    "align_term": align,
                }
            )
    by_val = lambda r: statistics.mean(r["val_acc"])  # noqa: E731
    best = {b: max((r for r in rows if r["base"] == b), key=by_val) for b in bases}
    lines = [
        "# OPDF tensor-alignment weight sweep (Fashion-MNIST, vision recipes)",
        "",
        f"`<base>_opdf.yaml` with `method.kwargs.lambda_align` swept; seeds {seeds}; accuracy (%) of the "
        "checkpoint selected on validation. `align term` = lambda x L_align, mean of the last 20 logged "
        "steps, averaged over seeds (0 when off). The best lambda per base is picked on validation.",
        "",
        "| base | lambda_align | val acc (%) | test acc (%) | align term |",
        "|---|---|---|---|---|",
    ]
    for r in rows:
        mark = " (best val)" if r is best[r["base"]] else ""
        lines.append(
            f"| {r['base']} | {r['lambda_align']:g}{mark} | {_ms(r['val_acc'])} | {_ms(r['test_acc'])} | "
            f"{statistics.mean(r['align_term']):.3g} |"
        )
    res = {"seeds": seeds, "rows": rows, "best_on_val": {b: r["lambda_align"] for b, r in best.items()}}
    cfg = {"recipes": [f"configs/opdf/{b}_opdf.yaml" for b in bases], "lambdas": lambdas}
    res["provenance"] = provenance(cfg, seeds=seeds, command=" ".join(["python", *sys.argv]))
    write_results(out, res, "\n".join(lines))
    print("\n".join(lines))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument(
        "--lambdas",
        type=float,
        nargs="+",
        help="instead of the grid: sweep lambda_align on <base>_opdf (writes opdf_align_sweep.*)",
    )
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--bases", nargs="+", default=["kd", "fitnet"])
    ap.add_argument("--variants", nargs="+", default=VARIANTS)
    ap.add_argument("--out", default=str(RESULTS))
    args = ap.parse_args()
    torch.set_num_threads(1)
    teachers = {}
    for name in dict.fromkeys(teacher_of(b) for b in (["kd"] if args.lambdas else args.bases)):
        arch = describe_mlp(load_recipe(CONFIGS / f"{name}.yaml").student.kwargs)
        teachers[name] = {**_run(CONFIGS / f"{name}.yaml", []), "arch": arch}
    if args.lambdas:
        out = args.out if args.out != str(RESULTS) else str(RESULTS.with_name("opdf_align_sweep.json"))
        lambda_sweep(args.bases, args.lambdas, args.seeds, out)
        return
    rows, subset = [], None
    for base in args.bases:
        for variant in args.variants:
            recipe = CONFIGS / f"{base}_{variant}.yaml"
            if not recipe.is_file():
                continue
            subset = load_recipe(recipe).data.subset
            runs = [_run(recipe, [f"seed={s}", f"name={base}_{variant}_s{s}"]) for s in args.seeds]
            out_dir = load_recipe(recipe, [f"name={base}_{variant}_s{args.seeds[0]}"]).run_dir
            rows.append(
                grid_row(
                    base,
                    variant,
                    recipe,
                    runs,
                    student=describe_mlp(load_recipe(recipe).student.kwargs),
                    teacher=teacher_of(base),
                    latency_ratio=latency_ratio(out_dir / "student.safetensors"),
                )
            )
    deltas = opdf_deltas(rows)
    res = {
        "seeds": args.seeds,
        "subset": subset,
        "teacher": teachers.get("teacher"),
        "teachers": teachers,
        "rows": rows,
        "deltas": deltas,
    }
    cfg = {"recipes": sorted(str(p.relative_to(ROOT)) for p in CONFIGS.glob("*.yaml"))}
    res["provenance"] = provenance(cfg, seeds=args.seeds, command=" ".join(["python", *sys.argv]))
    write_results(args.out, res, markdown(res))
    print(markdown(res))


if __name__ == "__main__":
    main()
