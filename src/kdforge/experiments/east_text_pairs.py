"""EAsT / EC on text pairs where the frozen MiniLM teacher should know more than a small student.

Teacher: all-MiniLM-L6-v2's cached mean-pooled sentence embedding (D = 384). Student ``text_cnn``
trained from scratch on one small VADER domain; the other VADER domains (same binary labels) are
unseen sets, scored without further training. A logistic-regression probe on the teacher embedding
checks (on validation) that the teacher holds more than the student baseline; the rows follow
:func:`kdforge.experiments.east_protocol.run_protocol`.
"""

from __future__ import annotations

import json
import statistics
from pathlib import Path
from typing import Any

from kdforge.config import load_recipe
from kdforge.data.text import vader_all
from kdforge.experiments import east_protocol as east
from kdforge.experiments import east_text_finetune as finetune
from kdforge.experiments.east_grid import EastGrid, lambda_grid_text
from kdforge.experiments.scoring import model_accuracy
from kdforge.report.tables import markdown_table, mean_std

PAIRS = {  # pair -> (title, training dataset, baseline recipe, EC recipe, unseen VADER domains)
    "tweets": (
        "MiniLM -> text-CNN, VADER tweets",
        "vader_tweets",
        "vader_tweets_baseline.yaml",
        "vader_tweets_ec.yaml",
        ("movies", "amazon", "nyt"),
    ),
    "amazon": (
        "MiniLM -> text-CNN, VADER Amazon reviews",
        "vader_amazon",
        "vader_amazon_baseline.yaml",
        "vader_amazon_ec.yaml",
        ("tweets", "movies", "nyt"),
    ),
}


def probe_rows(pair: str, configs: Path, seeds: list[int]) -> list[dict[str, Any]]:
    """Per seed, the linear probe's validation accuracy on the teacher embedding of the training split."""
    _, base, _, ec, _ = PAIRS[pair]
    rows = []
    for seed in seeds:
        labels, acc = east.probe_val_accuracy(load_recipe(configs / ec, [f"seed={seed}"]), base, seed)
        rows.append({"pair": pair, "seed": seed, "labels": labels, "probe_val_acc": acc})
    return rows


def run_pair(pair: str, grid: EastGrid, configs: Path, output_dir: str, reuse: list[str]) -> dict[str, Any]:
    """The probe, then every row of the pair (runs of the ``reuse`` results files with identical overrides
    are taken instead of training again): the results file's body."""
    _, _, baseline, ec, domains = PAIRS[pair]
    probe = probe_rows(pair, configs, grid.seeds)
    unseen = {d: vader_all(d) for d in domains}
    score = lambda student: {f"unseen_{d}": model_accuracy(student, data) for d, data in unseen.items()}  # noqa: E731
    runner = east.SettingRunner(pair, configs, output_dir, score, grid.every_run, grid.teacher_runs, ec)
    reused = [json.loads(Path(f).read_text()) for f in reuse]
    runner.reuse = [x for old in reused for x in old["runs"]]
    r = east.run_protocol(runner, baseline, grid.lams, grid.ds, grid.d_select, grid.seeds, grid.select_seeds)
    verdict = east.verdict(r["table"], [f"unseen_{d}" for d in domains])
    res = {
        "runs": [x for rows in r["all_runs"].values() for x in rows],
        "probe": probe,
        "pair": {"chosen_lam": r["chosen_lam"], "val_grid": r["val_grid"], "verdict": verdict},
    }
    if reused:  # where the reused runs were trained
        res["reused_provenance"] = [old["provenance"] for old in reused]
    return res


def add_finetune(res: dict[str, Any], section: dict[str, Any]) -> dict[str, Any]:
    """``res`` with the fine-tuned-teacher section added as ``teacher_finetuned``.

    ``section``: :func:`kdforge.experiments.east_text_finetune.run_finetune`'s result plus its own
    ``provenance``; the verdict's EC row against it (paired by seed) is added to it.

    Everything else in ``res`` (rows, provenance) is left as it is.
    """
    domains = PAIRS[res["provenance"]["config"]["pair"]][4]
    ec_row = res["pair"]["verdict"]["ec_row_by_val"]
    ft_rows = finetune.chosen_runs(section)
    versus = finetune.versus_ec(pair_table(res)[ec_row], ft_rows, [f"unseen_{d}" for d in domains])
    return {**res, "teacher_finetuned": {**section, "versus_ec": versus}}


