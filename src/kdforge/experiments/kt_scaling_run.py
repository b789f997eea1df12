"""Measuring points of the functional KT objective's learning curve (see :mod:`.kt_scaling`).

Extra *large-only* networks (``make-pairs --epochs-small 0``) join the training networks of a
full pair set; validation and test networks are the full set's (the library split). Each point
trains one translator per seed (a finished seed can be reused from a seed cache) and scores it on
the split's test networks and, optionally, on fresh test networks from a separate full pair set.
"""

from __future__ import annotations

import argparse
import json
import statistics as st
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from kdforge.errors import KdforgeError
from kdforge.experiments import kt_runs
from kdforge.experiments.kt_plots import scaling_curve, scaling_scatter
from kdforge.experiments.kt_protocol import TEMPLATE, TRAINED
from kdforge.experiments.kt_scaling import point_key, point_label, scaling_markdown, seed_stats, sorted_points
from kdforge.methods.translation.align import align_channels
from kdforge.methods.translation.pairs import HAS_SMALL, generation_time, load_pairs, merge_pair_sets
from kdforge.methods.translation.train import TranslatorConfig, template_index
from kdforge.report.results import save_results

#: the functional row of kt_table.json (an imported point)
ROW = "functional (CE+KL), Mixer"


def _arg(default, help: str = "", **kw):  # noqa: A002
    return field(default=default, metadata={"help": help, **kw})


@dataclass
class ScalingSettings:
    """Settings of one invocation (the benchmark's command-line options, stored as its config)."""

    pairs: str = _arg("runs/kt_pairs_noskip", "full pair set (train/val/test)")
    extra: list[str] = _arg(None, "large-only sets, in order", nargs="+")
    extra_val: str | None = _arg(None, "large-only set whose networks join validation")
    extra_val_count: int = _arg(0, "how many of --extra-val to use")
    extra_counts: list[int] = _arg(None, "extra networks per point", nargs="*")
    extra_test: str | None = _arg(None, "full pair set of fresh test networks, scored besides the split's")
    import_row: str | None = _arg(None, "kt_table JSON whose functional row is the 0 point")
    control: str | None = _arg(None, "kt_table JSON of a longer run on 0 extras")
    seeds: list[int] = _arg(None, "translator seeds", nargs="+")
    epochs: int = _arg(40)
    dim: int = _arg(48)
    depth: int = _arg(3)
    batch_size: int = _arg(16)
    img_batch: int = _arg(32)
    bank: int = _arg(512)
    evals: int = _arg(8)
    test_images: int = _arg(2000)
    align: bool = _arg(False, "align channels to the template network first")
    dropout: float = _arg(0.0, "translator dropout (a variant: own points)")
    kind: str = _arg("mixer", "translator kind (mixer, attention, mlp, set)")
    hidden_perm: bool = _arg(False, "augment: reorder large hidden channels")
    hidden_scale: float = _arg(0.0, "augment: rescale hidden channels")
    context: int = _arg(0, "context tokens from the begin/last blocks")
    out: str = _arg("benchmarks/results/kt_functional_scaling.json")
    seed_cache: str | None = _arg(None, "directory of finished seeds, reused by a later invocation")
    threads: int = _arg(1, "torch threads (1: several runs side by side)")

    def __post_init__(self) -> None:
        self.extra = self.extra if self.extra is not None else ["runs/kt_large_only"]
        self.extra_counts = self.extra_counts if self.extra_counts is not None else []
        self.seeds = self.seeds if self.seeds is not None else [0, 1, 2]


def import_point(path: str, trained: list[float], template: list[float]) -> dict:
    """The functional row of an earlier kt_table JSON as a point, after checking its test networks.

    Raises:
        KdforgeError: when its trained or template accuracies differ from this split's.
    """
    old = json.loads(Path(path).read_text())
    rows = old["rows"]
    for name, mine in ((TRAINED, trained), (TEMPLATE, template)):
        if (
            name in rows
            and max(abs(a - b) for a, b in zip(rows[name]["per_seed"][0], mine, strict=True)) >= 1e-6
        ):
            raise KdforgeError(
                f"{path}: test networks differ from this pair set's", "measure the point instead"
            )
    r = rows[ROW]
    return {
        "per_seed": r["per_seed"],
        "epochs": r["epochs"],
        "train_seconds": r["train_seconds"],
        "source": f"imported from {path} (same test networks: trained and template accuracies equal)",
        "command": old["provenance"]["command"],
    }


