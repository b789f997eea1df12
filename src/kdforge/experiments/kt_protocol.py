"""Knowledge Translation benchmark protocol: statistics, target verdicts and the quality table.

The KT quality table (``benchmarks/kt_table.py``) scores translators on held-out test networks;
its rows keep per-seed, per-network accuracies (``per_seed``: [seeds][networks]) and every
figure of the table is derived from those lists by :func:`table_markdown`, so the table can be
re-rendered from its JSON alone. A point of the learning curve (``kt_functional_scaling``) joins
the table as a row through :func:`merge_scaling_point`; a converged reference (the same test
networks' small blocks trained to a validation plateau, :mod:`.kt_converged`) adds a second ratio
and verdict to every row.
"""

from __future__ import annotations

import json
import statistics as st
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from kdforge.errors import KdforgeError
from kdforge.methods.translation.evaluate import ratio_interval
from kdforge.report.provenance import provenance, write_results

#: row of the directly trained small blocks (the upper bound the ratios divide by)
TRAINED = "trained small block (upper bound)"
RANDOM = "random init"
TEMPLATE = "template only (best training pair's small block)"
#: row of the same test networks' small blocks trained until their validation accuracy plateaus
CONVERGED = "converged small block (reference)"
REFERENCES = (TRAINED, CONVERGED)
#: the issue's targets: translated >= TARGET_TRAINED x trained and >= TARGET_RANDOM x random init
TARGET_TRAINED = 0.9
TARGET_RANDOM = 2.0


def mean_std_text(values: Sequence[float]) -> str:
    """``'0.123 ± 0.045'`` (std 0 for a single value)."""
    return f"{st.mean(values):.3f} ± {st.stdev(values) if len(values) > 1 else 0.0:.3f}"


def seed_stats(per_seed: Sequence[Sequence[float]]) -> dict[str, Any]:
    """Mean and std over all (seed, network) values, the std of per-seed means and those means."""
    flat = [v for s in per_seed for v in s]
    means = [st.mean(s) for s in per_seed]
    return {
        "mean": st.mean(flat),
        "std": st.stdev(flat) if len(flat) > 1 else 0.0,
        "seed_std": st.stdev(means) if len(means) > 1 else 0.0,
        "seed_means": means,
    }


def pooled_lists(split: Sequence[Sequence[float]], fresh: Sequence[Sequence[float]]) -> list[list[float]]:
    """Per seed: accuracies on the split's test networks followed by those on fresh test networks."""
    return [[*a, *b] for a, b in zip(split, fresh, strict=True)]


def target_verdict(r: dict | None, ratio: str = "ratio_trained") -> str:
    """The targets (>= 0.9 of trained, >= 2x random) on a row or point: met / not distinguishable / missed.

    With a network-bootstrap interval (``<ratio>_ci``) "met" needs its lower bound >= 0.9 and
    "missed" its upper bound < 0.9; without one, the point estimate decides.

    Args:
        ratio: The ratio to a reference that is judged: ``ratio_trained`` (the pair set's 2-epoch
            blocks) or ``ratio_converged`` (the converged reference).
    """
    if not r:
        return "missed"
    low, high = r.get(f"{ratio}_ci") or (r[ratio], r[ratio])
    if r["ratio_random"] < TARGET_RANDOM or high < TARGET_TRAINED:
        return "missed"
    return "met" if low >= TARGET_TRAINED else "not distinguishable"


def meets_targets(r: dict | None) -> bool:
    """Whether :func:`target_verdict` says "met"."""
    return target_verdict(r) == "met"


def _header(i: dict, converged: dict | None = None) -> list[str]:
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
    if converged is None:
        return md
    r, s = converged["rule"], converged["summary"]
    md[-4] += (
        f" '/ converged' divides by the converged reference instead: the same test networks rebuilt "
        f"from their seeds, each small block trained on until its accuracy on {r['val_images']} "
        f"validation images stopped rising ({r['patience']} epochs without a new best, at most "
        f"{r['max_epochs']} epochs; best-validation state kept; {s['epochs_mean']:.1f} epochs on "
        f"average), `{converged['source']}`; its CI resamples test networks with each network's row "
        "values and converged accuracy together. The targets are judged against both references."
    )
    md[-2] = (
        "| row | epochs | test acc | seed std | / trained | 95% CI | / converged | 95% CI | / random "
        "| targets vs trained | targets vs converged | #train pairs | gen. time (all pairs) "
        "| train time/seed |"
    )
    md[-1] = "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"
    return md


