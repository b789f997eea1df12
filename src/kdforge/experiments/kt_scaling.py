"""The functional KT objective's learning curve: points' bookkeeping and their table.

A *point* is one translator configuration trained on the first N networks of a full pair set's
training networks plus large-only networks, with its per-seed, per-test-network accuracies
(``per_seed``), optionally also on fresh test networks (``fresh_test``). Everything the table shows
is derived from the results JSON alone by :func:`scaling_markdown` (the run settings it names come
from the JSON's provenance), so the table can be re-rendered without the pair sets.
"""

from __future__ import annotations

import statistics as st
from typing import Any

from kdforge.experiments.kt_protocol import pooled_lists, seed_stats, target_verdict
from kdforge.methods.translation.evaluate import ratio_interval

#: test accuracy at or below which a directly trained small block counts as dead (chance is 0.10)
DEAD = 0.11
#: translator settings of the first points, whose keys and labels name no variant
PLAIN = {"kind": "mixer", "dim": 48, "depth": 3}


def usual_epochs(s: dict[str, Any]) -> int:
    """Epochs of the points whose keys and labels name none: 40, and 20 with extra validation networks."""
    return 20 if s["extra_val_count"] else 40


def point_key(s: dict[str, Any], n_train: int) -> str:
    """Key of a point: its training networks, then every variant that differs from the first points."""
    k = f"{n_train}" + ("+align" if s["align"] else "") + (f"+drop{s['dropout']:g}" if s["dropout"] else "")
    k += f"+{s['kind']}" if s["kind"] != "mixer" else ""
    k += f"+d{s['dim']}x{s['depth']}" if (s["dim"], s["depth"]) != (48, 3) and s["kind"] == "mixer" else ""
    k += "+hperm" if s["hidden_perm"] else ""
    k += f"+hscale{s['hidden_scale']:g}" if s["hidden_scale"] else ""
    k += f"+ctx{s['context']}" if s["context"] else ""
    k += f"+val{s['extra_val_count']}" if s["extra_val_count"] else ""
    return k + (f"+ep{s['epochs']}" if s["epochs"] != usual_epochs(s) else "")


def point_label(s: dict[str, Any], n_full: int, n_extra: int, n_val: int) -> str:
    """Row label of a point: networks, then every variant that differs from the first points."""
    out = f"{n_full + n_extra} ({n_full} + {n_extra})"
    out += ", channels aligned" if s["align"] else ""
    if s["kind"] != "mixer" or (s["dim"], s["depth"]) != (48, 3):
        out += f", {s['kind']} translator (dim {s['dim']}, depth {s['depth']})"
    out += ", hidden channels reordered (aug.)" if s["hidden_perm"] else ""
    out += f", hidden channels rescaled (aug., {s['hidden_scale']:g})" if s["hidden_scale"] else ""
    out += f", {s['context']} context tokens (begin/last blocks)" if s["context"] else ""
    out += f", dropout {s['dropout']:g}" if s["dropout"] else ""
    out += f", {s['epochs']} epochs" if s["epochs"] != usual_epochs(s) else ""
    return out + (f", {n_val} validation networks" if s["extra_val_count"] else "")


def fill_point(p: dict, t_mean: float, r_mean: float) -> None:
    """A point's (or control's) statistics and ratios to the trained / random-init means."""
    p.update(seed_stats(p["per_seed"]))
    p.update(ratio_trained=p["mean"] / t_mean, ratio_random=p["mean"] / r_mean)


def fill_fresh(p: dict, ref: dict) -> None:
    """A point's fresh-test and pooled statistics, the pooled network-bootstrap CI and the alive ratio."""
    fr = ref["fresh_test"]
    n_split = ref["n_test"]
    r_split, r_fresh = (st.mean(v for s in r for v in s) for r in (ref["random"], fr["random"]))
    pooled_r = (n_split * r_split + fr["n"] * r_fresh) / (n_split + fr["n"])  # random seeds may differ
    trained = ref["trained"] + fr["trained"]
    lists = pooled_lists(p["per_seed"], p["fresh_test"]["per_seed"])
    fs, pooled = seed_stats(p["fresh_test"]["per_seed"]), seed_stats(lists)
    pooled.update(ratio_trained=pooled["mean"] / st.mean(trained), ratio_random=pooled["mean"] / pooled_r)
    pooled["ratio_trained_ci"] = list(ratio_interval(lists, trained)[1:])
    alive = [i for i, t in enumerate(trained) if t > DEAD]  # directly trained block not dead
    acc_alive = st.mean(s[i] for s in lists for i in alive)
    pooled["alive"] = {"n": len(alive), "ratio_trained": acc_alive / st.mean(trained[i] for i in alive)}
    p["fresh_test"].update(fs, ratio_trained=fs["mean"] / st.mean(fr["trained"]), pooled=pooled)


