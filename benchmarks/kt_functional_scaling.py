"""Learning curve of the functional KT objective: test accuracy vs number of training networks.

The functional objective needs no small-block targets, so extra *large-only* networks (made with
``make-pairs --epochs-small 0``, about half the cost of a full pair) are added to the training
networks of a full pair set. Validation and test networks are the full pair set's (same split as
``kt_table.py``); the checkpoint is chosen on validation networks only, test networks are reported.
Points of one family share the translator settings and epochs (so more networks also means more
steps; the 80-epoch run on 135 networks from ``kt_table_functional80.json`` is the same-steps
control); a point trained for other epochs names them in its key and label.

Each invocation measures the given ``--extra-counts`` and merges them into ``--out`` (points from
earlier invocations are kept), then re-renders the table and the PNG from all points. A point can be
imported from an earlier table (``--import-row``) when the pair set was regenerated with the same
command: the test networks' trained and template accuracies are recomputed and compared first.
Writes benchmarks/results/kt_functional_scaling.{json,md,png}.
"""

from __future__ import annotations

import argparse
import json
import statistics as st
import sys
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402

from kdforge.data import load_dataset  # noqa: E402
from kdforge.experiments.kt_protocol import target_verdict  # noqa: E402
from kdforge.methods.translation import networks  # noqa: E402
from kdforge.methods.translation.align import align_channels  # noqa: E402
from kdforge.methods.translation.evaluate import (  # noqa: E402
    random_small,
    ratio_interval,
    small_accuracy,
    split_networks,
)
from kdforge.methods.translation.pairs import (  # noqa: E402
    HAS_SMALL,
    generation_time,
    load_pairs,
    merge_pair_sets,
)
from kdforge.methods.translation.train import TranslatorConfig, train_translator, validation_images  # noqa: E402

ROW = "functional (CE+KL), Mixer"
DEAD = 0.11  # test accuracy at or below which a small block counts as dead (chance is 0.10)


def _stats(per_seed: list[list[float]]) -> dict:
    flat = [v for s in per_seed for v in s]
    means = [st.mean(s) for s in per_seed]
    return {
        "mean": st.mean(flat),
        "std": st.stdev(flat) if len(flat) > 1 else 0.0,
        "seed_std": st.stdev(means) if len(means) > 1 else 0.0,
        "seed_means": means,
    }


