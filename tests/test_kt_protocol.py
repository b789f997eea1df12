"""The Knowledge Translation benchmark protocol as library code: verdicts, statistics, the quality
table and merging a learning-curve point, pinned to the committed results files (re-rendered byte
for byte, provenance footer included, from their JSON)."""

from __future__ import annotations

import copy
import importlib
import json
import sys
from pathlib import Path

import pytest

from kdforge.errors import KdforgeError
from kdforge.experiments.kt_protocol import (
    CONVERGED,
    TRAINED,
    info_from_provenance,
    merge_scaling_point,
    pooled_lists,
    seed_stats,
    table_markdown,
    target_verdict,
)
from kdforge.experiments.kt_scaling import point_key, point_label, scaling_markdown
from kdforge.experiments.kt_scaling_run import ScalingSettings, import_point
from kdforge.report.provenance import write_results

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"


def _load(name: str) -> dict:
    return json.loads((RESULTS / f"{name}.json").read_text())


def _rendered(tmp_path: Path, name: str, results: dict, markdown) -> tuple[str, dict]:
    written = write_results(tmp_path / f"{name}.json", results, markdown(results))
    return written.with_suffix(".md").read_text(), json.loads(written.read_text())


@pytest.mark.parametrize(
    ("row", "verdict"),
    [
        ({"ratio_trained": 0.95, "ratio_random": 3.0}, "met"),  # no interval: the point decides
        ({"ratio_trained": 0.85, "ratio_random": 3.0}, "missed"),
        (
            {"ratio_trained": 0.903, "ratio_random": 6.0, "ratio_trained_ci": [0.888, 0.919]},
            "not distinguishable",
        ),
        ({"ratio_trained": 0.95, "ratio_random": 6.0, "ratio_trained_ci": [0.90, 0.99]}, "met"),
        ({"ratio_trained": 0.88, "ratio_random": 6.0, "ratio_trained_ci": [0.85, 0.899]}, "missed"),
        ({"ratio_trained": 0.95, "ratio_random": 1.9, "ratio_trained_ci": [0.92, 0.99]}, "missed"),
        (None, "missed"),
    ],
)
def test_target_verdict_is_met_only_when_the_lower_bound_clears_the_bar(row, verdict):
    assert target_verdict(row) == verdict


def test_seed_stats_and_pooled_lists():
    s = seed_stats([[0.2, 0.4], [0.4, 0.6]])
    assert s["mean"] == pytest.approx(0.4) and s["seed_means"] == pytest.approx([0.3, 0.5])
    assert s["seed_std"] == pytest.approx(0.1414214) and s["std"] == pytest.approx(0.1632993)
    assert seed_stats([[0.5]])["std"] == 0.0
    assert pooled_lists([[1, 2], [3, 4]], [[5], [6]]) == [[1, 2, 5], [3, 4, 6]]


@pytest.mark.parametrize("name", ["kt_table", "kt_table_functional80", "kt_refit", "kt_refit_kl_control"])
def test_kt_tables_rerender_byte_for_byte_from_their_json(tmp_path, name):
    md, written = _rendered(tmp_path, name, _load(name), table_markdown)
    assert md == (RESULTS / f"{name}.md").read_text()
    assert written == _load(name)  # every derived field (ratios, CIs, verdicts) as committed


def test_table_header_facts_of_an_older_table_come_from_its_provenance():
    old = _load("kt_table_functional80")  # written before tables stored their header facts
    assert info_from_provenance(old, 135, 19, 38) == old["info"]


def test_the_pooled_verdict_is_the_pooled_intervals(tmp_path):
    md, written = _rendered(tmp_path, "kt_table", _load("kt_table"), table_markdown)
    pooled = written["merged"][next(iter(written["merged"].__reversed__()))]["fresh_test"]["pooled"]
    assert target_verdict(pooled) == "not distinguishable"  # 0.903 of trained, CI [0.888, 0.919]
    assert "Met on the pooled" not in md