def table_rows(results: dict) -> None:
    """Fill every row of a KT table with mean/std/seed std, ratios, their 95% CI and ``meets_targets``.

    Merged rows scored on fresh test networks too get the pooled interval (``ratio_trained_ci`` of
    their ``fresh_test.pooled``), so that verdict is the interval's as well.
    """
    rows, trained = results["rows"], results["rows"][TRAINED]["per_seed"][0]
    converged = results.get("converged", {}).get("per_network")
    r_mean = st.mean(v for s in rows[RANDOM]["per_seed"] for v in s)
    t_mean = st.mean(trained)
    for row in rows.values():
        flat = [v for s in row["per_seed"] for v in s]
        stats = seed_stats(row["per_seed"])
        row.update(
            mean=stats["mean"],
            std=stats["std"],
            seed_std=stats["seed_std"],
            ratio_trained=st.mean(flat) / t_mean,
            ratio_random=st.mean(flat) / r_mean,
            ratio_trained_ci=list(ratio_interval(row["per_seed"], trained)[1:]),
        )
        if converged:
            ratio, low, high = ratio_interval(row["per_seed"], converged)
            row.update(ratio_converged=ratio, ratio_converged_ci=[low, high])
        row["meets_targets"] = meets_targets(row)
    for name, m in results.get("merged", {}).items():
        f = m.get("fresh_test")
        if f and "per_seed" in f:  # per-network lists kept: the pooled network-bootstrap interval
            pooled = pooled_lists(rows[name]["per_seed"], f["per_seed"])
            f["pooled"]["ratio_trained_ci"] = list(ratio_interval(pooled, trained + f["trained"])[1:])


def _row_line(name: str, row: dict, info: dict, translators: list[str]) -> str:
    gen_min = info["generation_seconds"] / 60
    flat = [v for s in row["per_seed"] for v in s]
    verdict = target_verdict(row) if name in translators else "-"
    low, high = row["ratio_trained_ci"]
    ratios = f"{row['ratio_trained']:.3f} | [{low:.3f}, {high:.3f}] | "
    if "ratio_converged" in row:  # a converged reference: its ratio, interval and verdict too
        c_low, c_high = row["ratio_converged_ci"]
        ratios += f"{row['ratio_converged']:.3f} | [{c_low:.3f}, {c_high:.3f}] | "
        verdict += f" | {target_verdict(row, 'ratio_converged') if name in translators else '-'}"
    ts = "-" if row["train_seconds"] is None else f"{row['train_seconds']:.0f} s"
    ts += f" ({row['threads']} threads)" if row.get("threads", 1) != 1 else ""
    gen = row.get("generation", f"{gen_min:.1f} min")
    return (
        f"| {name} | {row.get('epochs', '-')} | {mean_std_text(flat)} | {row['seed_std']:.3f} | "
        f"{ratios}{row['ratio_random']:.2f} | {verdict} | "
        f"{row.get('n_train', info['n_train'])} | {gen} | {ts} |"
    )


def _merged_notes(results: dict) -> list[str]:
    md = []
    n_split = len(results["rows"][TRAINED]["per_seed"][0])
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
            pl = f["pooled"]
            ci = pl.get("ratio_trained_ci")
            ci_text = f" (95% CI [{ci[0]:.3f}, {ci[1]:.3f}] over test networks)" if ci else ""
            md.append(
                f"The same translators on {f['n']} fresh test networks (`{f['dir']}`, never trained on or "
                f"used for selection): {f['mean']:.3f} ± {f['std']:.3f} = {f['ratio_trained']:.3f} of their "
                f"trained blocks; pooled over all {f['n'] + n_split} test networks (the primary measure): "
                f"{pl['mean']:.3f} ± {pl['std']:.3f} = **{pl['ratio_trained']:.3f} of trained**{ci_text}, "
                f"{pl['ratio_random']:.2f}x random init (targets >= 0.9 and >= 2x: {target_verdict(pl)})."
            )
    return md


def table_markdown(results: dict) -> str:
    """The markdown KT table of ``results`` (``rows`` + ``info`` [+ ``merged``]).

    Fills each row's derived fields first (:func:`table_rows`), so every verdict, including the
    pooled one of a merged row, is taken on its network-bootstrap interval.
    """
    info = results["info"]
    table_rows(results)
    translators = [*info["translator_rows"], *results.get("merged", {})]
    md = _header(info, results.get("converged"))
    md += [_row_line(name, row, info, translators) for name, row in results["rows"].items()]
    met = [n for n in translators if results["rows"][n]["meets_targets"]]
    md += [
        "",
        f"Targets met on the split's test networks by: {', '.join(met) if met else 'no translator row'}.",
    ]
    merged = results.get("merged", {}).items()
    pooled = [n for n, m in merged if meets_targets(m.get("fresh_test", {}).get("pooled"))]
    if pooled:  # rows also scored on fresh test networks (see their notes below)
        md[-1] += f" Met on the pooled test networks (split + fresh) by: {', '.join(pooled)}."
    if "converged" in results:
        met_c = [n for n in translators if target_verdict(results["rows"][n], "ratio_converged") == "met"]
        md[-1] += f" Against the converged reference: {', '.join(met_c) if met_c else 'no translator row'}."
    return "\n".join(md + _merged_notes(results) + _converged_note(results))


