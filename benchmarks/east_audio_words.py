"""EAsT / EC on spoken words with a real pre-trained audio teacher, scored on unseen voices and real speech.

Task (*dissimilar* to the teacher's): which of 36 words (digits, letters) is spoken. Teacher: the GE2E
speaker-verification encoder (Resemblyzer 0.1.4 weights, ``ge2e_classifier``): it was trained to tell
*who* speaks. Data: ``kdforge data speech-words`` (espeak-ng + flite voices, split by voice: validation
and test voices never occur in training), few labelled clips per class (``--per-class``, one regime
each); unseen set: the 36 Asterisk studio recordings (real speech, one take per word).

Rows (each over ``--seeds``; lambda, the KD weight or the learning rate chosen on *validation*, mean
over seeds, by :func:`kdforge.experiments.select_best`; checkpoints selected on validation; test and
the unseen set only scored):

- ``baseline``: the small CNN on log-mels, from scratch (``configs/east_audio/words_baseline.yaml``).
- ``EAsT-FitNet``, ``EAsT-dCor``: the uncompressed utterance embedding as target (``--teacher-path
  encoder.frames_mean``: the mean frame-level LSTM state instead).
- ``EC-FitNet-d*``, ``EC-dCor-d*``: compressed to each d of ``--ds`` (``words_ec.yaml``); lambda is
  chosen per loss at the first d and reused at the others (a third of the runs).
- ``KD-from-probe``: Hinton KD from a linear probe trained on the embedding in the same loop (no
  feature loss).
- ``teacher probe`` / ``teacher frames probe``: logistic regression on the cached utterance embedding /
  mean frame-level LSTM state (C chosen on validation).
- ``teacher fine-tuned``: the whole encoder + head trained on the labels (``--finetune-epochs``; 0 skips).

Verdict: the EC row chosen on validation (loss and d) against the baseline and both EAsT rows on the
test voices, as a two-way (seeds x clips) bootstrap interval of the accuracy difference, target +1.0
point; the same difference on the real recordings.

Usage (after ``make data-audio`` and ``kdforge data speech-words --out data/speech-words --asterisk
data/asterisk-words``)::

    python benchmarks/east_audio_words.py --per-class 5 --out benchmarks/results/east_audio_words
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import numpy as np
import torch

from kdforge.data import load_dataset
from kdforge.data.audio_folder import clip_features, read_manifest
from kdforge.data.embeddings import all_rows, attach, extract, load, module_embedder
from kdforge.data.speech_words import voices_by_split
from kdforge.engine.run import load_student
from kdforge.experiments import make_trials, paired_bootstrap_examples, run_sweep, select_best, verdict
from kdforge.models import build_model
from kdforge.report.provenance import provenance, write_results

CONFIGS = Path(__file__).parents[1] / "configs" / "east_audio"
TEACHER_PATHS = ("encoder", "encoder.frames_mean")


def row_specs(
    lams: list[float], ds: list[int], finetune_lrs: list[float]
) -> dict[str, tuple[str, list[str], dict]]:
    """label -> (recipe, overrides, grid chosen on validation)."""
    lam = {"method.kwargs.lam": lams}
    rows = {"baseline": ("words_baseline.yaml", [], {})}
    for loss, name in (("fitnet", "FitNet"), ("dcor", "dCor")):
        rows[f"EAsT-{name}"] = (
            "words_ec.yaml",
            ["method.kwargs.compress=false", f"method.kwargs.loss={loss}"],
            lam,
        )
    losses = (("fitnet", "FitNet"), ("dcor", "dCor"))
    ec = "method.kwargs.compress=true"
    # order = priority under a small CPU budget (results are saved after every row)
    for loss, name in losses:  # lambda is chosen here, at the first d, and reused at the other ds
        rows[f"EC-{name}-d{ds[0]}"] = (
            "words_ec.yaml",
            [ec, f"method.kwargs.loss={loss}", f"method.kwargs.d={ds[0]}"],
            lam,
        )
    if finetune_lrs:
        rows["teacher fine-tuned"] = (
            "words_teacher_probe.yaml",
            ["student.kwargs.freeze_encoder=false"],
            {"train.lr": finetune_lrs},
        )
    for d in ds[1:]:
        for loss, name in losses:
            rows[f"EC-{name}-d{d}"] = (
                "words_ec.yaml",
                [ec, f"method.kwargs.loss={loss}", f"method.kwargs.d={d}"],
                {},
            )
    kd = ["method.kwargs.compress=false", "method.kwargs.lam=0.0"]
    rows["KD-from-probe"] = ("words_ec.yaml", kd, {"method.kwargs.kd_weight": [1.0]})
    return rows


def cache_embeddings(data_dir: str, cache: Path) -> None:
    """GE2E utterance and mean-frame embeddings of every clip (resumable, reused across runs)."""
    splits = load_dataset("audio_folder", data_dir=data_dir, manifest="manifest.csv")
    net = build_model("ge2e_classifier", splits.input_shape, splits.num_classes).eval()
    rows = all_rows(splits)
    for path in TEACHER_PATHS:
        extract(
            module_embedder(net, path),
            rows,
            cache / path,
            dataset="audio_folder",
            split="all",
            model=f"ge2e_classifier@{path}",
            progress=False,
        )


@torch.no_grad()
def correct(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> np.ndarray:
    """1.0 where ``model`` predicts ``y``, per example."""
    model.eval()
    pred = torch.cat([model(x[i : i + 256]).argmax(-1) for i in range(0, len(x), 256)])
    return (pred == y).double().numpy()


def probe_rows(args, per_class: int, asterisk: tuple[torch.Tensor, torch.Tensor]) -> dict[str, dict]:
    """Logistic regression on the cached teacher features, C chosen on validation (mean over seeds)."""
    from sklearn.linear_model import LogisticRegression

    net = build_model("ge2e_classifier", (1, 40, 101), 36).eval()
    out = {}
    for path, label in zip(TEACHER_PATHS, ("teacher probe", "teacher frames probe"), strict=True):
        emb, hashes, _ = load(args.cache / path)
        embed = module_embedder(net, path)
        with torch.no_grad():
            unseen = torch.cat(
                [embed({"x": asterisk[0][i : i + 64]}) for i in range(0, len(asterisk[0]), 64)]
            )
        by_c: dict[float, list] = {}
        for seed in args.seeds:
            splits = load_dataset(
                "audio_folder", data_dir=args.data, manifest="manifest.csv", per_class=per_class, seed=seed
            )
            feats = {s: attach(getattr(splits, s), emb, hashes).tensors for s in ("train", "val", "test")}
            for c in args.probe_cs:
                t0 = time.perf_counter()
                clf = LogisticRegression(C=c, max_iter=2000).fit(
                    feats["train"]["teacher_emb"], feats["train"]["y"]
                )
                scores = {
                    s: (clf.predict(feats[s]["teacher_emb"]) == feats[s]["y"].numpy()).astype(float)
                    for s in ("val", "test")
                }
                scores["unseen"] = (clf.predict(unseen.numpy()) == asterisk[1].numpy()).astype(float)
                by_c.setdefault(c, []).append((seed, scores, time.perf_counter() - t0))
        best = max(by_c, key=lambda c: statistics.mean(s["val"].mean() for _, s, _ in by_c[c]))
        out[label] = _row([s for _, s, _ in by_c[best]], {"C": best}, [t for _, _, t in by_c[best]])
    return out


def _row(scores: list[dict], chosen: dict, times: list[float], seeds: list[int] | None = None) -> dict:
    return {
        "chosen": chosen,
        "val_acc": [float(s["val"].mean()) for s in scores],
        "test_acc": [float(s["test"].mean()) for s in scores],
        "unseen_acc": [float(s["unseen"].mean()) for s in scores],
        "test_correct": [s["test"].tolist() for s in scores],
        "unseen_correct": [s["unseen"].tolist() for s in scores],
        "train_time_s": times,
        "seeds": seeds,
    }


def trained_rows(args, per_class: int, asterisk, out_dir: Path, rows: dict, save) -> dict[str, dict]:
    """Train every row's grid over the seeds, select on validation, score test and the unseen set.

    ``rows`` is filled in place and ``save()`` is called after each row (a partial results file).
    """
    test = load_dataset("audio_folder", data_dir=args.data, manifest="manifest.csv").test.tensors
    for label, (recipe, overrides, grid) in row_specs(
        args.lams, args.ds, args.finetune_lrs if args.finetune_epochs > 0 else []
    ).items():
        if args.rows and label not in args.rows:
            continue
        pc_key = "data.kwargs.base_kwargs.per_class" if recipe == "words_ec.yaml" else "data.kwargs.per_class"
        extra = [
            *overrides,
            f"data.data_dir={args.data}",
            f"{pc_key}={per_class}",
            f"train.epochs={args.epochs}",
        ]
        if recipe == "words_ec.yaml":
            extra.append(f"data.kwargs.cache={args.cache / args.teacher_path}")
            extra.append(f"data.kwargs.model=ge2e_classifier@{args.teacher_path}")
        if label == "teacher fine-tuned":
            extra[-1] = f"train.epochs={args.finetune_epochs}"
        if label.startswith("EC-") and not grid:  # the lambda chosen for this loss at the first d
            first = next(r for k, r in rows.items() if k.startswith(label.rsplit("-d", 1)[0] + "-d"))
            extra += [f"{k}={v}" for k, v in first["chosen"].items()]
        slug = label.replace(" ", "_")
        if recipe == "words_ec.yaml" and args.teacher_path != "encoder":
            slug = f"{args.teacher_path}-{slug}"
        trials = make_trials(CONFIGS / recipe, grid, args.seeds, name=slug, extra_overrides=extra)
        summaries = run_sweep(trials, out_dir, progress=False)
        chosen = select_best(summaries, "val_acc")[()]
        scores = []
        for summary in chosen["summaries"]:
            student = load_student(out_dir / summary["name"] / "student.safetensors")
            scores.append(
                {
                    "val": np.array([summary["val_acc"]]),
                    "test": correct(student, test["x"], test["y"]),
                    "unseen": correct(student, *asterisk),
                }
            )
        times = [s["train_time_s"] for s in chosen["summaries"]]
        fixed = {k: v for o in extra if o.startswith("method.kwargs.lam=") for k, v in [o.split("=")]}
        rows[label] = _row(scores, chosen["overrides"] or fixed, times, chosen["seeds"])
        rows[label]["val_acc"] = chosen["values"]
        rows[label]["candidates"] = chosen["candidates"]
        print(f"{label}: {rows[label]['chosen']} test {100 * statistics.mean(rows[label]['test_acc']):.2f}")
        save()
    return rows


def verdicts(rows: dict[str, dict], target: float = 0.01) -> dict:
    """EC chosen on validation vs the baseline and both EAsT rows: test voices and real recordings."""
    if not any(k.startswith("EC-") for k in rows) or not {"baseline", "EAsT-FitNet", "EAsT-dCor"} <= set(
        rows
    ):
        return {"ec_row": None, "target_points": 100 * target, "note": "rows missing (partial results)"}
    ec = max((k for k in rows if k.startswith("EC-")), key=lambda k: statistics.mean(rows[k]["val_acc"]))
    out = {"ec_row": ec, "target_points": 100 * target}
    for other in ("baseline", "EAsT-FitNet", "EAsT-dCor"):
        for split in ("test", "unseen"):
            iv = paired_bootstrap_examples(rows[ec][f"{split}_correct"], rows[other][f"{split}_correct"])
            out[f"vs {other} ({split})"] = {
                **{k: 100 * v for k, v in iv.to_dict().items()},
                "verdict": verdict(iv, target),
            }
    return out


def fmt(values: list[float]) -> str:
    sd = 100 * statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{100 * statistics.mean(values):.2f} ± {sd:.2f}"


def markdown(results: dict) -> str:
    cfg = results["provenance"]["config"]
    voices = results["data"]["voices_per_split"]
    seed = results["data"]["speech_words_options"]["seed"]
    fixed = " (one value: fixed, not selected)" if len(cfg["lams"]) == 1 else " (chosen on validation)"
    protocol = (
        f"Data: `kdforge data speech-words` (seed {seed}), voices train/val/test {voices.get('train')}/"
        f"{voices.get('val')}/{voices.get('test')}; test voices never occur in training; real recordings: "
        "the Asterisk studio takes (one per word), scored without training. "
        f"EAsT/EC target: the teacher's `{cfg.get('teacher_path', 'encoder')}` output. "
        f"Seeds {cfg['seeds']}; students {cfg['epochs']} epochs, checkpoint chosen on validation; "
        f"lambda grid {cfg['lams']}{fixed}; EC lambda chosen at d={cfg['ds'][0]} and reused; "
        f"teacher fine-tuning {cfg['finetune_epochs']} epochs at lr {cfg['finetune_lrs']}; "
        f"probes: logistic regression, C from {cfg['probe_cs']} chosen on validation."
    )
    lines = [
        f"# EAsT / EC on spoken words: GE2E speaker-encoder teacher ({results['task']})",
        "",
        protocol,
        "",
    ]
    for regime, block in results["regimes"].items():
        planned = row_specs(cfg["lams"], cfg["ds"], cfg["finetune_lrs"] if cfg["finetune_epochs"] > 0 else [])
        missing = [k for k in planned if k not in block["rows"]]
        n_test, n_unseen = block["n_test"], block["n_unseen"]
        lines += [
            f"## {regime} labelled clips per class ({block['n_train']} training clips)",
            "",
            f"| row | chosen on val | val acc % | test acc % ({n_test} clips, unseen voices) | "
            f"real recordings acc % ({n_unseen} clips) | train s |",
            "|---|---|---|---|---|---|",
        ]
        for label, row in block["rows"].items():
            chosen = ", ".join(f"{k.split('.')[-1]}={v}" for k, v in row["chosen"].items()) or "-"
            lines.append(
                f"| {label} | {chosen} | {fmt(row['val_acc'])} | {fmt(row['test_acc'])} | "
                f"{fmt(row['unseen_acc'])} | {statistics.mean(row['train_time_s']):.0f} |"
            )
        if missing:
            lines += ["", f"Not measured in this file (CPU budget): {', '.join(missing)}."]
        v = block["verdict"]
        if v["ec_row"] is None:
            lines += ["", f"(partial: {v['note']})", ""]
            continue
        lines += [
            "",
            f"EC row chosen on validation: **{v['ec_row']}**; difference in points, 95% bootstrap "
            f"interval over seeds x clips, target +{v['target_points']:.1f}:",
            "",
        ]
        for key, iv in v.items():
            if key.startswith("vs "):
                lines.append(
                    f"- {key}: {iv['mean']:+.2f} [{iv['low']:+.2f}, {iv['high']:+.2f}] -> {iv['verdict']}"
                )
        lines.append("")
    return "\n".join(lines)


def plot(results: dict, path: str) -> None:
    """Test (unseen voices) and real-recording accuracy per row, mean ± std over seeds, per regime."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    regimes = results["regimes"]
    fig, axes = plt.subplots(1, len(regimes), figsize=(7 * len(regimes), 4.5), squeeze=False)
    for ax, (regime, block) in zip(axes[0], regimes.items(), strict=True):
        labels = list(block["rows"])
        at = np.arange(len(labels))
        for shift, key, name in ((-0.2, "test_acc", "test voices"), (0.2, "unseen_acc", "real recordings")):
            vals = [block["rows"][k][key] for k in labels]
            means = [100 * statistics.mean(v) for v in vals]
            sds = [100 * statistics.stdev(v) if len(v) > 1 else 0.0 for v in vals]
            ax.bar(at + shift, means, 0.4, yerr=sds, label=name, capsize=2)
        ax.set_xticks(at, labels, rotation=60, ha="right", fontsize=8)
        ax.set_ylabel("accuracy %")
        ax.set_title(f"{regime} clips per class ({block['n_test']} test / {block['n_unseen']} real clips)")
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", default="data/speech-words")
    p.add_argument("--unseen", default="data/asterisk-words")
    p.add_argument("--cache", type=Path, default=None, help="embedding cache (default DATA-ge2e)")
    p.add_argument("--runs", type=Path, default=Path("runs/east_audio_words"))
    p.add_argument("--per-class", type=int, nargs="+", default=[5, 20])
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--lams", type=float, nargs="+", default=[0.3, 0.7])
    p.add_argument("--ds", type=int, nargs="+", default=[32, 8, 128], help="lambda is chosen at the first")
    p.add_argument("--probe-cs", type=float, nargs="+", default=[0.1, 1.0, 10.0])
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--finetune-epochs", type=int, default=10)
    p.add_argument("--finetune-lrs", type=float, nargs="+", default=[1e-3])
    p.add_argument("--out", default="benchmarks/results/east_audio_words")
    p.add_argument("--teacher-path", default="encoder", choices=TEACHER_PATHS, help="the EAsT/EC target")
    p.add_argument("--rows", nargs="+", default=None, help="only these rows (default all)")
    p.add_argument("--render", action="store_true", help="only re-write the markdown from OUT.json")
    args = p.parse_args()
    if args.render:
        results = json.loads(Path(f"{args.out}.json").read_text())
        write_results(f"{args.out}.json", results, markdown(results))
        plot(results, f"{args.out}.png")
        return
    args.cache = args.cache or Path(f"{args.data.rstrip('/')}-ge2e")
    torch.set_num_threads(1)
    cache_embeddings(args.data, args.cache)
    rows_unseen = read_manifest(Path(args.unseen) / "manifest.csv")
    classes = sorted({r["label"] for r in read_manifest(Path(args.data) / "manifest.csv")})
    unseen_x = clip_features([Path(args.unseen) / r["path"] for r in rows_unseen], mel={"n_mels": 40})
    unseen = (unseen_x, torch.tensor([classes.index(r["label"]) for r in rows_unseen]))
    results = {
        "task": "which word (36 classes)",
        "data": {
            "speech_words_options": json.loads((Path(args.data) / "speech_words.json").read_text()),
            "voices_per_split": {
                k: len(v) for k, v in sorted(voices_by_split(Path(args.data) / "manifest.csv").items())
            },
            "made_by": "kdforge data speech-words --out DATA --asterisk UNSEEN (options above)",
        },
        "regimes": {},
    }
    for per_class in args.per_class:
        splits = load_dataset(
            "audio_folder", data_dir=args.data, manifest="manifest.csv", per_class=per_class
        )
        rows = probe_rows(args, per_class, unseen)
        block = {
            "n_train": len(splits.train),
            "n_val": len(splits.val),
            "n_test": len(splits.test),
            "n_unseen": len(unseen_x),
            "rows": rows,
        }
        results["regimes"][str(per_class)] = block

        def save(block: dict = block) -> None:  # after every row: a killed benchmark keeps what it measured
            block["verdict"] = verdicts(block["rows"])
            results["provenance"] = provenance(vars(args), args.seeds)
            write_results(f"{args.out}.json", results, markdown(results))
            plot(results, f"{args.out}.png")

        trained_rows(args, per_class, unseen, args.runs / f"pc{per_class}", rows, save)
    print(markdown(results))


if __name__ == "__main__":
    main()