def test_merging_a_scaling_point_again_reproduces_its_row(tmp_path):
    table, scaling = _load("kt_table"), _load("kt_functional_scaling")
    key = "4175+align+hperm+val160+ep40"
    old = next(n for n, m in table["merged"].items() if m["point"] == key)
    fresh = copy.deepcopy(table)
    name = merge_scaling_point(fresh, scaling, "benchmarks/results/kt_functional_scaling.json", key, {})
    assert name == old and list(fresh["rows"])[-2:] == [TRAINED, CONVERGED]  # replaced, references last
    assert len(fresh["rows"]) == len(table["rows"])
    assert fresh["rows"][name]["per_seed"] == table["rows"][name]["per_seed"]
    assert fresh["merged"][name]["fresh_test"]["per_seed"] == table["merged"][name]["fresh_test"]["per_seed"]
    md_again, _ = _rendered(tmp_path, "kt_table", fresh, table_markdown)
    assert md_again == (RESULTS / "kt_table.md").read_text()
    with pytest.raises(KdforgeError, match="no point"):
        merge_scaling_point(fresh, scaling, "s.json", "nope", {})
    scaling["reference"]["trained"][0] += 0.5  # another split's test networks
    with pytest.raises(KdforgeError, match="other test networks"):
        merge_scaling_point(fresh, scaling, "s.json", key, {})


def test_kt_functional_scaling_rerenders_byte_for_byte_from_its_json(tmp_path):
    md, written = _rendered(
        tmp_path, "kt_functional_scaling", _load("kt_functional_scaling"), scaling_markdown
    )
    assert md == (RESULTS / "kt_functional_scaling.md").read_text()
    assert written == _load("kt_functional_scaling")  # stats, ratios, generation seconds, pooled CI
    pooled = written["points"]["4175+align+hperm+val160+ep40"]["fresh_test"]["pooled"]
    assert pooled["ratio_trained_ci"] == pytest.approx([0.8876, 0.9189], abs=1e-4)
    assert "| 0.903 [0.888, 0.919] | 6.26 | not distinguishable |" in md


def test_point_keys_and_labels_name_every_variant():
    committed = _load("kt_functional_scaling")["points"]
    s = vars(ScalingSettings(align=True, hidden_perm=True, extra_val_count=160, epochs=40))
    assert point_key(s, 4175) == "4175+align+hperm+val160+ep40"
    assert point_label(s, 135, 4040, 179) == committed["4175+align+hperm+val160+ep40"]["label"]
    s = vars(
        ScalingSettings(align=True, dropout=0.1, kind="set", hidden_scale=0.7, extra_val_count=160, epochs=20)
    )
    assert point_key(s, 815) == "815+align+drop0.1+set+hscale0.7+val160"
    label = "1455 (135 + 1320), channels aligned, mixer translator (dim 96, depth 3), hidden channels"
    s = vars(ScalingSettings(align=True, dim=96, hidden_perm=True, extra_val_count=160, epochs=20))
    assert point_key(s, 1455) == "1455+align+d96x3+hperm+val160"
    assert point_label(s, 135, 1320, 179) == committed[point_key(s, 1455)]["label"]
    assert point_label(s, 135, 1320, 179).startswith(label)
    assert point_key(vars(ScalingSettings()), 311) == "311"


def test_an_earlier_tables_functional_row_imports_only_onto_the_same_test_networks():
    scaling = _load("kt_functional_scaling")
    ref, path = scaling["reference"], "benchmarks/results/kt_table_functional80.json"
    control = import_point(str(ROOT / path), ref["trained"], ref["template"])
    assert control["per_seed"] == scaling["control"]["per_seed"] and control["epochs"] == 80
    with pytest.raises(KdforgeError, match="test networks differ"):
        import_point(str(ROOT / path), ref["trained"], [a + 0.01 for a in ref["template"]])


def test_kt_benchmarks_are_thin_declarations_that_import_no_other_script():
    scripts = {p.stem for p in (ROOT / "benchmarks").glob("*.py")}
    for path in sorted((ROOT / "benchmarks").glob("kt_*.py")):
        text = path.read_text()
        assert len(text.splitlines()) < 100, path
        assert not [s for s in scripts if f"from {s} import" in text or f"import {s}\n" in text], path


