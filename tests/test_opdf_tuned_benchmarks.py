"""The tuned OPDF benchmarks render their tables from results built by experiments.tuning, and
the committed results files re-render byte for byte from their JSON."""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest

from kdforge.experiments import opdf_vision_tuned as tuned
from kdforge.experiments.tuning import tune_row

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
LRS = [0.001, 0.002, 0.004, 0.008, 0.016]


def _script(monkeypatch, name):
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    return importlib.import_module(name)


def _sweep(key: str, values: list[float], peak: float, gain: float) -> list[dict]:
    """Runs over ``values`` x 3 seeds whose validation/test accuracy peaks at ``peak``."""
    return [
        {
            "overrides": {key: v},
            "seed": s,
            "val_acc": 0.8 + gain - 0.01 * abs(values.index(v) - values.index(peak)) + 0.001 * s,
            "test_acc": 0.79 + gain - 0.01 * abs(values.index(v) - values.index(peak)) + 0.002 * s,
            "train_time_s": 1.0,
            "train_params": 10,
            "student_params": 5,
        }
        for v in values
        for s in range(3)
    ]


def _row(base: str, variant: str, lrs: list[float], peak: float, gain: float) -> dict:
    return dict(
        base=base, variant=variant, recipe="r", **tune_row(_sweep("train.lr", lrs, peak, gain), "train.lr")
    )


def test_vision_tuned_markdown_and_plot(tmp_path):
    plain, opdf = _row("kd", "plain", LRS, 0.016, 0.0), _row("kd", "opdf", LRS, 0.004, 0.02)
    deltas, align = tuned.compare_rows([plain, opdf])
    res = {
        "seeds": [0, 1, 2],
        "lrs": LRS,
        "rows": [plain, opdf],
        "deltas": deltas,
        "not_run": {"fitnet opdf": "x"},
    }
    text = tuned.tuned_vision_markdown(res)
    assert "| kd plain | 76.10 | 77.10 | 78.10 | 79.10 | 80.10 | 0.016 (grid edge) |" in text
    assert "| kd +OPDF (MPO) | 80.10 | 81.10 | 82.10 | 81.10 | 80.10 | 0.004 |" in text
    assert "- kd +OPDF (MPO): +2.00 points [+2.00, +2.00] (target +1.0) -> **met**" in text
    assert "Not run (CPU budget): fitnet opdf (x)" in text and "carried over" not in text and align == []
    assert "Chosen at the grid's edge (a value beyond it may do better): kd plain." in text
    assert tuned.plot_tuned_vision(res, tmp_path / "p.png").stat().st_size > 0


GRID = tuned.LRS  # the table's grid
WIDE = [0.001, *GRID, 0.064]  # a wider grid an earlier table ran


def _previous(rows: list[dict], commit: str = "abc", seeds: list[int] | None = None) -> dict:
    prov = {"git_commit": commit, "date": "2026-12-02T15:11:59+00:00"}
    return {"seeds": seeds or [0, 1, 2], "lrs": WIDE, "rows": rows, "provenance": prov}


def test_carry_over_restricts_rows_to_the_grid_and_records_where_they_were_measured():
    plain, opdf = _row("kd", "plain", WIDE, 0.016, 0.0), _row("kd", "opdf", WIDE, 0.004, 0.02)
    carried = tuned.carry_over(_previous([plain, opdf]), GRID, [0, 1, 2])
    assert set(carried) == {("kd", "plain"), ("kd", "opdf")}
    c_plain, c_opdf = carried["kd", "plain"], carried["kd", "opdf"]
    assert c_plain["grid"] == GRID and c_plain["chosen"] == 0.016 and not c_plain["at_edge"]
    assert c_plain["val_mean"] == plain["val_mean"][1:6] and c_plain["test_acc"] == plain["test_acc"]
    origin = {"git_commit": "abc", "date": "2026-12-02T15:11:59+00:00", "grid": WIDE, "runs_on_disk": False}
    assert c_opdf["carried_over"] == origin
    # the delta over tuned plain is the one measured on the wide grid (same chosen runs, same seeds)
    assert tuned.compare_rows([c_plain, c_opdf])[0] == tuned.compare_rows([plain, opdf])[0]
    # carried again from a file that holds the carried rows: still the first file's record
    again = tuned.carry_over(_previous([c_plain, c_opdf], commit="def"), GRID, [0, 1, 2])
    assert again == carried
    assert tuned.carry_over(_previous([plain], seeds=[0, 1]), GRID, [0, 1, 2]) == {}
    assert tuned.carry_over(None, GRID, [0, 1, 2]) == {}