def sorted_points(results: dict) -> list[dict]:
    """Points in table order (unaligned first, then by training networks), statistics filled."""
    ref = results["reference"]
    t_mean, r_mean = st.mean(ref["trained"]), st.mean(v for s in ref["random"] for v in s)
    pts = sorted(results["points"].values(), key=lambda p: (p.get("align", False), p["n_train"]))
    for p in [*pts, *([results["control"]] if "control" in results else [])]:
        fill_point(p, t_mean, r_mean)
    for p in pts:
        if p.get("fresh_test") and "fresh_test" in ref:
            fill_fresh(p, ref)
    return pts


def _sets_desc(dirs: list[str | None], results: dict) -> str:
    """'`dir` (make-pairs seed S), then ...' from the sets' seeds recorded in ``set_seeds``."""
    seeds = results.get("set_seeds", {})
    out = [f"`{d}` (make-pairs seed {seeds.get(d, results.get('extra_seed', '?'))})" for d in dirs if d]
    return ", then ".join(out) or "none"


def _val(p: dict) -> str:
    """Mean best validation-network accuracy over seeds (what checkpoint selection saw), or '-'."""
    return f"{st.mean(p['best_val_acc']):.3f}" if p.get("best_val_acc") else "-"


def _gen(p: dict) -> str:
    """'X min (Y min)': generation of a point's networks in one process (split over two); records
    the seconds as ``generation_seconds`` (the KT table's merged rows show them)."""
    g = p.get("generation")
    if not g or g["full"]["untimed"] or (g["large_only"] or {}).get("untimed"):
        return "-"
    secs = g["full"]["seconds"] + (g["large_only"] or {}).get("seconds", 0.0)
    secs += (g.get("extra_val") or {}).get("seconds", 0.0)
    p["generation_seconds"] = secs
    return f"{secs / 60:.0f} min ({secs / 120:.0f} min)"


def _label(p: dict) -> str:
    if p.get("label"):
        return p["label"]
    out = f"{p['n_train']} ({p['n_full']} + {p['n_large_only']})"
    out += ", channels aligned" if p.get("align", False) else ""
    return out + (f", dropout {p['dropout']:g}" if p.get("dropout") else "")