def extra_generation(dirs: list[str], n: int, shard_size: int) -> dict:
    """Generation cost of the first ``n`` large-only networks taken in order from ``dirs``."""
    total = {"shards": 0, "networks": 0, "seconds": 0.0, "wall_seconds": 0.0, "untimed": 0}
    for d in dirs:
        take = min(n, generation_time(d)["networks"])
        if take:
            g = generation_time(d, -(-take // shard_size))
            total = {k: total[k] + g[k] for k in total}
        n -= take
    return total


def _fresh_test(
    s: ScalingSettings, split: kt_runs.KtSplit, results: dict, ref_net: dict | None
) -> dict | None:
    """Load ``extra_test`` (aligned like the split when ``ref_net``) and store its reference accuracies."""
    if not s.extra_test:
        return None
    fresh, _ = load_pairs(s.extra_test, split.spec)
    if not bool(fresh[HAS_SMALL].all()):
        raise KdforgeError(
            f"{s.extra_test}: large-only networks have no trained small block to compare with",
            "make the fresh test set with --epochs-small > 0",
        )
    fresh = align_channels(fresh, ref_net) if ref_net is not None else fresh
    results["reference"]["fresh_test"] = {
        "dir": s.extra_test,
        "n": len(fresh["seed"]),
        "generation": generation_time(s.extra_test),
        "trained": kt_runs.accuracy(split, fresh, kt_runs.small_blocks(fresh)),
        "random": kt_runs.random_accuracies(split, fresh, s.seeds),
    }
    return fresh


def _translator_config(s: ScalingSettings, seed: int) -> TranslatorConfig:
    return TranslatorConfig(
        dim=s.dim,
        depth=s.depth,
        epochs=s.epochs,
        batch_size=s.batch_size,
        bank=s.bank,
        img_batch=s.img_batch,
        seed=seed,
        eval_every=max(1, s.epochs // s.evals),
        mse_weight=0.0,
        func_weight=1.0,
        template=True,
        dropout=s.dropout,
        kind=s.kind,
        hidden_perm=s.hidden_perm,
        hidden_scale=s.hidden_scale,
        context=s.context,
    )


def measure_seed(
    s: ScalingSettings, split: kt_runs.KtSplit, nets: dict, seed: int, banks: dict, command: str
) -> dict:
    """Train one translator (``nets``: train/val/test/fresh networks) and score it: the seed's record."""
    tt, hist, seconds = kt_runs.train_and_score(
        split, _translator_config(s, seed), nets["train"], nets["val"], banks, progress=True
    )
    r = {
        "test_acc": kt_runs.accuracy(split, nets["test"], tt.translate(nets["test"])),
        "best_val_acc": hist["best_val_acc"],
        "curve": {"epoch": hist["epoch"], "val_acc": hist["val_acc"], "loss": hist["loss"]},
    }
    if (fresh := nets.get("fresh")) is not None:
        r["fresh_test_acc"] = kt_runs.accuracy(split, fresh, tt.translate(fresh))
    return {**r, "seconds": seconds, "command": command}


def measure_point(
    s: ScalingSettings, split: kt_runs.KtSplit, nets: dict, key: str, banks: dict, command: str
) -> dict:
    """Every seed of one point, each reused from the seed cache when finished there (on the same fresh
    test set): the point's per-seed lists, mean training seconds and commands."""
    per_seed, fresh = [], nets.get("fresh")
    n_fresh = None if fresh is None else len(fresh["seed"])
    for seed in s.seeds:
        cached = Path(s.seed_cache, key, f"seed{seed}.json") if s.seed_cache else None
        r = json.loads(cached.read_text()) if cached and cached.exists() else None
        if r is None or (n_fresh is not None and len(r.get("fresh_test_acc") or []) != n_fresh):
            r = measure_seed(s, split, nets, seed, banks, command)
            if cached:
                cached.parent.mkdir(parents=True, exist_ok=True)
                cached.write_text(json.dumps(r))
        print(key, seed, st.mean(r["test_acc"]), f"{r['seconds']:.0f}s", flush=True)
        per_seed.append(r)
    point = {
        "per_seed": [r["test_acc"] for r in per_seed],
        "best_val_acc": [r["best_val_acc"] for r in per_seed],
        "curves": [r["curve"] for r in per_seed],
        "train_seconds": sum(r["seconds"] for r in per_seed) / len(per_seed),
        "seed_commands": [r["command"] for r in per_seed],
    }
    if fresh is not None:
        point["fresh_test"] = {"dir": s.extra_test, "per_seed": [r.get("fresh_test_acc") for r in per_seed]}
    return point


def _template(split: kt_runs.KtSplit, train: dict) -> dict:
    """The functional rows' template for every test network, chosen on validation images."""
    return kt_runs.template_blocks(train, len(split.test["seed"]), split.val_images, split.spec.small_skip)


def _references(s: ScalingSettings, split: kt_runs.KtSplit, results: dict) -> None:
    te = split.test
    results["reference"] = {
        **results.get("reference", {}),  # keeps template_aligned from an earlier --align run
        "trained": kt_runs.accuracy(split, te, kt_runs.small_blocks(te)),
        "template": kt_runs.accuracy(split, te, _template(split, split.train)),
        "random": kt_runs.random_accuracies(split, te, s.seeds),
        "n_val": len(split.val["seed"]),
        "n_test": len(te["seed"]),
    }


def _imports(s: ScalingSettings, results: dict, n_full: int) -> None:
    ref = results["reference"]
    if s.import_row:
        point = import_point(s.import_row, ref["trained"], ref["template"])
        results["points"][str(n_full)] = {**point, "n_train": n_full, "n_full": n_full, "n_large_only": 0}
    if s.control:
        c = import_point(s.control, ref["trained"], ref["template"])
        results["control"] = {**c, "n_train": n_full, **seed_stats(c["per_seed"])}


def _large_only(
    s: ScalingSettings, split: kt_runs.KtSplit, ref_net: dict | None
) -> tuple[dict | None, dict | None]:
    """The large-only sets merged in order (aligned like the split), when any point needs them, and
    the first set's manifest."""
    if any(s.extra_counts):
        loaded = [load_pairs(d, split.spec) for d in s.extra]
        extra = merge_pair_sets(*loaded)
        return (align_channels(extra, ref_net) if s.align else extra), loaded[0][1]
    manifest = Path(s.extra[0], "manifest.json")
    return None, (json.loads(manifest.read_text()) if manifest.exists() else None)


def _extra_validation(
    s: ScalingSettings, split: kt_runs.KtSplit, val: dict, ref_net: dict | None
) -> tuple[dict, dict | None]:
    """Validation networks plus the first ``extra_val_count`` of ``extra_val`` (steadier checkpoint
    selection; test untouched), and those extra networks' generation time."""
    if not s.extra_val_count:
        return val, None
    xv, xv_manifest = load_pairs(s.extra_val, split.spec)
    xv = {k: v[: s.extra_val_count] for k, v in xv.items()}
    xv = align_channels(xv, ref_net) if s.align else xv
    val = merge_pair_sets((val, split.manifest), (xv, xv_manifest))
    return val, generation_time(s.extra_val, -(-s.extra_val_count // xv_manifest["shard_size"]))


def run_scaling(s: ScalingSettings, results: dict, command: str) -> tuple[dict, dict, dict | None]:
    """Measure the points ``s.extra_counts`` into ``results`` (earlier points kept).

    Returns:
        ``(results, manifest, extra_manifest)``: the full and the first large-only set's manifests.

    Raises:
        KdforgeError: too few large-only networks, or a fresh or imported set that does not fit.
    """
    split = kt_runs.load_split(s.pairs, s.test_images)
    results.setdefault("points", {})
    _references(s, split, results)
    tr, va, te = split.train, split.val, split.test
    n_full, ref_net = len(tr["seed"]), None
    if s.align:  # every network's channels in the template network's order (parameters only)
        best = template_index(tr, *split.val_images, split.spec.small_skip)  # chosen on validation images
        ref_net = {k: v[best : best + 1] for k, v in tr.items()}
        tr, va, te = (align_channels(d, ref_net) for d in (tr, va, te))
        results["reference"]["template_aligned"] = kt_runs.accuracy(split, te, _template(split, tr))
    _imports(s, results, n_full)
    fresh = _fresh_test(s, split, results, ref_net)
    extra, extra_manifest = _large_only(s, split, ref_net)
    va, gen_val = _extra_validation(s, split, va, ref_net)
    banks: dict = {}
    for n_extra in s.extra_counts:
        train = tr
        if n_extra:
            if n_extra > len(extra["seed"]):
                raise KdforgeError(
                    f"only {len(extra['seed'])} large-only networks in {s.extra}, asked {n_extra}",
                    "generate more large-only networks or ask for fewer",
                )
            train = merge_pair_sets(
                (tr, split.manifest), ({k: v[:n_extra] for k, v in extra.items()}, extra_manifest)
            )
        banks = {"val": banks["val"]} if "val" in banks else {}  # the val bank is the same for all points
        key = point_key(asdict(s), n_full + n_extra)
        nets = {"train": train, "val": va, "test": te, "fresh": fresh}
        point = measure_point(s, split, nets, key, banks, command)
        gen_extra = extra_generation(s.extra, n_extra, extra_manifest["shard_size"]) if n_extra else None
        settings = {
            k: getattr(s, k) for k in ("kind", "dim", "depth", "hidden_perm", "hidden_scale", "context")
        }
        results["points"][key] = {
            "generation": {"full": generation_time(s.pairs), "large_only": gen_extra, "extra_val": gen_val},
            "label": point_label(asdict(s), n_full, n_extra, len(va["seed"])),
            "n_val": len(va["seed"]),
            **settings,
            "align": s.align,
            "dropout": s.dropout,
            **point,
            "epochs": s.epochs,
            "threads": s.threads,
            "n_train": n_full + n_extra,
            "n_full": n_full,
            "n_large_only": n_extra,
            "source": "measured",
            "command": command,
        }
    return results, split.manifest, extra_manifest


def record_sets(results: dict, s: ScalingSettings, manifest: dict, extra_manifest: dict | None) -> None:
    """What the table reads from the pair sets on disk: every set's generation time and make-pairs
    seed, and the generation of points measured before shards recorded their timing."""
    sets = {"full": Path(s.pairs), **{Path(d).name: Path(d) for d in s.extra}}
    if s.extra_val:
        sets[Path(s.extra_val).name] = Path(s.extra_val)
    for p in results["points"].values():
        if "generation" not in p and all(d.exists() for d in sets.values()):
            n_lo, size = p["n_large_only"], (extra_manifest or manifest)["shard_size"]
            g = {
                "full": generation_time(sets["full"]),
                "large_only": generation_time(s.extra[0], -(-n_lo // size)) if n_lo else None,
                "note": "from the regenerated pair sets (same commands and seeds)",
            }
            if (g["large_only"] or {}).get("networks", n_lo) >= n_lo:  # those shards exist now
                p["generation"] = g
    results["generation_sets"] = {
        **results.get("generation_sets", {}),
        **{k: generation_time(d) for k, d in sets.items() if d.exists()},
    }
    manifests = [Path(d, "manifest.json") for d in [*s.extra, s.extra_val] if d]
    seeds = {str(m.parent): json.loads(m.read_text())["seed"] for m in manifests if m.exists()}
    results["set_seeds"] = {**results.get("set_seeds", {}), **seeds}


def settings_parser(description: str) -> argparse.ArgumentParser:
    """A parser with one ``--option`` per :class:`ScalingSettings` field (its help, nargs and type)."""
    ap = argparse.ArgumentParser(description=description)
    types = {"int": int, "float": float, "list[int]": int}
    for f in fields(ScalingSettings):
        flag, extra = "--" + f.name.replace("_", "-"), {k: v for k, v in f.metadata.items() if k != "help"}
        if f.type == "bool":
            ap.add_argument(flag, action="store_true", help=f.metadata["help"])
        else:
            typ = types.get(str(f.type), str)
            ap.add_argument(flag, type=typ, default=f.default, help=f.metadata["help"], **extra)
    return ap


def run_and_save(s: ScalingSettings, command: str) -> str:
    """Measure ``s.extra_counts``, merge them into ``s.out`` (points written meanwhile by parallel
    invocations kept), write JSON + markdown with provenance and the PNGs. Returns the markdown."""
    out = Path(s.out)
    results = json.loads(out.read_text()) if out.exists() else {"points": {}}
    results, manifest, extra_manifest = run_scaling(s, results, command)
    if out.exists():  # another invocation may have written points meanwhile (parallel runs): keep them
        results["points"] = {**json.loads(out.read_text())["points"], **results["points"]}
    record_sets(results, s, manifest, extra_manifest)
    config = {**asdict(s), "manifest": manifest, "extra_manifest": extra_manifest}
    text = save_results(out, results, scaling_markdown, config, s.seeds)
    points = sorted_points(results)
    scaling_curve(results, points, out)
    scaling_scatter(points, results["reference"], out)
    return text