def pair_table(res: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    """Row label -> per-seed runs, rebuilt from a results dict."""
    args = res["provenance"]["config"]
    return east.table_from_runs(
        res["runs"], args["pair"], res["pair"]["chosen_lam"], args["ds"], args["seeds"]
    )


def _verdict_text(v: dict[str, Any], noise: float) -> str:
    small = v["generalises_better"] and max(v["unseen_gain_over"].values()) < noise
    gains = ", ".join(f"{k} {g:+.2f}" for k, g in v["test_gain_over"].items())
    ugains = ", ".join(f"{k} {g:+.2f}" for k, g in v["unseen_gain_over"].items())
    return (
        f"Verdict: EC row chosen on validation = **{v['ec_row_by_val']}**; test gain over {gains}; "
        f"unseen-mean gain over {ugains}. Target (>= 1.0 test point over the baseline and both EAsT rows) "
        f"**{'met' if v['met'] else 'missed'}** on this pair; unseen sets "
        f"**{'better' if v['generalises_better'] else 'not better than all three'}** (mean over domains)"
        + (
            f", but by less than the seed std of the unseen mean ({noise:.2f}): not a clear gain."
            if small
            else "."
        )
    )


def pair_markdown(res: dict[str, Any]) -> str:
    """The table, the lambda grid, the probe check and the verdict of one pair, from a results dict alone."""
    args, summary, probe = res["provenance"]["config"], res["pair"], res["probe"]
    title, base, _, _, domains = PAIRS[args["pair"]]
    cols = [f"unseen_{d}" for d in domains]
    table = pair_table(res)
    select = args.get("select_seeds") or args["seeds"]
    options = [(args.get("set"), "every run overridden with"), (args.get("set_teacher"), "EAsT/EC runs with")]
    notes = "".join(f"; {text} `{' '.join(values)}`" for values, text in options if values)
    if args.get("reuse"):
        notes += f"; identical runs reused from {', '.join(f'`{Path(f).name}`' for f in args['reuse'])}"
    intro = (
        f"Accuracy (%) mean ± std over seeds {args['seeds']}. Student `text_cnn` from scratch on `{base}` "
        "(fixed 20% test split, validation carved from the rest per seed); teacher all-MiniLM-L6-v2 "
        "mean-pooled sentence embedding (cached). Checkpoint selected on validation; lambda per variant "
        f"chosen from {args['lams']} on mean validation accuracy over seeds {select} (EC at "
        f"d={args['d_select']}); the verdict's EC row (loss, d) chosen on validation only. Unseen = whole "
        f"VADER {' / '.join(domains)} sets, no further training. Protocol: `benchmarks/east_text.py`{notes}."
    )
    probe_text = (
        "Teacher check (validation only): a logistic-regression probe on the standardised teacher "
        f"embedding of the same {probe[0]['labels']} training examples reaches "
        f"{mean_std([p['probe_val_acc'] for p in probe])} validation accuracy vs "
        f"{mean_std([x['val_acc'] for x in table['baseline']])} for the student baseline."
    )
    cells = []
    for label, rows in table.items():
        unseen_mean = [statistics.mean(x[c] for c in cols) for x in rows]
        lam = "-" if rows[0]["lam"] is None else rows[0]["lam"]
        columns = [mean_std([x[c] for x in rows]) for c in ("val_acc", "test_acc", *cols)]
        cells.append([label, lam, *columns, mean_std(unseen_mean)])
    ft = res.get("teacher_finetuned")
    if ft:  # the big model, for the cost of EC's answer (no lambda: its lr is in the text)
        rows = finetune.chosen_runs(ft)
        columns = [mean_std([x[c] for x in rows]) for c in ("val_acc", "test_acc", *cols)]
        cells.append(
            [finetune.ROW, "-", *columns, mean_std([statistics.mean(x[c] for c in cols) for x in rows])]
        )
    header = ["row", "lambda", "val", "test", *[f"unseen {d}" for d in domains], "unseen mean"]
    v = summary["verdict"]
    noise = max(
        100 * statistics.stdev([statistics.mean(x[c] for c in cols) for x in table[k]])
        for k in (v["ec_row_by_val"], "baseline")
    )
    grid = lambda_grid_text(summary["val_grid"])
    ft_text = []
    if ft:
        base_s = [x["train_time_s"] for x in table["baseline"]]
        ft_text = ["", finetune.finetune_text(ft, v["ec_row_by_val"], base_s)]
    return "\n".join(
        [
            f"# EAsT / EC on text: {title}",
            "",
            intro,
            "",
            probe_text,
            "",
            markdown_table(header, cells),
            "",
            f"Validation accuracy of the lambda grid (seeds {select}): {grid}.",
            "",
            _verdict_text(v, noise),
            *ft_text,
        ]
    )