def test_kt_table_script_renders_through_the_library(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    module = importlib.import_module("kt_table")
    out = tmp_path / "kt_table.json"
    out.write_text((RESULTS / "kt_table.json").read_text())
    monkeypatch.setattr(sys, "argv", ["kt_table.py", "--render", "--out", str(out)])
    module.main()
    assert out.with_suffix(".md").read_text() == (RESULTS / "kt_table.md").read_text()
    sys.modules.pop("kt_table", None)


def test_the_kl_control_row_weights_kl_as_the_pre_fix_loss_did_at_the_tables_batch_sizes(monkeypatch):
    import torch
    import torch.nn.functional as F

    from kdforge.methods.translation.train import agreement_kl

    nets, images = 16, 32  # the table's --batch-size and --img-batch
    lo, large = torch.randn(nets, images, 10), torch.randn(nets, images, 10)
    log_lo, log_large = F.log_softmax(lo, -1), F.log_softmax(large, -1)
    before = F.kl_div(log_lo, log_large, log_target=True, reduction="batchmean").item() / nets  # old term
    assert before == pytest.approx(images / nets * agreement_kl(lo, large).item(), rel=1e-5)
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    row = importlib.import_module("kt_table").ROWS["functional, KL weighted as before the fix (kd 2/3)"]
    sys.modules.pop("kt_table", None)
    assert row["kd_weight"] / (1 - row["kd_weight"]) == pytest.approx(images / nets)


@pytest.fixture(scope="module")
def pair_sets(tmp_path_factory):
    """A tiny full pair set and a large-only set on the 8x8 digits (10 and 5 networks)."""
    from kdforge.data import load_dataset
    from kdforge.methods.translation import networks
    from kdforge.methods.translation.pairs import PairConfig, Schedule, make_pairs

    digits, spec = load_dataset("digits"), networks.BlockSpec(image_size=8)
    out = tmp_path_factory.mktemp("kt_sets")
    for name, seed, small_epochs, shards in (("full", 3, 2, 2), ("large_only", 4, 0, 1)):
        schedule = Schedule(train_subset=384, epochs_large=3, epochs_small=small_epochs, batch_size=32)
        cfg = PairConfig("digits", spec, schedule, seed=seed, shard_size=5)
        make_pairs(out / name, cfg, range(shards), digits, progress=False)
    return out


def _main(monkeypatch, script: str, *args: str) -> None:
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    module = importlib.import_module(script)
    monkeypatch.setattr(sys, "argv", [f"{script}.py", *map(str, args)])
    try:
        module.main()
    finally:
        sys.modules.pop(script, None)


def test_kt_table_script_measures_a_tiny_pair_set(tmp_path, monkeypatch, pair_sets):
    out = tmp_path / "kt_table.json"
    row = "functional (CE+KL), Mixer"
    small = ["--epochs", 2, "--evals", 1, "--batch-size", 4, "--bank", 32, "--img-batch", 16]
    _main(monkeypatch, "kt_table", "--pairs", pair_sets / "full", "--seeds", 0, "--rows", row,
          "--dim", 16, "--depth", 1, "--test-images", 100, *small, "--out", out)  # fmt: skip
    results = json.loads(out.read_text())
    assert list(results["rows"]) == ["random init", "template only (best training pair's small block)", row,
                                     TRAINED]  # fmt: skip
    assert results["info"]["n_all"] == 10 and results["info"]["translator_rows"] == [row]
    assert len(results["rows"][row]["per_seed"][0]) == results["info"]["n_test"] == 2
    assert target_verdict(results["rows"][row]) in {"met", "missed", "not distinguishable"}
    md = out.with_suffix(".md").read_text()
    assert out.with_name("kt_scatter.png").is_file() and out.with_name("kt_curves.png").is_file()
    _main(monkeypatch, "kt_table", "--render", "--out", out)
    assert out.with_suffix(".md").read_text() == md


def test_kt_functional_scaling_script_measures_merges_and_renders(tmp_path, monkeypatch, pair_sets):
    out, cache = tmp_path / "kt_functional_scaling.json", tmp_path / "seeds"
    tiny = ["--epochs", 2, "--evals", 1, "--batch-size", 4, "--bank", 32, "--img-batch", 16, "--dim", 16,
            "--depth", 1, "--seeds", 0, "--test-images", 100]  # fmt: skip
    sets = ["--pairs", pair_sets / "full", "--extra", pair_sets / "large_only", "--extra-val",
            pair_sets / "large_only", "--extra-val-count", 2, "--extra-test", pair_sets / "full"]  # fmt: skip
    args = [*tiny, *sets, "--align", "--seed-cache", cache, "--out", out]
    _main(monkeypatch, "kt_functional_scaling", *args, "--extra-counts", 0, 3)
    results = json.loads(out.read_text())
    s = vars(ScalingSettings(align=True, extra_val_count=2, epochs=2, dim=16, depth=1))
    assert set(results["points"]) == {point_key(s, 7), point_key(s, 10)}
    assert point_key(s, 10) == "10+align+d16x1+val2+ep2"
    point = results["points"]["10+align+d16x1+val2+ep2"]
    assert (point["n_train"], point["n_large_only"], point["n_val"]) == (10, 3, 3)
    assert len(point["per_seed"][0]) == 2 and len(point["fresh_test"]["per_seed"][0]) == 10
    assert len(point["fresh_test"]["pooled"]["ratio_trained_ci"]) == 2
    assert results["set_seeds"] == {str(pair_sets / "large_only"): 4}
    assert out.with_suffix(".png").is_file() and out.with_name(out.stem + "_scatter.png").is_file()
    md = out.with_suffix(".md").read_text()
    assert "## Fresh test networks: 10 more" in md and "(make-pairs seed 4)" in md
    _main(monkeypatch, "kt_functional_scaling", "--render", "--out", out)
    assert out.with_suffix(".md").read_text() == md
    # a later invocation reuses the finished seeds of the cache: the same accuracies, no training
    monkeypatch.setattr(
        "kdforge.experiments.kt_scaling_run.measure_seed", lambda *a, **k: pytest.fail("trained")
    )
    _main(monkeypatch, "kt_functional_scaling", *args, "--extra-counts", 3)
    assert json.loads(out.read_text())["points"]["10+align+d16x1+val2+ep2"]["per_seed"] == point["per_seed"]
    # the point joins a KT table of the same split as a row (no training), its pooled CI included
    table = tmp_path / "kt_table.json"
    _main(monkeypatch, "kt_table", "--pairs", pair_sets / "full", *tiny, "--rows", "MSE, MLP", "--out", table)
    _main(
        monkeypatch, "kt_table", "--merge-scaling", out, "--point", "10+align+d16x1+val2+ep2", "--out", table
    )
    merged = json.loads(table.read_text())
    name = next(iter(merged["merged"]))
    assert merged["rows"][name]["per_seed"] == point["per_seed"] and list(merged["rows"])[-1] == TRAINED
    assert len(merged["merged"][name]["fresh_test"]["pooled"]["ratio_trained_ci"]) == 2
    with pytest.raises(SystemExit, match="no point"):
        _main(monkeypatch, "kt_table", "--merge-scaling", out, "--point", "nope", "--out", table)


@pytest.mark.parametrize(
    ("script", "markdown"),
    [("kt_pairs", "kdforge.experiments.kt_pair_speed:pair_speed_markdown"),
     ("kt_random_init", "kdforge.experiments.kt_random_init:random_init_markdown")],
)  # fmt: skip
def test_kt_cost_tables_rerender_byte_for_byte(tmp_path, monkeypatch, script, markdown):
    module, name = markdown.split(":")
    md, written = _rendered(tmp_path, script, _load(script), getattr(importlib.import_module(module), name))
    assert md == (RESULTS / f"{script}.md").read_text() and written == _load(script)
    out = tmp_path / f"{script}.json"
    _main(monkeypatch, script, "--render", "--out", out)  # the script's --render: the same file
    assert out.with_suffix(".md").read_text() == md


def test_kt_pairs_and_random_init_scripts_measure_on_the_digits(tmp_path, monkeypatch):
    pairs, rnd = tmp_path / "kt_pairs.json", tmp_path / "kt_random_init.json"
    _main(monkeypatch, "kt_pairs", "--dataset", "digits", "--k", 2, "--k-vmap", 2, "--ref-steps", 2,
          "--eval-images", 100, "--out", pairs)  # fmt: skip
    rows = json.loads(pairs.read_text())["rows"]
    assert [r["measured"] for r in rows] == [False, True, True, True]
    assert rows[1]["speedup_vs_loop_same_schedule"] == 1.0 and rows[0]["speedup_vs_reference"] == 1.0
    assert all(0.0 <= r["acc_small"] <= 1.0 for r in rows[1:])
    _main(monkeypatch, "kt_random_init", "--dataset", "digits", "--k", 1, "--ref-epochs", 1, "--draws", 2,
          "--out", rnd)  # fmt: skip
    rows = json.loads(rnd.read_text())["rows"]
    assert len(rows) == 2 and all(len(r["random, skip"]) == 2 and len(r["large network"]) == 1 for r in rows)
    assert "| 1 |" in rnd.with_suffix(".md").read_text()
