"""The converged KT reference: networks rebuilt from their seeds, small blocks trained to a
validation plateau, and the KT table's second ratio (to that reference) with its interval; the
template block chosen on validation images, not on the stored test accuracy."""

from __future__ import annotations

import copy
import importlib
import json
import sys
from pathlib import Path

import pytest
import torch

from kdforge.data import load_dataset
from kdforge.errors import KdforgeError
from kdforge.experiments import kt_runs
from kdforge.experiments.kt_converged import (
    converged_markdown,
    converged_summary,
    measure_converged,
    merge_converged,
    table_test_networks,
)
from kdforge.experiments.kt_protocol import (
    CONVERGED,
    TRAINED,
    merge_scaling_point,
    table_markdown,
    target_verdict,
)
from kdforge.experiments.kt_template_choice import BY_TEST, BY_VALIDATION, measure_template_choice
from kdforge.methods.translation import networks
from kdforge.methods.translation.align import align_channels
from kdforge.methods.translation.evaluate import split_indices
from kdforge.methods.translation.grouped import small_accuracy
from kdforge.methods.translation.pairs import (
    PairConfig,
    Schedule,
    initial_pairs,
    load_pairs,
    make_pairs,
    regenerate_networks,
)
from kdforge.methods.translation.plateau import PlateauRule, PlateauTracker, train_small_to_plateau
from kdforge.methods.translation.train import template_index, validation_images
from kdforge.report.provenance import write_results

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
SPEC = networks.BlockSpec(image_size=8, small_skip=False)
CFG = PairConfig("digits", SPEC, Schedule(384, 3, 2, 32), seed=3, shard_size=4)


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits")


@pytest.fixture(scope="module")
def pairs(digits, tmp_path_factory):
    """12 tiny pairs on the 8x8 digits (3 shards of 4), as `make-pairs` writes them."""
    out = tmp_path_factory.mktemp("kt_converged") / "pairs"
    make_pairs(out, CFG, range(3), digits, progress=False)
    return load_pairs(out)[0]


def test_regenerated_networks_equal_the_stored_ones_bit_for_bit(digits, pairs):
    positions = [10, 5, 6]  # parts of two shards, out of order
    again = regenerate_networks(CFG, positions, digits)
    assert (
        again["seed"].tolist()
        == [CFG.network_seed(p) for p in positions]
        == [3_000_010, 3_000_005, 3_000_006]
    )
    for name, value in again.items():
        assert torch.equal(value, pairs[name][positions]), name
    with pytest.raises(KdforgeError, match="name no network"):
        regenerate_networks(CFG, [], digits)


def test_split_positions_are_the_split_of_the_networks():
    assert split_indices(192) == (range(135), range(135, 154), range(154, 192))  # the KT table's split
    with pytest.raises(KdforgeError, match="too few"):
        split_indices(2)


def test_plateau_tracker_stops_after_patience_epochs_without_a_new_best():
    t = PlateauTracker(2, patience=2)
    for epoch, accs in enumerate([(0.5, 0.1), (0.6, 0.2), (0.6, 0.3), (0.59, 0.4), (0.9, 0.5)], 1):
        t.update(epoch, torch.tensor(accs))
    t.finish(5)
    assert t.stopped_at.tolist() == [4, 5] and t.best_epoch.tolist() == [2, 5]
    assert t.best.tolist() == pytest.approx([0.6, 0.5])
    assert t.curves[0] == pytest.approx([0.5, 0.6, 0.6, 0.59])  # nothing recorded once stopped


def _plateau(digits, pairs, positions, schedule, rule):
    nets = {k: v[positions] for k, v in pairs.items()}
    init = initial_pairs([CFG.network_seed(p) for p in positions], CFG, digits.train.tensors).small
    train = (digits.train.tensors["x"], digits.train.tensors["y"])
    val = (digits.val.tensors["x"], digits.val.tensors["y"])
    return nets, init, train_small_to_plateau(nets, init, train, val, schedule, False, rule, keep_epoch=2)