def _converged_note(results: dict) -> list[str]:
    c = results.get("converged")
    if not c:
        return []
    s = c["summary"]
    return [
        f"\nConverged reference from `{c['source']}` (its command `{c['command']}`, date {c['date']}, "
        f"commit {c['git_commit']}): {s['converged']:.3f} mean test accuracy, x{s['uplift']:.3f} the "
        f"regenerated 2-epoch blocks ({s['regenerated_2epoch']:.3f}; the stored ones: "
        f"{s['stored_2epoch']:.3f}, identical on {s['identical_2epoch']} of {s['n']} networks, max |diff| "
        f"{s['max_abs_diff_2epoch']:.3f}: see that file). The fresh test networks of merged rows have no "
        "converged reference, so pooled ratios are to the 2-epoch blocks only."
        + (
            " This table's pair set was itself regenerated: its trained row equals the converged "
            "file's regenerated 2-epoch blocks on every test network, so each converged block is "
            "paired with its own network."
            if c.get("paired_with") == "regenerated"
            else ""
        )
    ]


def _same_accuracies(pairs: list[tuple[Sequence[float], Sequence[float]]]) -> bool:
    return all(
        len(x) == len(y) and max(abs(u - v) for u, v in zip(x, y, strict=True)) < 1e-6 for x, y in pairs
    )


def scaling_row_name(point: dict) -> str:
    """The KT table's row name of a learning-curve point (its stored label, or built for old points)."""
    if point.get("label"):  # written with every variant of the point
        return (
            f"functional (CE+KL), Mixer unless named, training networks (full + large-only) {point['label']}"
        )
    return (  # points measured before labels were stored
        f"functional (CE+KL), Mixer, {point['n_train']} networks ({point['n_full']} full + "
        f"{point['n_large_only']} large-only){', channels aligned' if point.get('align') else ''}"
        + (f", translator dropout {point['dropout']:g}" if point.get("dropout") else "")
    )


def merge_scaling_point(results: dict, scaling: dict, source: str, key: str, merge_record: dict) -> str:
    """Add point ``key`` of a learning-curve results dict to a KT table as a row (no training).

    Args:
        results: The KT table's results (changed in place); its ``info`` must be present.
        scaling: The learning curve's results (``points``, ``reference``, ``provenance``).
        source: Where ``scaling`` was read from (named in the row's note).
        key: The point's key in ``scaling["points"]``.
        merge_record: Provenance of the merge itself.

    Returns:
        The new row's name.

    Raises:
        KdforgeError: for an unknown point, or when the point scored other test networks.
    """
    if key not in scaling["points"]:
        raise KdforgeError(f"no point '{key}' in {source}", f"pick one of {sorted(scaling['points'])}")
    ref, rows = scaling["reference"], results["rows"]
    pairs = [(rows[TRAINED]["per_seed"][0], ref["trained"])]
    pairs += list(zip(rows[RANDOM]["per_seed"], ref["random"], strict=True))
    if not _same_accuracies(pairs):
        raise KdforgeError(
            f"{source} scored other test networks than the table",
            "merge only points measured on the same pair set and split",
        )
    p, sc, sp = scaling["points"][key], scaling["provenance"]["config"], scaling["provenance"]
    name = scaling_row_name(p)
    for old, m in list(results.get("merged", {}).items()):  # merging a point again replaces its row
        if m["point"] == key:
            del results["merged"][old], rows[old]
    gen = p.get("generation_seconds")
    references = {n: rows.pop(n) for n in REFERENCES if n in rows}  # keep the references last
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
    rows.update(references)
    results.setdefault("merged", {})[name] = {
        "source": source,
        "point": key,
        "command": p.get("command", sp["command"]),
        "date": sp["date"],
        "git_commit": sp["git_commit"],
        "merge": merge_record,
    }
    if "pooled" in p.get("fresh_test", {}):  # the same translators on fresh test networks too
        f = {k: v for k, v in p["fresh_test"].items() if k != "seed_means"}
        fresh_trained = ref["fresh_test"]["trained"]
        results["merged"][name]["fresh_test"] = {**f, "n": len(f["per_seed"][0]), "trained": fresh_trained}
    return name


def merge_scaling_file(out: str | Path, source: str, point: str) -> str:
    """Add point ``point`` of the learning-curve file ``source`` to the KT table file ``out`` as a row.

    No training: the table's JSON and markdown are rewritten (the merge's own provenance kept in the
    row's note). Returns the markdown.
    """
    out = Path(out)
    results, scaling = json.loads(out.read_text()), json.loads(Path(source).read_text())
    if "info" not in results and point in scaling["points"]:  # tables written before info was stored
        ref, n_full = scaling["reference"], scaling["points"][point]["n_full"]
        results["info"] = info_from_provenance(results, n_full, ref["n_val"], ref["n_test"])
    merge_scaling_point(
        results, scaling, source, point, provenance({"merge_scaling": source, "point": point})
    )
    write_results(out, results, table_markdown(results))
    return table_markdown(results)


def info_from_provenance(results: dict, n_train: int, n_val: int, n_test: int) -> dict:
    """The header facts of a KT table written before tables stored them: from its provenance and
    its split's network counts (e.g. a learning-curve point's ``n_full`` and reference)."""
    c = results["provenance"]["config"]
    return {
        "dataset": c["manifest"]["dataset"],
        "pairs": c["pairs"],
        "n_all": n_train + n_val + n_test,
        "n_train": n_train,
        "n_val": n_val,
        "n_test": n_test,
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