def _import(path: str, row: str, trained: list[float], template: list[float]) -> dict:
    """A point from an earlier kt_table JSON, after checking it scored the same test networks."""
    old = json.loads(Path(path).read_text())
    rows = old["rows"]
    same = all(
        max(abs(a - b) for a, b in zip(rows[k]["per_seed"][0], mine, strict=True)) < 1e-6
        for k, mine in [
            ("trained small block (upper bound)", trained),
            ("template only (best training pair's small block)", template),
        ]
        if k in rows
    )
    if not same:
        sys.exit(f"{path}: test networks differ from this pair set's; measure the point instead")
    r = rows[row]
    return {
        "per_seed": r["per_seed"],
        "epochs": r["epochs"],
        "train_seconds": r["train_seconds"],
        "source": f"imported from {path} (same test networks: trained and template accuracies equal)",
        "command": old["provenance"]["command"],
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--pairs", default="runs/kt_pairs_noskip", help="full pair set (train/val/test)")
    ap.add_argument(
        "--extra",
        nargs="+",
        default=["runs/kt_large_only"],
        help="large-only sets, in order",
    )
    ap.add_argument("--extra-val", default=None, help="large-only set whose networks join validation")
    ap.add_argument("--extra-val-count", type=int, default=0, help="how many of --extra-val to use")
    ap.add_argument("--extra-counts", type=int, nargs="*", default=[], help="extra networks per point")
    ap.add_argument(
        "--extra-test",
        default=None,
        help="full pair set (trained small blocks) of fresh test networks, scored besides the split's",
    )
    ap.add_argument("--import-row", default=None, help="kt_table JSON whose functional row is the 0 point")
    ap.add_argument("--control", default=None, help="kt_table JSON of a longer run on 0 extras")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--epochs", type=int, default=40)
    ap.add_argument("--dim", type=int, default=48)
    ap.add_argument("--depth", type=int, default=3)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--img-batch", type=int, default=32)
    ap.add_argument("--bank", type=int, default=512)
    ap.add_argument("--evals", type=int, default=8)
    ap.add_argument("--test-images", type=int, default=2000)
    ap.add_argument("--align", action="store_true", help="align channels to the template network first")
    ap.add_argument("--dropout", type=float, default=0.0, help="translator dropout (a variant: own points)")
    ap.add_argument("--kind", default="mixer", help="translator kind (mixer, attention, mlp, set)")
    ap.add_argument("--hidden-perm", action="store_true", help="augment: reorder large hidden channels")
    ap.add_argument("--hidden-scale", type=float, default=0.0, help="augment: rescale hidden channels")
    ap.add_argument("--context", type=int, default=0, help="context tokens from the begin/last blocks")
    ap.add_argument("--out", default="benchmarks/results/kt_functional_scaling.json")
    ap.add_argument(
        "--seed-cache",
        default=None,
        help="directory of finished seeds: each seed's result is saved there and reused by a later "
        "invocation of the same point (run seeds in separate processes, then once with all seeds)",
    )
    ap.add_argument("--threads", type=int, default=1, help="torch threads (1: several runs side by side)")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    results = json.loads(out.read_text()) if out.exists() else {"points": {}}
    pairs, manifest = load_pairs(a.pairs)
    spec = networks.BlockSpec(**manifest["spec"])
    sp = load_dataset(manifest["dataset"])
    tr, va, te = split_networks(pairs)  # the library split (kt_table.py and the CLI use it too)
    x_tr, y_tr = sp.train.tensors["x"], sp.train.tensors["y"]
    x_va, y_va = validation_images(sp)
    x_te, y_te = sp.test.tensors["x"][: a.test_images], sp.test.tensors["y"][: a.test_images]
    skip = spec.small_skip
    trained = small_accuracy(te, {k: v for k, v in te.items() if k.startswith("small.")}, x_te, y_te, skip)
    best = int(tr["acc_small"].argmax())
    template = {k: v[best : best + 1].expand(len(te["seed"]), *v.shape[1:]) for k, v in tr.items()}
    template = {k: v for k, v in template.items() if k.startswith("small.")}
    templ = small_accuracy(te, template, x_te, y_te, skip)
    rnd = [
        small_accuracy(te, random_small(spec, len(te["seed"]), 1000 + s), x_te, y_te, skip) for s in a.seeds
    ]
    results["reference"] = {
        **results.get("reference", {}),  # keeps template_aligned from an earlier --align run
        "trained": trained.tolist(),
        "template": templ.tolist(),
        "random": [r.tolist() for r in rnd],
        "n_val": len(va["seed"]),
        "n_test": len(te["seed"]),
    }
    n_full = len(tr["seed"])
    if a.align:  # every network's channels in the template network's order (parameters only)
        ref = {k: v[best : best + 1] for k, v in tr.items()}
        tr, va, te = (align_channels(d, ref) for d in (tr, va, te))
        t_al = {k: v[best : best + 1].expand(len(te["seed"]), *v.shape[1:]) for k, v in tr.items()}
        t_al = {k: v for k, v in t_al.items() if k.startswith("small.")}
        results["reference"]["template_aligned"] = small_accuracy(te, t_al, x_te, y_te, skip).tolist()
    if a.import_row:
        results["points"][str(n_full)] = {
            **_import(a.import_row, ROW, trained.tolist(), templ.tolist()),
            "n_train": n_full,
            "n_full": n_full,
            "n_large_only": 0,
        }
    if a.control:
        c = _import(a.control, ROW, trained.tolist(), templ.tolist())
        results["control"] = {**c, "n_train": n_full, **_stats(c["per_seed"])}
    fresh = _fresh_test(a, spec, results, x_te, y_te, ref if a.align else None)
    extra = extra_manifest = None
    if any(a.extra_counts):
        loaded = [load_pairs(d, spec) for d in a.extra]
        extra, extra_manifest = merge_pair_sets(*loaded), loaded[0][1]
        if a.align:
            extra = align_channels(extra, ref)
    elif (Path(a.extra[0]) / "manifest.json").exists():  # re-render only: the extra set's manifest
        extra_manifest = json.loads((Path(a.extra[0]) / "manifest.json").read_text())
    gen_val = None
    if a.extra_val_count:  # more validation networks: steadier checkpoint selection (test untouched)
        xv, xv_manifest = load_pairs(a.extra_val, spec)
        xv = {k: v[: a.extra_val_count] for k, v in xv.items()}
        va = merge_pair_sets((va, manifest), (align_channels(xv, ref) if a.align else xv, xv_manifest))
        gen_val = generation_time(a.extra_val, -(-a.extra_val_count // xv_manifest["shard_size"]))
    banks: dict = {}
    measured: dict = {}
    for n_extra in a.extra_counts:
        if n_extra:
            if n_extra > len(extra["seed"]):
                sys.exit(f"only {len(extra['seed'])} large-only networks in {a.extra}, asked {n_extra}")
            sub = {k: v[:n_extra] for k, v in extra.items()}
            train = merge_pair_sets((tr, manifest), (sub, extra_manifest))
        else:
            train = tr
        banks = {"val": banks["val"]} if "val" in banks else {}  # the val bank is the same for all points
        key = f"{n_full + n_extra}{'+align' if a.align else ''}{f'+drop{a.dropout:g}' if a.dropout else ''}"
        key += _variant_key(a)
        per_seed, secs, best_val, curves, seed_commands, fresh_acc = [], 0.0, [], [], [], []
        for s in a.seeds:
            cached = Path(a.seed_cache, key, f"seed{s}.json") if a.seed_cache else None
            r = json.loads(cached.read_text()) if cached and cached.exists() else None
            if r and (fresh is None or len(r.get("fresh_test_acc") or []) == len(fresh["seed"])):
                # (a seed without scores on this fresh test set trains again)
                per_seed.append(r["test_acc"])
                best_val.append(r["best_val_acc"])
                curves.append(r["curve"])
                secs += r["seconds"]
                seed_commands.append(r["command"])
                fresh_acc.append(r.get("fresh_test_acc"))
                print(n_full + n_extra, s, st.mean(per_seed[-1]), f"from {cached}", flush=True)
                continue
            cfg = TranslatorConfig(
                dim=a.dim,
                depth=a.depth,
                epochs=a.epochs,
                batch_size=a.batch_size,
                bank=a.bank,
                img_batch=a.img_batch,
                seed=s,
                eval_every=max(1, a.epochs // a.evals),
                mse_weight=0.0,
                func_weight=1.0,
                template=True,
                dropout=a.dropout,
                kind=a.kind,
                hidden_perm=a.hidden_perm,
                hidden_scale=a.hidden_scale,
                context=a.context,
            )
            t = time.perf_counter()
            tt, hist = train_translator(train, va, spec, cfg, (x_tr, y_tr), (x_va, y_va), True, banks)
            seconds = time.perf_counter() - t
            secs += seconds
            per_seed.append(small_accuracy(te, tt.translate(te), x_te, y_te, skip).tolist())
            best_val.append(hist["best_val_acc"])
            curves.append({"epoch": hist["epoch"], "val_acc": hist["val_acc"], "loss": hist["loss"]})
            seed_commands.append(" ".join(["kt_functional_scaling.py", *sys.argv[1:]]))
            fresh_acc.append(
                small_accuracy(fresh, tt.translate(fresh), x_te, y_te, skip).tolist() if fresh else None
            )
            print(n_full + n_extra, s, st.mean(per_seed[-1]), f"{seconds:.0f}s", flush=True)
            if cached:
                cached.parent.mkdir(parents=True, exist_ok=True)
                r = {"test_acc": per_seed[-1], "best_val_acc": best_val[-1], "curve": curves[-1]}
                r |= {"fresh_test_acc": fresh_acc[-1]} if fresh else {}
                cached.write_text(json.dumps({**r, "seconds": seconds, "command": seed_commands[-1]}))
        gen_full = generation_time(a.pairs)
        gen_extra = _extra_generation(a.extra, n_extra, extra_manifest["shard_size"]) if n_extra else None
        measured[key] = {
            "generation": {"full": gen_full, "large_only": gen_extra, "extra_val": gen_val},
            "label": _label(a, n_full, n_extra, len(va["seed"])),
            "n_val": len(va["seed"]),
            "kind": a.kind,
            "dim": a.dim,
            "depth": a.depth,
            "hidden_perm": a.hidden_perm,
            "hidden_scale": a.hidden_scale,
            "context": a.context,
            "align": a.align,
            "dropout": a.dropout,
            "per_seed": per_seed,
            "best_val_acc": best_val,
            "curves": curves,
            "epochs": a.epochs,
            "train_seconds": secs / len(a.seeds),
            "threads": a.threads,
            "n_train": n_full + n_extra,
            "n_full": n_full,
            "n_large_only": n_extra,
            "source": "measured",
            "command": " ".join(["kt_functional_scaling.py", *sys.argv[1:]]),
            "seed_commands": seed_commands,
        }
        if fresh:
            measured[key]["fresh_test"] = {"dir": a.extra_test, "per_seed": fresh_acc}
    if out.exists():  # another invocation may have written points meanwhile (parallel runs): keep them
        results["points"] = {**json.loads(out.read_text())["points"], **results["points"]}
    results["points"].update(measured)
    render(results, a, manifest, extra_manifest, out)


def _fresh_test(
    a: argparse.Namespace,
    spec: networks.BlockSpec,
    results: dict,
    x: torch.Tensor,
    y: torch.Tensor,
    ref: dict | None,
) -> dict | None:
    """Load ``--extra-test`` (aligned like the split when ``ref``) and store its reference accuracies.

    Fresh test networks come from a separate full pair set (own seed): never trained on or used for
    selection, each with its directly trained small block as the upper bound.
    """
    if not a.extra_test:
        return None
    fresh, _ = load_pairs(a.extra_test, spec)
    if not bool(fresh[HAS_SMALL].all()):
        sys.exit(
            f"{a.extra_test}: large-only networks have no trained small block to compare with; "
            "make the fresh test set with --epochs-small > 0"
        )
    fresh = align_channels(fresh, ref) if ref is not None else fresh
    small = {k: v for k, v in fresh.items() if k.startswith("small.")}
    results["reference"]["fresh_test"] = {
        "dir": a.extra_test,
        "n": len(fresh["seed"]),
        "generation": generation_time(a.extra_test),
        "trained": small_accuracy(fresh, small, x, y, spec.small_skip).tolist(),
        "random": [
            small_accuracy(
                fresh, random_small(spec, len(fresh["seed"]), 1000 + s), x, y, spec.small_skip
            ).tolist()
            for s in a.seeds
        ],
    }
    return fresh


def _pooled_lists(p: dict) -> list[list[float]]:
    """Per seed: a point's accuracies on the split's test networks, then on the fresh ones."""
    return [a + b for a, b in zip(p["per_seed"], p["fresh_test"]["per_seed"], strict=True)]


def _fresh_section(results: dict) -> list[str]:
    """Markdown: points scored on the fresh test networks, alone and pooled with the split's."""
    fr = results["reference"].get("fresh_test")
    pts = [(k, p) for k, p in results["points"].items() if p.get("fresh_test")]
    if not fr or not pts:
        return []
    ref = results["reference"]
    n_split = ref["n_test"]
    pooled_t = st.mean(ref["trained"] + fr["trained"])
    r_split, r_fresh = (st.mean(v for s in r for v in s) for r in (ref["random"], fr["random"]))
    pooled_r = (n_split * r_split + fr["n"] * r_fresh) / (n_split + fr["n"])  # random seeds may differ
    md = [
        "",
        f"## Fresh test networks: {fr['n']} more, from `{fr['dir']}`",
        "",
        f"A separate full pair set (own make-pairs seed; {fr['generation']['seconds'] / 60:.0f} process-min "
        "to generate, not counted in the budget above: it only measures), never trained on nor used "
        f"for selection, scored with the same translators as the {n_split} split test networks. "
        f"Pooled = all {n_split + fr['n']} test networks (the primary measure: a standard error about "
        f"{((n_split + fr['n']) / n_split) ** 0.5:.1f}x smaller than the split's networks alone). "
        "Ratios: to the mean trained small block of "
        "the same networks.",
        "",
        "| point | split test acc (/ trained) | fresh test acc (/ trained) | pooled test acc "
        "| pooled / trained [network-bootstrap 95% CI] | pooled / random "
        "| target >= 0.9 trained (pooled; met only if the CI's lower bound clears it) |",
        "|---|---|---|---|---|---|---|",
    ]
    for key, p in pts:
        fs = _stats(p["fresh_test"]["per_seed"])
        pooled = _stats(_pooled_lists(p))
        p["fresh_test"].update(
            fs,
            ratio_trained=fs["mean"] / st.mean(fr["trained"]),
            pooled={
                **pooled,
                "ratio_trained": pooled["mean"] / pooled_t,
                "ratio_random": pooled["mean"] / pooled_r,
            },
        )
        pp = p["fresh_test"]["pooled"]
        trained = ref["trained"] + fr["trained"]
        pp["ratio_trained_ci"] = list(ratio_interval(_pooled_lists(p), trained)[1:])
        alive = [i for i, t in enumerate(trained) if t > DEAD]  # directly trained block not dead
        acc_alive = st.mean(s[i] for s in _pooled_lists(p) for i in alive)
        pp["alive"] = {"n": len(alive), "ratio_trained": acc_alive / st.mean(trained[i] for i in alive)}
        md.append(
            f"| `{key}` | {p['mean']:.3f} ({p['ratio_trained']:.3f}) | {fs['mean']:.3f} ± {fs['std']:.3f} "
            f"({p['fresh_test']['ratio_trained']:.3f}) | {pp['mean']:.3f} ± {pp['std']:.3f} | "
            f"{pp['ratio_trained']:.3f} [{pp['ratio_trained_ci'][0]:.3f}, {pp['ratio_trained_ci'][1]:.3f}] | "
            f"{pp['ratio_random']:.2f} | {target_verdict(pp)} |"
        )
    md += [
        f"| reference: trained small block | {st.mean(ref['trained']):.3f} | {st.mean(fr['trained']):.3f} | "
        f"{pooled_t:.3f} | 1.000 | {pooled_t / pooled_r:.2f} | - |",
        f"| reference: random init | {r_split:.3f} | {r_fresh:.3f} | {pooled_r:.3f} | "
        f"{pooled_r / pooled_t:.3f} | 1.00 | - |",
        "",
        "Dead trained blocks: direct training of the small block (the pair schedule) leaves some blocks "
        f"dead (accuracy <= {DEAD}, chance); they lower the trained mean the ratios divide by. Over the "
        "pooled networks whose trained block is not dead only: "
        + "; ".join(
            f"`{k}` {p['fresh_test']['pooled']['alive']['ratio_trained']:.3f} of trained "
            f"({p['fresh_test']['pooled']['alive']['n']} networks)"
            for k, p in pts
        )
        + ".",
    ]
    return md


def _variant_key(a: argparse.Namespace) -> str:
    """Key suffix of the translator variants added after the first points (empty for those)."""
    k = f"+{a.kind}" if a.kind != "mixer" else ""
    k += f"+d{a.dim}x{a.depth}" if (a.dim, a.depth) != (48, 3) and a.kind == "mixer" else ""
    k += "+hperm" if a.hidden_perm else ""
    k += f"+hscale{a.hidden_scale:g}" if a.hidden_scale else ""
    k += f"+ctx{a.context}" if a.context else ""
    k += f"+val{a.extra_val_count}" if a.extra_val_count else ""
    return k + (f"+ep{a.epochs}" if a.epochs != _usual_epochs(a) else "")


def _threads(p: dict) -> str:
    """Torch threads of a point's training time when not the usual one (points before: one)."""
    return f" ({p['threads']} threads)" if p.get("threads", 1) != 1 else ""


def _usual_epochs(a: argparse.Namespace) -> int:
    """Epochs of the points whose keys and labels name none: 40, and 20 with extra validation networks."""
    return 20 if a.extra_val_count else 40


def _label(a: argparse.Namespace, n_full: int, n_extra: int, n_val: int) -> str:
    """Row label of a measured point: networks, then every variant that differs from the first points."""
    out = f"{n_full + n_extra} ({n_full} + {n_extra})"
    out += ", channels aligned" if a.align else ""
    if a.kind != "mixer" or (a.dim, a.depth) != (48, 3):
        out += f", {a.kind} translator (dim {a.dim}, depth {a.depth})"
    out += ", hidden channels reordered (aug.)" if a.hidden_perm else ""
    out += f", hidden channels rescaled (aug., {a.hidden_scale:g})" if a.hidden_scale else ""
    out += f", {a.context} context tokens (begin/last blocks)" if a.context else ""
    out += f", dropout {a.dropout:g}" if a.dropout else ""
    out += f", {a.epochs} epochs" if a.epochs != _usual_epochs(a) else ""
    return out + (f", {n_val} validation networks" if a.extra_val_count else "")


def _extra_generation(dirs: list[str], n: int, shard_size: int) -> dict:
    """Generation cost of the first ``n`` large-only networks taken in order from ``dirs``."""
    total = {"shards": 0, "networks": 0, "seconds": 0.0, "wall_seconds": 0.0, "untimed": 0}
    for d in dirs:
        have = generation_time(d)["networks"]
        take = min(n, have)
        if take:
            g = generation_time(d, -(-take // shard_size))
            total = {k: total[k] + g[k] for k in total}
        n -= take
    return total


def _sets_desc(dirs: list[str | None], results: dict) -> str:
    """'`dir` (make-pairs seed S), then ...' from the sets' manifests."""
    out = []
    for d in dirs:
        if d is None:
            continue
        m = Path(d) / "manifest.json"
        seed = json.loads(m.read_text())["seed"] if m.exists() else results.get("extra_seed", "?")
        out.append(f"`{d}` (make-pairs seed {seed})")
    return ", then ".join(out) or "none"


def _scatter(pts: list[dict], ref: dict, out: Path) -> None:
    """Per test network: translated (mean over seeds) vs trained accuracy of the point that the
    largest validation set selects (best mean validation accuracy among points using it)."""
    cand = [p for p in pts if p.get("best_val_acc")]
    if not cand:
        return
    n_val = max(p.get("n_val", ref["n_val"]) for p in cand)
    best = max(
        (p for p in cand if p.get("n_val", ref["n_val"]) == n_val), key=lambda p: st.mean(p["best_val_acc"])
    )
    per_net = [st.mean(v) for v in zip(*best["per_seed"], strict=True)]
    fig, axes = plt.subplots(1, 2 if best.get("curves") else 1, figsize=(9.4, 4.4), squeeze=False)
    ax = axes[0, 0]
    ax.scatter(ref["trained"], per_net, s=14, label="translated (mean of seeds)")
    if best.get("fresh_test") and "fresh_test" in ref:  # same translators, fresh test networks
        fresh = [st.mean(v) for v in zip(*best["fresh_test"]["per_seed"], strict=True)]
        ax.scatter(
            ref["fresh_test"]["trained"], fresh, s=8, alpha=0.6, label="translated, fresh test networks"
        )
    rnd = [st.mean(v) for v in zip(*ref["random"], strict=True)]
    ax.scatter(ref["trained"], rnd, s=10, marker="x", color="grey", label="random init")
    ax.plot([0, 1], [0, 1], "k:", lw=0.8, label="= trained")
    ax.plot([0, 1], [0, 0.9], "k--", lw=0.6, label="0.9 x trained")
    ax.set(
        xlabel="trained small block (test acc)",
        ylabel="small block between own begin/last",
        xlim=(0, 1),
        ylim=(0, 1),
        title=f"{best['label'] if best.get('label') else best['n_train']}",
    )
    ax.title.set_fontsize(7)
    ax.legend(fontsize=7)
    if best.get("curves"):
        ax2 = axes[0, 1]
        for i, c in enumerate(best["curves"]):
            ax2.plot(c["epoch"], c["val_acc"], marker=".", label=f"seed {i}: validation-network acc")
            ax2.plot(c["epoch"], c["loss"], ls="--", color=ax2.lines[-1].get_color(), lw=0.8)
        ax2.set(xlabel="translator epoch", ylabel="val acc (solid) / training loss (dashed)")
        ax2.legend(fontsize=7)
    fig.savefig(out.with_name(out.stem + "_scatter.png"), dpi=100, bbox_inches="tight")
    plt.close(fig)


def _val(p: dict) -> str:
    """Mean best validation-network accuracy over seeds (what checkpoint selection saw), or '-'."""
    return f"{st.mean(p['best_val_acc']):.3f}" if p.get("best_val_acc") else "-"


def _gen(p: dict) -> str:
    """'X min (Y min)': generation of a point's networks in one process (split over two)."""
    g = p.get("generation")
    if not g or g["full"]["untimed"] or (g["large_only"] or {}).get("untimed"):
        return "-"
    secs = g["full"]["seconds"] + (g["large_only"] or {}).get("seconds", 0.0)
    secs += (g.get("extra_val") or {}).get("seconds", 0.0)
    p["generation_seconds"] = secs
    return f"{secs / 60:.0f} min ({secs / 120:.0f} min)"


def render(
    results: dict, a: argparse.Namespace, manifest: dict, extra_manifest: dict | None, out: Path
) -> None:
    """Write the JSON (with provenance), the markdown table and the learning-curve PNG."""
    ref = results["reference"]
    sets = {"full": Path(a.pairs), **{Path(d).name: Path(d) for d in a.extra}}
    if a.extra_val:
        sets[Path(a.extra_val).name] = Path(a.extra_val)
    for p in results["points"].values():  # points measured before shards recorded their timing
        if "generation" not in p and all(d.exists() for d in sets.values()):
            n_lo, size = p["n_large_only"], (extra_manifest or manifest)["shard_size"]
            g = {
                "full": generation_time(sets["full"]),
                "large_only": generation_time(a.extra[0], -(-n_lo // size)) if n_lo else None,
                "note": "from the regenerated pair sets (same commands and seeds)",
            }
            if (g["large_only"] or {}).get("networks", n_lo) >= n_lo:  # those shards exist now
                p["generation"] = g
    results["generation_sets"] = {k: generation_time(d) for k, d in sets.items() if d.exists()}
    t_mean = st.mean(ref["trained"])
    r_mean = st.mean(v for s in ref["random"] for v in s)
    pts = sorted(results["points"].values(), key=lambda p: (p.get("align", False), p["n_train"]))
    for p in pts:
        p.update(_stats(p["per_seed"]))
        p.update(ratio_trained=p["mean"] / t_mean, ratio_random=p["mean"] / r_mean)
    md = [
        "# Functional KT objective: test accuracy vs number of training networks",
        "",
        f"Full pair set `{a.pairs}` (schedule {manifest['schedule']}, seed {manifest['seed']}): its "
        f"{pts[0]['n_full'] if pts else '?'} training pairs, {ref['n_val']} validation and "
        f"{ref['n_test']} test networks (same split as kt_table.md). Extra training networks: "
        f"large-only (epochs_small=0) from {_sets_desc(a.extra, results)}, first N in that order. "
        f"Extra validation networks (rows that say so): {_sets_desc([a.extra_val], results)}. "
        f"Translator: Mixer dim={a.dim}, depth={a.depth} unless the row names another, functional "
        f"objective (CE+KL, correction of the best training pair's small block), {a.batch_size} networks "
        f"per step, {a.img_batch} of {a.bank} bank images per network per step, seeds {a.seeds}; "
        "checkpoint = best mean accuracy on the validation networks (test networks never used for "
        f"selection). Test accuracy on the first {a.test_images} test images, each small block between "
        "its own network's frozen begin/last. mean ± std over all (test network, seed) values; seed std "
        "= std of per-seed means.",
        "",
        "| training networks (full + large-only) | epochs | test acc | seed std | / trained | / random "
        "| target >= 0.9 trained | val acc (selection) | generation, 1 process (2) | train time/seed "
        "| source |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    al_lab = {True: ", channels aligned", False: ""}
    rows = [
        (
            p,
            p.get("label")
            or f"{p['n_train']} ({p['n_full']} + {p['n_large_only']}){al_lab[p.get('align', False)]}"
            + (f", dropout {p['dropout']:g}" if p.get("dropout") else ""),
        )
        for p in pts
    ]
    if "control" in results:
        c = results["control"]
        c.update(ratio_trained=c["mean"] / t_mean, ratio_random=c["mean"] / r_mean)
        rows.append((c, f"{c['n_train']} (control: {c['epochs']} epochs)"))
    for p, label in rows:
        src = "measured" if p["source"] == "measured" else "imported"
        md.append(
            f"| {label} | {p['epochs']} | {p['mean']:.3f} ± {p['std']:.3f} | {p['seed_std']:.3f} | "
            f"{p['ratio_trained']:.3f} | {p['ratio_random']:.2f} | "
            f"{'met' if p['ratio_trained'] >= 0.9 else 'missed'} | "
            f"{_val(p)} | "
            f"{_gen(p)} | {p['train_seconds']:.0f} s{_threads(p)} | "
            f"{src} |"
        )
    md += [
        f"| reference: trained small block | - | {st.mean(ref['trained']):.3f} | - | 1.00 | "
        f"{t_mean / r_mean:.2f} | - | - | - | - | stored pairs |",
        f"| reference: template only | - | {st.mean(ref['template']):.3f} | - | "
        f"{st.mean(ref['template']) / t_mean:.2f} | {st.mean(ref['template']) / r_mean:.2f} "
        "| - | - | - | - | - |",
        *(
            [
                f"| reference: template only, channels aligned | - | "
                f"{st.mean(ref['template_aligned']):.3f} | - | "
                f"{st.mean(ref['template_aligned']) / t_mean:.2f} | "
                f"{st.mean(ref['template_aligned']) / r_mean:.2f} | - | - | - | - | - |"
            ]
            if "template_aligned" in ref
            else []
        ),
        f"| reference: random init | - | {r_mean:.3f} | - | {r_mean / t_mean:.2f} | 1.00 "
        "| - | - | - | - | - |",
        "",
        "Generation = sum of the per-shard wall times of every network the point uses (all full pairs, "
        "incl. validation and test networks, + its large-only training networks + any extra "
        "validation networks), i.e. one process on this "
        "shared CPU; (2) = that split over two processes, as the sets were made. Measured set walls: "
        + "; ".join(
            f"{k}: {g['networks']} networks, {g['wall_seconds'] / 60:.1f} min wall, "
            f"{g['seconds'] / 60:.1f} process-min"
            for k, g in results["generation_sets"].items()
        )
        + ".",
        "",
        "Imported points: "
        + ("; ".join(f"{p['n_train']}: {p['source']}" for p in pts if p["source"] != "measured") or "none")
        + ".",
        *_fresh_section(results),
    ]
    fig, ax = plt.subplots(figsize=(6, 4.2))
    xs = sorted({p["n_train"] for p in pts})
    families: dict[str, list[dict]] = {}
    for p in pts:  # one line per configuration (everything but the number of training networks)
        fam = p.get("label", "").split(", ", 1)[1] if ", " in p.get("label", "") else ""
        if not p.get("label"):
            fam = ", ".join(
                x for x, on in (("channels aligned", p.get("align")), ("dropout", p.get("dropout"))) if on
            )
        families.setdefault(f"{fam or 'plain'}, {p['epochs']} epochs", []).append(p)
    marks = "o^Ds*vPX"
    for i, (fam, series) in enumerate(families.items()):
        ax.errorbar(
            [p["n_train"] for p in series],
            [p["mean"] for p in series],
            yerr=[p["seed_std"] for p in series],
            marker=marks[i % len(marks)],
            capsize=3,
            label=f"{fam} (± seed std)",
        )
    if "control" in results:
        c = results["control"]
        ax.errorbar(
            [c["n_train"]],
            [c["mean"]],
            yerr=[c["seed_std"]],
            marker="s",
            ls="none",
            capsize=3,
            label=f"{c['n_train']} networks, {c['epochs']} epochs (same-steps control)",
        )
    ax.axhline(t_mean, color="black", ls=":", label="trained small block")
    ax.axhline(0.9 * t_mean, color="black", ls="--", lw=0.8, label="0.9 x trained (target)")
    ax.axhline(st.mean(ref["template"]), color="tab:green", ls=":", label="template only")
    ax.axhline(r_mean, color="grey", ls=":", label="random init")
    ax.set(
        xlabel="training networks (full pairs + large-only)",
        ylabel=f"test acc ({ref['n_test']} networks)",
        xlim=(min(xs) * 0.9, max(xs) * 1.1),
        ylim=(0, 1),
    )
    ax.set_xscale("log")
    ax.set_xticks(xs, [str(x) for x in xs], rotation=60, fontsize=7)
    ax.minorticks_off()
    ax.legend(fontsize=6, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.savefig(out.with_suffix(".png"), dpi=100, bbox_inches="tight")
    _scatter(pts, ref, out)
    from kdforge.report.provenance import provenance, write_results

    cfg = {k: v for k, v in vars(a).items()}
    cfg.update(manifest=manifest, extra_manifest=extra_manifest)
    results["provenance"] = provenance(cfg, seeds=a.seeds)
    write_results(out, results, "\n".join(md))
    print("\n".join(md))


if __name__ == "__main__":
    main()