def test_plateau_training_stops_and_keeps_the_best_validation_state(digits, pairs):
    rule = PlateauRule(max_epochs=12, patience=2, val_images=300)
    nets, _, run = _plateau(digits, pairs, [0, 1, 2, 3], CFG.schedule, rule)
    for name, value in run.at_epoch.items():  # the run continues the pair schedule exactly
        assert torch.equal(value, nets[name]), name
    vx, vy = digits.val.tensors["x"][:300], digits.val.tensors["y"][:300]
    rescored = small_accuracy(nets, run.small, vx, vy, False)  # the kept state, scored independently
    assert rescored.tolist() == pytest.approx(run.best_val_acc, abs=1e-6)
    for curve, best, epochs in zip(run.val_curves, run.best_epoch, run.epochs, strict=True):
        assert len(curve) == epochs and curve.index(max(curve)) + 1 == best
        assert epochs == rule.max_epochs or epochs - best == rule.patience
    assert min(run.epochs) < rule.max_epochs  # the rule did stop a network early here


def test_a_block_that_cannot_improve_stops_after_patience_epochs_at_its_first_state(digits, pairs):
    frozen = Schedule(384, 3, 2, 32, lr=0.0)
    _, init, run = _plateau(
        digits, pairs, [4, 5], frozen, PlateauRule(max_epochs=10, patience=3, val_images=300)
    )
    assert run.epochs == [4, 4] and run.best_epoch == [1, 1]
    for name, value in run.small.items():
        assert torch.equal(value, init[name])


def test_measure_converged_rechecks_the_2_epoch_blocks_and_renders(digits, pairs):
    positions = [9, 10, 11]
    stored = pairs["acc_small"][positions].tolist()
    rule = PlateauRule(max_epochs=6, patience=2, val_images=300)
    results = measure_converged(CFG, positions, stored, rule, digits)
    s = converged_summary(results)
    assert s["identical_2epoch"] == s["extends_2epoch_exactly"] == 3 and s["max_abs_diff_2epoch"] == 0.0
    assert [n["position"] for n in results["networks"]] == positions
    assert s["converged"] == pytest.approx(sum(n["converged"] for n in results["networks"]) / 3)
    results["provenance"] = {"config": {"table": "t.json", "pairs": "p", "threads": 1}}
    md = converged_markdown(results)
    assert "identical on 3 of 3 networks" in md and md.count("\n| 1") == 2  # positions 10 and 11


def test_the_committed_converged_reference_rerenders_byte_for_byte(tmp_path):
    out = tmp_path / "kt_converged_reference.json"
    out.write_text((RESULTS / "kt_converged_reference.json").read_text())
    _render(out, "kt_converged_reference")
    assert out.with_suffix(".md").read_text() == (RESULTS / "kt_converged_reference.md").read_text()
    results = json.loads(out.read_text())
    assert [n["position"] for n in results["networks"]] == list(range(154, 192))
    assert all(n["extends_2epoch_exactly"] for n in results["networks"])


def test_the_committed_template_choice_rerenders_byte_for_byte(tmp_path):
    out = tmp_path / "kt_template_choice.json"
    out.write_text((RESULTS / "kt_template_choice.json").read_text())
    _render(out, "kt_template_choice")
    assert out.with_suffix(".md").read_text() == (RESULTS / "kt_template_choice.md").read_text()
    choices = json.loads(out.read_text())["choices"]
    assert choices[BY_VALIDATION]["val_acc"] >= choices[BY_TEST]["val_acc"]  # the validation choice
    assert choices[BY_TEST]["test_acc"] >= choices[BY_VALIDATION]["test_acc"]  # the earlier, test choice


def _table_with_converged(factor: float) -> tuple[dict, dict]:
    table = json.loads((RESULTS / "kt_table.json").read_text())
    table.pop("converged", None)
    table["rows"].pop(CONVERGED, None)
    _, positions, stored = table_test_networks(table)
    nets = [{"position": p, "stored_2epoch": v, "regenerated_2epoch": v, "converged": v * factor,
             "best_epoch": 3, "epochs": 6, "extends_2epoch_exactly": True}
            for p, v in zip(positions, stored, strict=True)]  # fmt: skip
    conv = {"networks": nets, "rule": {"max_epochs": 20, "patience": 3, "val_images": 2000}}
    conv["seconds"] = {"regenerate": 60.0, "plateau": 120.0}
    conv["provenance"] = {"command": "c", "date": "d", "git_commit": "g"}
    return table, conv