def _intro(results: dict, pts: list[dict]) -> list[str]:
    c, ref = results["provenance"]["config"], results["reference"]
    m = c["manifest"]
    return [
        "# Functional KT objective: test accuracy vs number of training networks",
        "",
        f"Full pair set `{c['pairs']}` (schedule {m['schedule']}, seed {m['seed']}): its "
        f"{pts[0]['n_full'] if pts else '?'} training pairs, {ref['n_val']} validation and "
        f"{ref['n_test']} test networks (same split as kt_table.md). Extra training networks: "
        f"large-only (epochs_small=0) from {_sets_desc(c['extra'], results)}, first N in that order. "
        f"Extra validation networks (rows that say so): {_sets_desc([c['extra_val']], results)}. "
        f"Translator: Mixer dim={c['dim']}, depth={c['depth']} unless the row names another, functional "
        f"objective (CE+KL, correction of the best training pair's small block), {c['batch_size']} networks "
        f"per step, {c['img_batch']} of {c['bank']} bank images per network per step, seeds {c['seeds']}; "
        "checkpoint = best mean accuracy on the validation networks (test networks never used for "
        f"selection). Test accuracy on the first {c['test_images']} test images, each small block between "
        "its own network's frozen begin/last. mean ± std over all (test network, seed) values; seed std "
        "= std of per-seed means.",
        "",
        "| training networks (full + large-only) | epochs | test acc | seed std | / trained | / random "
        "| target >= 0.9 trained | val acc (selection) | generation, 1 process (2) | train time/seed "
        "| source |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]


def _point_line(p: dict, label: str) -> str:
    src = "measured" if p["source"] == "measured" else "imported"
    threads = f" ({p['threads']} threads)" if p.get("threads", 1) != 1 else ""
    return (
        f"| {label} | {p['epochs']} | {p['mean']:.3f} ± {p['std']:.3f} | {p['seed_std']:.3f} | "
        f"{p['ratio_trained']:.3f} | {p['ratio_random']:.2f} | "
        f"{'met' if p['ratio_trained'] >= 0.9 else 'missed'} | "
        f"{_val(p)} | {_gen(p)} | {p['train_seconds']:.0f} s{threads} | {src} |"
    )


def _reference_lines(ref: dict) -> list[str]:
    t_mean, r_mean = st.mean(ref["trained"]), st.mean(v for s in ref["random"] for v in s)
    out = [
        f"| reference: trained small block | - | {t_mean:.3f} | - | 1.00 | "
        f"{t_mean / r_mean:.2f} | - | - | - | - | stored pairs |"
    ]
    for name, key in (("template only", "template"), ("template only, channels aligned", "template_aligned")):
        if key in ref:
            m = st.mean(ref[key])
            out.append(
                f"| reference: {name} | - | {m:.3f} | - | {m / t_mean:.2f} | {m / r_mean:.2f} "
                "| - | - | - | - | - |"
            )
    out.append(
        f"| reference: random init | - | {r_mean:.3f} | - | {r_mean / t_mean:.2f} | 1.00 "
        "| - | - | - | - | - |"
    )
    return out


def _notes(results: dict, pts: list[dict]) -> list[str]:
    walls = "; ".join(
        f"{k}: {g['networks']} networks, {g['wall_seconds'] / 60:.1f} min wall, "
        f"{g['seconds'] / 60:.1f} process-min"
        for k, g in results["generation_sets"].items()
    )
    imported = "; ".join(f"{p['n_train']}: {p['source']}" for p in pts if p["source"] != "measured")
    return [
        "",
        "Generation = sum of the per-shard wall times of every network the point uses (all full pairs, "
        "incl. validation and test networks, + its large-only training networks + any extra "
        "validation networks), i.e. one process on this "
        "shared CPU; (2) = that split over two processes, as the sets were made. Measured set walls: "
        + walls
        + ".",
        "",
        "Imported points: " + (imported or "none") + ".",
    ]


def _fresh_section(results: dict) -> list[str]:
    """Markdown: points scored on the fresh test networks, alone and pooled with the split's."""
    ref, fr = results["reference"], results["reference"].get("fresh_test")
    pts = [(k, p) for k, p in results["points"].items() if p.get("fresh_test")]
    if not fr or not pts:
        return []
    n_split, n_all = ref["n_test"], ref["n_test"] + fr["n"]
    pooled_t = st.mean(ref["trained"] + fr["trained"])
    r_split, r_fresh = (st.mean(v for s in r for v in s) for r in (ref["random"], fr["random"]))
    pooled_r = (n_split * r_split + fr["n"] * r_fresh) / n_all
    md = [
        "",
        f"## Fresh test networks: {fr['n']} more, from `{fr['dir']}`",
        "",
        f"A separate full pair set (own make-pairs seed; {fr['generation']['seconds'] / 60:.0f} process-min "
        "to generate, not counted in the budget above: it only measures), never trained on nor used "
        f"for selection, scored with the same translators as the {n_split} split test networks. "
        f"Pooled = all {n_all} test networks (the primary measure: a standard error about "
        f"{(n_all / n_split) ** 0.5:.1f}x smaller than the split's networks alone). "
        "Ratios: to the mean trained small block of the same networks.",
        "",
        "| point | split test acc (/ trained) | fresh test acc (/ trained) | pooled test acc "
        "| pooled / trained [network-bootstrap 95% CI] | pooled / random "
        "| target >= 0.9 trained (pooled; met only if the CI's lower bound clears it) |",
        "|---|---|---|---|---|---|---|",
    ]
    for key, p in pts:
        f, pp = p["fresh_test"], p["fresh_test"]["pooled"]
        low, high = pp["ratio_trained_ci"]
        md.append(
            f"| `{key}` | {p['mean']:.3f} ({p['ratio_trained']:.3f}) | {f['mean']:.3f} ± {f['std']:.3f} "
            f"({f['ratio_trained']:.3f}) | {pp['mean']:.3f} ± {pp['std']:.3f} | "
            f"{pp['ratio_trained']:.3f} [{low:.3f}, {high:.3f}] | {pp['ratio_random']:.2f} | "
            f"{target_verdict(pp)} |"
        )
    alive = "; ".join(
        f"`{k}` {p['fresh_test']['pooled']['alive']['ratio_trained']:.3f} of trained "
        f"({p['fresh_test']['pooled']['alive']['n']} networks)"
        for k, p in pts
    )
    return [
        *md,
        f"| reference: trained small block | {st.mean(ref['trained']):.3f} | {st.mean(fr['trained']):.3f} | "
        f"{pooled_t:.3f} | 1.000 | {pooled_t / pooled_r:.2f} | - |",
        f"| reference: random init | {r_split:.3f} | {r_fresh:.3f} | {pooled_r:.3f} | "
        f"{pooled_r / pooled_t:.3f} | 1.00 | - |",
        "",
        "Dead trained blocks: direct training of the small block (the pair schedule) leaves some blocks "
        f"dead (accuracy <= {DEAD}, chance); they lower the trained mean the ratios divide by. Over the "
        f"pooled networks whose trained block is not dead only: {alive}.",
    ]


def scaling_markdown(results: dict) -> str:
    """The learning curve's markdown table, from its results JSON alone (fills the derived fields)."""
    pts = sorted_points(results)
    rows = [(p, _label(p)) for p in pts]
    if c := results.get("control"):
        rows.append((c, f"{c['n_train']} (control: {c['epochs']} epochs)"))
    md = _intro(results, pts) + [_point_line(p, label) for p, label in rows]
    md += _reference_lines(results["reference"]) + _notes(results, pts) + _fresh_section(results)
    return "\n".join(md)
