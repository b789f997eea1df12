"""KT quality table: translated vs random-init vs trained small blocks on held-out test networks.

Networks of a pair set are split by seed order into train / validation (checkpoint selection) /
test (reported only). Every translator row is trained with ``--seeds`` seeds; accuracies are on the
first ``--test-images`` images of the data set's test split, each small block between its own
network's frozen begin/last blocks. The issue's targets (translated >= 2x random init and >= 0.9 x
the directly trained small block) are checked per row and written into the table.
Writes benchmarks/results/kt_table.{json,md}, kt_scatter.png and kt_curves.png (``--out`` stem).
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
from kdforge.methods.translation import networks  # noqa: E402
from kdforge.methods.translation.augment import Augment  # noqa: E402
from kdforge.methods.translation.evaluate import (  # noqa: E402
    TEST_FRACTION,
    VAL_FRACTION,
    random_small,
    ratio_interval,
    small_accuracy,
    split_networks,
)
from kdforge.methods.translation.pairs import load_pairs  # noqa: E402
from kdforge.methods.translation.train import TranslatorConfig, train_translator, validation_images  # noqa: E402

ROWS = {
    "translated (MSE, Mixer)": {},
    "MSE + masking (p=0.1, input)": {"augment": Augment(mask_p=0.1)},
    "MSE + noise (sigma=0.1, input)": {"augment": Augment(noise_sigma=0.1)},
    "MSE, attention": {"kind": "attention"},
    "MSE, MLP": {"kind": "mlp"},
    "functional (CE+KL), Mixer": {"mse_weight": 0.0, "func_weight": 1.0, "template": True},
}


TRAINED = "trained small block (upper bound)"


def _ms(v: list[float]) -> str:
    return f"{st.mean(v):.3f} ± {st.stdev(v) if len(v) > 1 else 0.0:.3f}"


def target_verdict(r: dict | None) -> str:
    """The targets (>= 0.9 of trained, >= 2x random) on a row or point: met / not distinguishable / missed.

    With a network-bootstrap interval (``ratio_trained_ci``) "met" needs its lower bound >= 0.9 and
    "missed" its upper bound < 0.9; without one, the point estimate decides.
    """
    if not r:
        return "missed"
    low, high = r.get("ratio_trained_ci") or (r["ratio_trained"], r["ratio_trained"])
    if r["ratio_random"] < 2.0 or high < 0.9:
        return "missed"
    return "met" if low >= 0.9 else "not distinguishable"


def meets_targets(r: dict | None) -> bool:
    """Whether :func:`target_verdict` says "met"."""
    return target_verdict(r) == "met"


def render_md(results: dict) -> str:
    """The markdown table of ``results`` (rows + info); fills each row's mean/std/ratios/verdict."""
    i = results["info"]
    rnd, trained = results["rows"]["random init"]["per_seed"], results["rows"][TRAINED]["per_seed"][0]
    gen_min = i["generation_seconds"] / 60
    md = [
        f"# Knowledge Translation on {i['dataset']}: held-out test networks",
        "",
        f"Pair set `{i['pairs']}`: {i['n_all']} pairs ({i['n_train']} train / {i['n_val']} validation / "
        f"{i['n_test']} test networks), small block skip={i['skip']}, pair schedule "
        f"{i['schedule']}. Generating all {i['n_all']} pairs took {gen_min:.1f} min (wall) on a "
        f"2-core CPU shared with other jobs. Translators: dim={i['dim']}, depth={i['depth']}, "
        f"{i['batch_size']} networks per step, seeds {i['seeds']}; checkpoint = best mean accuracy on the "
        f"validation networks (test networks are never used for selection). Accuracy on the first "
        f"{i['test_images']} test images, each small block between its own network's frozen begin/last.",
        "mean ± std over all (test network, translator seed) values; 'seed std' = std of per-seed means; "
        "'95% CI' = network-bootstrap interval of the ratio to trained (test networks resampled); a "
        "target is met only when that interval's lower bound clears 0.9.",
        "",
        "| row | epochs | test acc | seed std | / trained | 95% CI | / random "
        "| targets (>= 2x random, >= 0.9 trained) | #train pairs | gen. time (all pairs) | train time/seed |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    r_mean = st.mean(v for s in rnd for v in s)
    t_mean = st.mean(trained)
    translators = [*i["translator_rows"], *results.get("merged", {})]
    for name, row in results["rows"].items():
        flat = [v for s in row["per_seed"] for v in s]
        seed_means = [st.mean(s) for s in row["per_seed"]]
        row.update(
            mean=st.mean(flat),
            std=st.stdev(flat) if len(flat) > 1 else 0.0,
            seed_std=st.stdev(seed_means) if len(seed_means) > 1 else 0.0,
            ratio_trained=st.mean(flat) / t_mean,
            ratio_random=st.mean(flat) / r_mean,
            ratio_trained_ci=list(ratio_interval(row["per_seed"], trained)[1:]),
        )
        row["meets_targets"] = meets_targets(row)
        verdict = target_verdict(row) if name in translators else "-"
        low, high = row["ratio_trained_ci"]
        ts = "-" if row["train_seconds"] is None else f"{row['train_seconds']:.0f} s"
        ts += f" ({row['threads']} threads)" if row.get("threads", 1) != 1 else ""
        gen = row.get("generation", f"{gen_min:.1f} min")
        md.append(
            f"| {name} | {row.get('epochs', '-')} | {_ms(flat)} | {row['seed_std']:.3f} | "
            f"{row['ratio_trained']:.3f} | [{low:.3f}, {high:.3f}] | {row['ratio_random']:.2f} | {verdict} | "
            f"{row.get('n_train', i['n_train'])} | {gen} | {ts} |"
        )
    met = [n for n in translators if results["rows"][n]["meets_targets"]]
    md += [
        "",
        f"Targets met on the split's test networks by: {', '.join(met) if met else 'no translator row'}.",
    ]
    pooled = [
        n
        for n, m in results.get("merged", {}).items()
        if meets_targets(m.get("fresh_test", {}).get("pooled"))
    ]
    if pooled:  # rows also scored on fresh test networks (see their notes below)
        md[-1] += f" Met on the pooled test networks (split + fresh) by: {', '.join(pooled)}."
    for name, m in results.get("merged", {}).items():
        md.append(
            f"\nRow '{name}' merged from `{m['source']}` point `{m['point']}` (same test networks: "
            f"trained and random-init accuracies checked equal; its command `{m['command']}`, "
            f"date {m['date']}, commit {m['git_commit']}). Its #train pairs counts full pairs + "
            "large-only networks; its generation time is the sum of the per-shard wall times of "
            "every network it uses (training, validation and test; one process on this shared CPU; "
            "in brackets: split over two processes, as made)."
        )
        if f := m.get("fresh_test"):
            pl, n = f["pooled"], f["n"] + len(results["rows"][TRAINED]["per_seed"][0])
            if "per_seed" in f:  # per-network lists kept: the pooled network-bootstrap interval
                split_seeds = results["rows"][name]["per_seed"]
                pooled_seeds = [a + b for a, b in zip(split_seeds, f["per_seed"], strict=True)]
                pl["ratio_trained_ci"] = list(ratio_interval(pooled_seeds, trained + f["trained"])[1:])
            ci = pl.get("ratio_trained_ci")
            ci_text = f" (95% CI [{ci[0]:.3f}, {ci[1]:.3f}] over test networks)" if ci else ""
            md.append(
                f"The same translators on {f['n']} fresh test networks (`{f['dir']}`, never trained on or "
                f"used for selection): {f['mean']:.3f} ± {f['std']:.3f} = {f['ratio_trained']:.3f} of their "
                f"trained blocks; pooled over all {n} test networks (the primary measure): "
                f"{pl['mean']:.3f} ± {pl['std']:.3f} = **{pl['ratio_trained']:.3f} of trained**{ci_text}, "
                f"{pl['ratio_random']:.2f}x random init (targets >= 0.9 and >= 2x: {target_verdict(pl)})."
            )
    return "\n".join(md)


def merge_scaling_row(a: argparse.Namespace) -> None:
    """Add one point of kt_functional_scaling.json to the table as a row (no training)."""
    from kdforge.errors import KdforgeError
    from kdforge.report.provenance import provenance, write_results

    out = Path(a.out)
    results, scaling = json.loads(out.read_text()), json.loads(Path(a.merge_scaling).read_text())
    if a.point not in scaling["points"]:
        raise KdforgeError(
            f"no point '{a.point}' in {a.merge_scaling}", f"pick one of {sorted(scaling['points'])}"
        )
    ref, rows = scaling["reference"], results["rows"]
    pairs_ = [(rows[TRAINED]["per_seed"][0], ref["trained"])]
    pairs_ += list(zip(rows["random init"]["per_seed"], ref["random"], strict=True))
    same = all(
        len(x) == len(y) and max(abs(u - v) for u, v in zip(x, y, strict=True)) < 1e-6 for x, y in pairs_
    )
    if not same:
        raise KdforgeError(
            f"{a.merge_scaling} scored other test networks than {out}",
            "merge only points measured on the same pair set and split",
        )
    if "info" not in results:  # tables written before render_md: rebuild the header facts
        c = results["provenance"]["config"]
        n_tr = scaling["points"][a.point]["n_full"]
        results["info"] = {
            "dataset": c["manifest"]["dataset"],
            "pairs": c["pairs"],
            "n_all": n_tr + ref["n_val"] + ref["n_test"],
            "n_train": n_tr,
            "n_val": ref["n_val"],
            "n_test": ref["n_test"],
            "skip": c["manifest"]["spec"]["small_skip"],
            "schedule": c["manifest"]["schedule"],
            "generation_seconds": c["generation_seconds"],
            "dim": c["dim"],
            "depth": c["depth"],
            "batch_size": c["batch_size"],
            "seeds": results["provenance"]["seeds"],
            "test_images": c["test_images"],
            "translator_rows": list(c["rows"]),
        }
    p = scaling["points"][a.point]
    sc = scaling["provenance"]["config"]
    if p.get("label"):  # written by kt_functional_scaling.py with every variant of the point
        name = f"functional (CE+KL), Mixer unless named, training networks (full + large-only) {p['label']}"
    else:  # points measured before labels were stored
        name = (
            f"functional (CE+KL), Mixer, {p['n_train']} networks ({p['n_full']} full + "
            f"{p['n_large_only']} large-only){', channels aligned' if p.get('align') else ''}"
            + (f", translator dropout {p['dropout']:g}" if p.get("dropout") else "")
        )
    for old, m in list(results.get("merged", {}).items()):  # merging a point again replaces its row
        if m["point"] == a.point:
            del results["merged"][old], rows[old]
    gen = p.get("generation_seconds")
    trained_row = rows.pop(TRAINED)  # keep the upper bound last
    rows[name] = {
        "per_seed": p["per_seed"],
        "epochs": p["epochs"],
        "train_seconds": p["train_seconds"],
        "threads": p.get("threads", 1),
        "n_train": p["n_train"],
        "generation": f"{gen / 60:.0f} min ({gen / 120:.0f} min)" if gen else "-",
        "generation_seconds": gen,
        "dim": p.get("dim", sc["dim"]),
        "depth": p.get("depth", sc["depth"]),
    }
    rows[TRAINED] = trained_row
    sp = scaling["provenance"]
    results.setdefault("merged", {})[name] = {
        "source": a.merge_scaling,
        "point": a.point,
        "command": p.get("command", sp["command"]),
        "date": sp["date"],
        "git_commit": sp["git_commit"],
        "merge": provenance({"merge_scaling": a.merge_scaling, "point": a.point}),
    }
    if "pooled" in p.get("fresh_test", {}):  # the same translators on fresh test networks too
        f = {k: v for k, v in p["fresh_test"].items() if k != "seed_means"}
        fresh_trained = scaling["reference"]["fresh_test"]["trained"]
        results["merged"][name]["fresh_test"] = {**f, "n": len(f["per_seed"][0]), "trained": fresh_trained}
    write_results(out, results, render_md(results))
    print(render_md(results))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--pairs", default="runs/kt_pairs_fmnist")
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--epochs", type=int, default=150)
    ap.add_argument("--dim", type=int, default=48)
    ap.add_argument("--depth", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--test-images", type=int, default=2000, help="first N images of the test split")
    ap.add_argument("--val-frac", type=float, default=VAL_FRACTION, help="share of networks for validation")
    ap.add_argument("--test-frac", type=float, default=TEST_FRACTION, help="share of networks for test")
    ap.add_argument("--batch-size", type=int, default=32, help="networks per translator step")
    ap.add_argument("--func-epochs", type=int, default=None, help="epochs of functional rows")
    ap.add_argument("--img-batch", type=int, default=64, help="images per network per functional step")
    ap.add_argument("--bank", type=int, default=512, help="training images per network (functional)")
    ap.add_argument("--evals", type=int, default=20, help="validation evaluations per training run")
    ap.add_argument("--rows", nargs="*", default=None, help="subset of row names to run")
    ap.add_argument("--out", default="benchmarks/results/kt_table.json")
    ap.add_argument("--merge-scaling", default=None, help="kt_functional_scaling JSON: add a point as a row")
    ap.add_argument("--point", default=None, help="key of the point to add (e.g. 311+align)")
    a = ap.parse_args()
    if a.merge_scaling:
        from kdforge.errors import KdforgeError

        try:
            return merge_scaling_row(a)
        except KdforgeError as e:
            sys.exit(f"error: {e.cause}\nfix: {e.fix}")
    torch.set_num_threads(a.threads)
    pairs, manifest = load_pairs(a.pairs)
    spec = networks.BlockSpec(**manifest["spec"])
    ds = manifest["dataset"]
    sp = load_dataset("idx", data_dir=a.data_dir) if a.data_dir else load_dataset(ds)
    tr, va, te = split_networks(pairs, val_frac=a.val_frac, test_frac=a.test_frac)
    skip = spec.small_skip
    shards = sorted(Path(a.pairs).glob("shard_*.safetensors"))
    gen_s = max(f.stat().st_mtime for f in shards) - (Path(a.pairs) / "manifest.json").stat().st_mtime
    x_tr, y_tr = sp.train.tensors["x"], sp.train.tensors["y"]
    x_va, y_va = validation_images(sp)
    x_te, y_te = sp.test.tensors["x"][: a.test_images], sp.test.tensors["y"][: a.test_images]
    small_te = {k: v for k, v in te.items() if k.startswith("small.")}
    trained = small_accuracy(te, small_te, x_te, y_te, skip).tolist()  # stored trained blocks, same images
    results: dict = {"rows": {}, "curves": {}}
    rnd = [
        small_accuracy(te, random_small(spec, len(te["seed"]), 1000 + s), x_te, y_te, skip).tolist()
        for s in a.seeds
    ]
    results["rows"]["random init"] = {"per_seed": rnd, "train_seconds": 0.0}
    best = int(tr["acc_small"].argmax())  # the functional rows' template, copied without translation
    template = {k: v[best : best + 1].expand(len(te["seed"]), *v.shape[1:]) for k, v in tr.items()}
    template = {k: v for k, v in template.items() if k.startswith("small.")}
    results["rows"]["template only (best training pair's small block)"] = {
        "per_seed": [small_accuracy(te, template, x_te, y_te, skip).tolist()],
        "train_seconds": 0.0,
    }
    rows = {k: v for k, v in ROWS.items() if a.rows is None or k in a.rows}
    banks: dict = {}  # frozen feature banks, shared by all rows and seeds
    for name, over in rows.items():
        per_seed, secs = [], 0.0
        functional = over.get("func_weight", 0) > 0
        epochs = a.func_epochs if functional and a.func_epochs else a.epochs
        for s in a.seeds:
            cfg = TranslatorConfig(
                dim=a.dim,
                depth=a.depth,
                epochs=epochs,
                batch_size=a.batch_size,
                bank=a.bank,
                img_batch=a.img_batch,
                seed=s,
                eval_every=max(1, epochs // a.evals),
                **over,
            )
            t = time.perf_counter()
            tt, hist = train_translator(
                tr, va, spec, cfg, (x_tr, y_tr), (x_va, y_va), progress=False, bank_cache=banks
            )
            secs += time.perf_counter() - t
            per_seed.append(small_accuracy(te, tt.translate(te), x_te, y_te, skip).tolist())
            results["curves"].setdefault(name, []).append(hist)
            print(name, s, st.mean(per_seed[-1]), flush=True)
        results["rows"][name] = {"per_seed": per_seed, "train_seconds": secs / len(a.seeds), "epochs": epochs}
    results["rows"][TRAINED] = {"per_seed": [trained], "train_seconds": None}
    results["info"] = {
        "dataset": ds,
        "pairs": a.pairs,
        "n_all": len(pairs["seed"]),
        "n_train": len(tr["seed"]),
        "n_val": len(va["seed"]),
        "n_test": len(te["seed"]),
        "skip": skip,
        "schedule": manifest["schedule"],
        "generation_seconds": gen_s,
        "dim": a.dim,
        "depth": a.depth,
        "batch_size": a.batch_size,
        "seeds": a.seeds,
        "test_images": len(y_te),
        "translator_rows": list(rows),
    }
    md = render_md(results)
    r_mean, t_mean = st.mean(v for s in rnd for v in s), st.mean(trained)
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    stem = out.stem.replace("kt_table", "kt")
    fig, ax = plt.subplots(figsize=(5.5, 5.5))
    for name in ["random init", *rows]:
        per_net = [st.mean(v) for v in zip(*results["rows"][name]["per_seed"], strict=True)]
        ax.scatter(trained, per_net, label=name, s=14)
    ax.plot([0, 1], [0, 1], "k--", lw=0.8)
    ax.set(
        xlabel="directly trained small block acc",
        ylabel="translated acc (mean over translator seeds)",
        title=f"{len(te['seed'])} held-out test networks",
    )
    ax.legend(fontsize=6)
    fig.savefig(out.with_name(f"{stem}_scatter.png"), dpi=100, bbox_inches="tight")
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for name, hs in results["curves"].items():
        axes[0].plot(hs[0]["epoch"], hs[0]["loss"], label=name)
        axes[1].plot(hs[0]["epoch"], hs[0]["val_acc"], label=name)
    axes[1].axhline(r_mean, color="grey", ls=":", label="random init (test)")
    axes[1].axhline(t_mean, color="black", ls=":", label="trained small (test)")
    axes[0].set(xlabel="epoch", ylabel="training loss (seed 0)", yscale="log")
    axes[1].set(xlabel="epoch", ylabel="validation-network acc (seed 0)")
    axes[1].legend(fontsize=6)
    fig.savefig(out.with_name(f"{stem}_curves.png"), dpi=100, bbox_inches="tight")
    from kdforge.report.provenance import provenance, write_results

    cfg = {
        "pairs": a.pairs,
        "manifest": manifest,
        "epochs": a.epochs,
        "dim": a.dim,
        "depth": a.depth,
        "rows": {k: json.dumps(v, default=str) for k, v in rows.items()},
        "val_frac": a.val_frac,
        "test_frac": a.test_frac,
        "batch_size": a.batch_size,
        "func_epochs": a.func_epochs,
        "img_batch": a.img_batch,
        "bank": a.bank,
        "test_images": a.test_images,
        "evals": a.evals,
        "generation_seconds": gen_s,
    }
    results["provenance"] = provenance(cfg, seeds=a.seeds)
    write_results(out, results, "\n".join(md))
    print("\n".join(md))


if __name__ == "__main__":
    main()