def test_run_table_runs_missing_rows_in_priority_order_and_carries_the_rest(monkeypatch, tmp_path):
    made = {
        ("adkd", "plain"): 0.0,
        ("adkd", "opdf"): 0.02,
        ("kd", "svd"): 0.005,
        ("adkd", "opdf_noalign"): 0.01,
    }
    ran, teachers = [], []
    runs: dict[str, list[dict]] = {}

    def fake_sweep(trials, out_dir, progress):
        key = trials[0].recipe
        ran.append(key)
        base, variant = key.removeprefix("tuned_").split("_", 1)
        if (base, variant) in made:  # rows the CPU budget finished; the others stop half way
            runs[key] = _sweep("train.lr", GRID, 0.008, made[base, variant])
        else:
            runs[key] = _sweep("train.lr", GRID, 0.008, 0.0)[:4]

    def fake_split(trials, out_dir):
        done = runs.get(trials[0].recipe, [])
        return done, [t.name for t in trials][len(done) :]

    monkeypatch.setattr(tuned, "run_sweep", fake_sweep)
    monkeypatch.setattr(tuned, "run_recipe", lambda recipe: teachers.append(Path(recipe).stem))
    monkeypatch.setattr(tuned, "split_finished", fake_split)
    monkeypatch.setattr(tuned, "teacher_scores", lambda configs, bases: {})
    previous = _previous([_row("kd", "plain", WIDE, 0.016, 0.0), _row("kd", "opdf", WIDE, 0.004, 0.02)])
    grid = tuned.TunedVisionGrid(bases=["kd", "adkd", "theseus"])
    res = tuned.run_table(grid, ROOT / "configs" / "opdf", ROOT, train=True, previous=previous)
    assert ran == [
        "tuned_adkd_plain", "tuned_adkd_opdf", "tuned_theseus_plain", "tuned_theseus_opdf",
        "tuned_kd_svd", "tuned_kd_opdf_noalign", "tuned_adkd_svd", "tuned_adkd_opdf_noalign",
        "tuned_theseus_svd", "tuned_theseus_opdf_noalign",
    ]  # fmt: skip
    assert set(teachers) == {"teacher", "teacher_theseus"}
    labels = [(r["base"], r["variant"]) for r in res["rows"]]
    assert labels == [("kd", "plain"), ("kd", "opdf"), ("kd", "svd"), *[k for k in made if k[0] == "adkd"]]
    assert [("carried_over" in r) for r in res["rows"]] == [True, True, False, False, False, False]
    deltas = {(d["base"], d["variant"]): d["interval"]["mean"] for d in res["deltas"]}
    assert deltas == pytest.approx(
        {("kd", "opdf"): 2.0, ("kd", "svd"): 0.5, ("adkd", "opdf"): 2.0, ("adkd", "opdf_noalign"): 1.0}
    )
    assert [(d["base"], d["interval"]["mean"]) for d in res["align_deltas"]] == [("adkd", pytest.approx(1.0))]
    assert res["not_run"]["theseus plain"] == "11 of 15 runs unfinished" and "adkd svd" in res["not_run"]
    text = tuned.tuned_vision_markdown(res)
    assert "| kd plain † |" in text and "| adkd plain |" in text
    assert "† kd plain, kd +OPDF (MPO): carried over from this table's results at commit `abc`" in text
    assert "run on the grid [0.001, 0.002, 0.004, 0.008, 0.016, 0.032, 0.064]" in text
