"""The recipe check's results: rows carried over between sessions, and their markdown table.

Each row records where it was measured (``measured``: git commit and date). A session runs
only some recipes; :func:`merge_rows` keeps the rows of an earlier results file for the
others (their run directories may be gone), so the table always covers every recipe: measured
now, measured earlier (and where), or not checked with the reason.
"""

from __future__ import annotations

import json
from typing import Any

from kdforge.report.tables import interval_cell, markdown_table

NOT_RUN = "time: not reached within this check's budget on the shared 2-core CPU"


def measured_at(provenance: dict[str, Any]) -> dict[str, str | None]:
    """``{"commit", "date"}`` of a results file's provenance (where its rows were measured)."""
    return {"commit": provenance.get("git_commit"), "date": provenance.get("date")}


def previous_rows(previous: dict[str, Any] | None) -> dict[str, dict[str, Any]]:
    """The measured rows of an earlier results file by recipe, each with its ``measured`` place
    (rows without one were measured where that file was written)."""
    if not previous:
        return {}
    where = measured_at(previous.get("provenance", {}))
    return {
        r["recipe"]: {**r, "measured": r.get("measured", where)}
        for r in previous.get("rows", [])
        if r["kind"] != "not checked"
    }


def latest_rows(results: list[dict[str, Any]]) -> dict[str, Any]:
    """Several results files of the check as one earlier file: for each recipe its most recently
    measured row (by ``measured`` date), e.g. to join sessions that ran different recipes."""
    best: dict[str, dict[str, Any]] = {}
    for res in results:
        for rel, row in previous_rows(res).items():
            if rel not in best or (row["measured"].get("date") or "") > (
                best[rel]["measured"].get("date") or ""
            ):
                best[rel] = row
    return {"rows": list(best.values()), "provenance": {}}


def merge_rows(
    recipes: list[str],
    new: dict[str, dict[str, Any]],
    previous: dict[str, Any] | None,
    reasons: dict[str, str | None],
    notes: dict[str, str | None] | None = None,
) -> list[dict[str, Any]]:
    """One row per recipe, in ``recipes`` order: measured now (``new``), else carried from
    ``previous`` (an earlier results file), else not checked with ``reasons[recipe]`` (or
    :data:`NOT_RUN`).

    A carried distilling row takes the recipe's current note (``notes``: the recipe's
    ``# Distilled vs alone:`` comment, which may have been written after the row was measured),
    and its ``ok`` follows: the verdict is not ``missed``, or the recipe says why.
    """
    old = previous_rows(previous)
    rows = []
    for rel in recipes:
        if rel in new:
            rows.append(new[rel])
        elif rel in old:
            row = old[rel]
            if row["kind"] == "distilled" and notes is not None:
                note = notes.get(rel)
                row = {**row, "note": note, "ok": row["verdict"] != "missed" or note is not None}
            rows.append(row)
        else:
            rows.append({"recipe": rel, "kind": "not checked", "reason": reasons.get(rel) or NOT_RUN})
    return rows


def _pm(side: dict[str, Any], key: str) -> str:
    s = side[key]
    return f"{100 * s['mean']:.2f}" + (f" ± {100 * s['std']:.2f}" if len(s["values"]) > 1 else "")


def _where(row: dict[str, Any]) -> str:
    m = row.get("measured") or {}
    return f"{(m.get('commit') or '?')[:7]} {(m.get('date') or '?')[:10]}"


def recipes_markdown(res: dict[str, Any]) -> str:
    """The check's table: distilled vs alone, teachers and students alone, notes, not checked."""
    head = ["recipe", "method", "params", "alone val %", "distilled val %", "alone test %",
            "distilled test %", "val delta [95% CI]", "verdict (val)", "measured at"]  # fmt: skip
    cells, singles, skipped, notes = [], [], {}, []
    for r in res["rows"]:
        if r["kind"] == "distilled":
            a, d = r["alone"], r["distilled"]
            shown = f"{r['verdict']}: {r['claim']}" + (" (see note)" if r["note"] else "")
            cells.append([r["recipe"], r["method"], f"{d['params']:,}", _pm(a, "val_acc"), _pm(d, "val_acc"),
                          _pm(a, "test_acc"), _pm(d, "test_acc"), interval_cell(r["val_delta"]), shown,
                          _where(r)])  # fmt: skip
            notes += [f"- {r['recipe']}: {r['note']}"] if r["note"] else []
        elif r["kind"] == "not checked":
            skipped.setdefault(r["reason"], []).append(f"`{r['recipe']}`")
        else:
            a = r["alone"]
            singles.append([r["recipe"], r["kind"], f"{a['params']:,}", _pm(a, "val_acc"), _pm(a, "test_acc"),
                            _where(r)])  # fmt: skip
    checked = [r for r in res["rows"] if r["kind"] == "distilled"]
    lines = [
        "# Shipped recipes: student alone vs distilled",
        "",
        f"Seeds {res['seeds']} (teachers: their recipe's seed). Student alone = the same recipe with "
        "`method: supervised` and no teacher, same schedule. Delta = distilled - alone validation "
        "accuracy, paired by seed (bootstrap 95% interval); verdict against 0. `measured at`: the "
        "commit and date of the session that ran the row (rows of earlier sessions are carried over).",
        "",
        f"{sum(r['ok'] for r in checked)} of {len(checked)} checked distilling recipes are not worse "
        "than their student alone on validation (verdict not `missed`) or say why in the recipe.",
        "",
        markdown_table(head, cells),
        "",
        "Teachers and students trained alone:",
        "",
        markdown_table(["recipe", "role", "params", "val %", "test %", "measured at"], singles),
    ]
    if notes:
        lines += ["", "Recipe notes (why distillation does not beat the student alone there):", *notes]
    if skipped:
        lines += ["", "Not checked:", *(f"- {why}: {', '.join(rs)}" for why, rs in skipped.items())]
    for rel, sides in res.get("tuning", {}).items():
        what = "seed 0, validation accuracy %, same number of settings per side"
        lines += ["", f"Tuning of {rel} ({what}):", ""]
        rows = [[side, json.dumps(c["overrides"]), f"{100 * c['mean']:.2f}"]
                for side in ("alone", "distilled") for c in sides[side]["candidates"]]  # fmt: skip
        lines.append(markdown_table(["student", "setting", "val %"], rows))
    return "\n".join(lines)