def test_merged_converged_reference_divides_every_row_and_its_interval(tmp_path):
    table, conv = _table_with_converged(1.25)
    assert table_test_networks(table)[1] == list(range(154, 192))
    merge_converged(table, conv, "conv.json", {})
    md = table_markdown(table)
    assert list(table["rows"])[-2:] == [TRAINED, CONVERGED]
    for row in table["rows"].values():  # same resampled networks: the interval scales exactly
        assert row["ratio_converged"] == pytest.approx(row["ratio_trained"] / 1.25)
        assert row["ratio_converged_ci"] == pytest.approx([v / 1.25 for v in row["ratio_trained_ci"]])
    best = table["rows"][next(reversed(table["merged"]))]
    assert target_verdict(best, "ratio_converged") == "missed"  # 0.897 / 1.25 < 0.9 throughout
    assert "| / converged | 95% CI |" in md and "Against the converged reference: no translator row" in md
    out = tmp_path / "kt_table.json"  # the script re-renders the merged table from its JSON alone
    write_results(out, table, md)
    before = out.with_suffix(".md").read_text()
    _render(out)
    assert out.with_suffix(".md").read_text() == before


def test_a_converged_file_of_other_networks_is_refused_and_a_scaling_merge_keeps_references_last():
    table, conv = _table_with_converged(1.1)
    bad = copy.deepcopy(conv)
    bad["networks"][0]["stored_2epoch"] += 0.01
    bad["networks"][0]["regenerated_2epoch"] += 0.01  # neither the stored nor the rebuilt blocks
    with pytest.raises(KdforgeError, match="other test networks"):
        merge_converged(table, bad, "conv.json", {})
    merge_converged(table, conv, "conv.json", {})
    scaling = json.loads((RESULTS / "kt_functional_scaling.json").read_text())
    merge_scaling_point(table, scaling, "s.json", "4175+align+hperm+val160+ep40", {})
    assert list(table["rows"])[-2:] == [TRAINED, CONVERGED]


def test_a_table_of_the_regenerated_networks_merges_the_converged_reference_paired_with_them():
    table, conv = _table_with_converged(1.1)
    for n in conv["networks"]:  # twins: the rebuilt 2-epoch blocks differ from the stored ones
        n["stored_2epoch"] += 0.01
    merge_converged(table, conv, "conv.json", {})
    assert table["converged"]["paired_with"] == "regenerated"
    assert "paired with its own network" in table_markdown(table)


def test_the_template_is_chosen_on_validation_images_not_the_stored_test_accuracy(digits, pairs):
    val = (digits.val.tensors["x"][:300], digits.val.tensors["y"][:300])
    best = template_index(pairs, *val, False)
    fooled = dict(pairs, acc_small=pairs["acc_small"].clone())
    fooled["acc_small"][(best + 1) % 12] = 1.0  # a stored (test) accuracy must not choose
    blocks = kt_runs.template_blocks(fooled, 2, val, False)
    assert torch.equal(blocks["small.conv1"][1], pairs["small.conv1"][best])


def _render(out: Path, script: str = "kt_table") -> None:
    sys.path.insert(0, str(ROOT / "benchmarks"))
    argv, sys.argv = sys.argv, [f"{script}.py", "--render", "--out", str(out)]
    try:
        importlib.import_module(script).main()
    finally:
        sys.argv = argv
        sys.modules.pop(script, None)
        sys.path.remove(str(ROOT / "benchmarks"))


def test_template_choice_scores_both_choices_on_the_same_rebuilt_test_networks(digits, pairs):
    train, test = list(range(8)), [9, 10, 11]
    results = measure_template_choice(CFG, train, test, digits)
    by_val, by_test = results["choices"][BY_VALIDATION], results["choices"][BY_TEST]
    trained = {k: v[train] for k, v in pairs.items()}
    assert by_val["position"] == template_index(trained, *validation_images(digits), False)
    assert by_test["position"] == int(pairs["acc_small"][train].argmax())
    nets, x, y = {k: v[test] for k, v in pairs.items()}, digits.test.tensors["x"], digits.test.tensors["y"]
    block = {k: v[[by_val["position"]] * 3] for k, v in pairs.items() if k.startswith("small.")}
    assert by_val["template"] == small_accuracy(nets, block, x[:2000], y[:2000], False).tolist()
    j = by_test["position"]
    aligned = align_channels(nets, {k: v[j : j + 1] for k, v in pairs.items()})
    block = {k: v[[j] * 3] for k, v in pairs.items() if k.startswith("small.")}
    assert by_test["template_aligned"] == small_accuracy(aligned, block, x[:2000], y[:2000], False).tolist()
