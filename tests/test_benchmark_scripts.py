"""Benchmark scripts are thin declarations over library protocols: each stays short, imports no
other script, and the committed tables re-render byte for byte (provenance footer included) from
their JSON through the library and through each script's ``--render``."""

from __future__ import annotations

import functools
import importlib
import json
import sys
from pathlib import Path

import pytest

from kdforge.experiments import (
    audio_ec_report,
    cli_startup,
    east_image_pairs,
    east_protocol,
    east_text_pairs,
    east_text_table,
    engine_overhead,
    kt_protocol,
    mpo_speed_table,
    opdf_nlp,
    opdf_nlp_align,
    opdf_vision_table,
    opdf_vision_tuned,
    precision_check,
    quickstart_seeds,
    recipes_table,
    teacher_cache_table,
)
from kdforge.experiments.east_grid import EastGrid
from kdforge.report.provenance import write_results

ROOT = Path(__file__).resolve().parents[1]
BENCHMARKS = ROOT / "benchmarks"
RESULTS = BENCHMARKS / "results"
CONFIGS = ROOT / "configs" / "east"
MAX_LINES = 100  # "under ~100 lines": at most 100
# Scripts allowed over the limit because their protocol still lives in the script: none left.
# A script added here must say why beside its name.
OVER_LIMIT: set[str] = set()

# results file -> (library renderer, script whose --render rebuilds it, extra script arguments)
RENDERED = {
    "cli_startup": (cli_startup.startup_markdown, "cli_startup", []),
    "engine_overhead": (engine_overhead.overhead_markdown, "engine_overhead", []),
    "quickstart": (quickstart_seeds.seeds_markdown, "quickstart_seeds", []),
    "precision_check_cpu": (precision_check.precision_markdown, None, []),
    "mpo_speed": (mpo_speed_table.mpo_speed_markdown, "mpo_speed", []),
    "teacher_cache": (teacher_cache_table.cache_markdown, "teacher_cache", []),
    "opdf_vision": (opdf_vision_table.vision_markdown, "opdf_vision", []),
    "opdf_vision_tuned": (opdf_vision_tuned.tuned_vision_markdown, "opdf_vision_tuned", []),
    "opdf_vision_tuned_theseus_lowlr": (opdf_vision_tuned.tuned_vision_markdown, "opdf_vision_tuned", []),
    "recipes_check": (recipes_table.recipes_markdown, "recipes_check", []),
    **{name: (kt_protocol.table_markdown, "kt_table", []) for name in ("kt_refit", "kt_refit_kl_control")},
    "east_table_lam0.3": (east_text_table.table_markdown, "east_table", []),
    **{
        f"east_text_{name}": (east_text_pairs.pair_markdown, "east_text", ["--pair", name.split("_")[0]])
        for name in ("tweets", "amazon", "tweets_kd0.3", "amazon_kd0.3")
    },
    **{
        f"east_images_{name}": (
            functools.partial(east_image_pairs.pairs_markdown, configs=CONFIGS),
            "east_images",
            [],
        )
        for name in ("digits", "digits75", "digits75_kd", "digits75_kd0.1", "fmnist")
    },
    "east_images_probe": (east_image_pairs.probe_markdown, "east_images", ["--probe"]),
    "east_images_probe75": (east_image_pairs.probe_markdown, "east_images", ["--probe"]),
    "east_images_regime": (east_image_pairs.regime_markdown, "east_images", ["--regime"]),
    **{
        name: (opdf_nlp.grid_markdown, "opdf_nlp", [])
        for name in ("opdf_nlp", "opdf_nlp_adkd", "opdf_nlp_narrow", "opdf_nlp_sub1920", "opdf_nlp_theseus")
    },
    **{
        name: (opdf_nlp_align.align_markdown, "opdf_nlp_align", [])
        for name in ("opdf_nlp_align", "opdf_nlp_align_mpolr3", "opdf_nlp_align_mpolr10")
    },
    **{
        f"east_audio_{task}": (audio_ec_report.markdown, "east_audio", [])
        for task in ("words", "voices", "words_grid3", "voices_grid3")
    },
}


def _load(name: str) -> dict:
    return json.loads((RESULTS / f"{name}.json").read_text())


def _scripts() -> list[Path]:
    return sorted(BENCHMARKS.glob("*.py"))


@pytest.mark.parametrize("path", _scripts(), ids=lambda p: p.stem)
def test_every_benchmark_script_is_short_and_imports_no_other_script(path):
    text = path.read_text()
    if path.stem not in OVER_LIMIT:
        assert len(text.splitlines()) <= MAX_LINES, f"{path.name}: move its protocol to kdforge.experiments"
    others = {p.stem for p in _scripts()} - {path.stem}
    assert not [s for s in others if f"from {s} import" in text or f"import {s}\n" in text], path


def test_the_over_limit_exceptions_name_existing_scripts():
    assert {p.stem for p in _scripts()} >= OVER_LIMIT


@pytest.mark.parametrize("name", list(RENDERED))
def test_committed_table_rerenders_byte_for_byte_from_its_json(tmp_path, name):
    markdown = RENDERED[name][0]
    results = _load(name)
    written = write_results(tmp_path / f"{name}.json", results, markdown(results))
    assert written.with_suffix(".md").read_text() == (RESULTS / f"{name}.md").read_text()
    assert json.loads(written.read_text()) == results


@pytest.mark.parametrize("name", [n for n, (_, script, _) in RENDERED.items() if script])
def test_script_render_mode_rebuilds_the_committed_table(tmp_path, monkeypatch, name):
    _, script, extra = RENDERED[name]
    out = tmp_path / f"{name}.json"
    out.write_text((RESULTS / f"{name}.json").read_text())
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    monkeypatch.setattr(sys, "argv", [f"{script}.py", "--render", "--out", str(out), *extra])
    try:
        importlib.import_module(script).main()
    finally:
        sys.modules.pop(script, None)
    assert out.with_suffix(".md").read_text() == (RESULTS / f"{name}.md").read_text()


def test_startup_results_measure_against_bare_python():
    wall = {cli_startup.BARE: [0.05, 0.06, 0.04], cli_startup.HELP: [0.30, 0.40, 0.35]}
    cpu = {cli_startup.BARE: [0.01, 0.01, 0.01], cli_startup.HELP: [0.1, 0.2, 0.1]}
    res = cli_startup.startup_results(wall, cpu, ["kdforge"])
    assert res["over_python_s"][cli_startup.HELP] == pytest.approx(0.30) and res["meets_target"]
    res = cli_startup.startup_results({**wall, cli_startup.HELP: [0.5]}, cpu, ["kdforge"])
    assert not res["meets_target"]


def test_startup_measure_rotates_the_order_and_times_every_command(monkeypatch):
    calls = []
    monkeypatch.setattr(cli_startup, "time_once", lambda argv: calls.append(argv[0]) or (1.0, 0.5))
    wall, cpu = cli_startup.measure({"a": ["a"], "b": ["b"]}, rounds=2)
    assert calls == ["a", "b", "a", "b", "b", "a"]  # warm-up, round 0, round 1 rotated
    assert wall == {"a": [1.0, 1.0], "b": [1.0, 1.0]} and cpu["a"] == [0.5, 0.5]


def test_quickstart_summary_pairs_the_gain_by_seed():
    def record(seed, kd, alone):
        rows = {"teacher": [0.8], "student alone": [alone], "kd": [kd]}
        result = {
            "report": {"rows": [{"name": n, "params": 1, "file_bytes": 1, "latency_ms": 1.0, "val_acc": a,
                                 "test_acc": a, "ratios": {}} for n, a in rows.items()]},
            "kd_gain_points": 100 * (kd - alone), "wall_time_s": 1.0, "teacher_time_s": 0.5,
            "selection": {"kd": {"overrides": {"train.lr": 0.01}}},
        }  # fmt: skip
        return quickstart_seeds.seed_record(seed, result, 2.0)

    summary = quickstart_seeds.seeds_summary(
        [record(0, 0.80, 0.77), record(1, 0.81, 0.78), record(2, 0.79, 0.76)]
    )
    assert summary["kd_gain_interval"]["mean"] == pytest.approx(3.0)
    assert summary["verdict"] == "met" and summary["table"]["kd"]["test_acc"] == [0.80, 0.81, 0.79]


def test_precision_table_reads_runs_keyed_by_precision_or_label():
    run = {
        "val_acc": 0.9,
        "test_acc": 0.9,
        "val_loss": 0.4,
        "skipped_steps": 0,
        "steps": 10,
        "train_time_s": 1.0,
    }
    by_precision = {p: run for p in precision_check.PRECISIONS}
    by_label = {precision_check.LABELS[p]: run for p in precision_check.PRECISIONS}
    assert precision_check.table(by_precision) == precision_check.table(by_label)
    res = precision_check.precision_results(by_precision, "cpu", 0.02, 0.01)
    assert res["agree"] and list(res["runs"]) == ["fp32", "bf16", "fp16"]


def test_engine_overhead_times_both_loops_in_every_round():
    data = engine_overhead.random_images(steps=engine_overhead.WARMUP + 3, batch_size=8)
    res = engine_overhead.measure_setting(
        data, "mlp_teacher", rounds=2, steps=engine_overhead.WARMUP + 3, batch_size=8
    )
    assert len(res["bare_ms_per_step"]) == len(res["engine_ms_per_step"]) == len(res["ratio_per_round"]) == 2
    assert all(ms > 0 for ms in res["bare_ms_per_step"] + res["engine_ms_per_step"])


def test_east_table_rerenders_but_for_the_lambda_clause_added_to_its_intro(tmp_path):
    # east_table.md was rendered before the intro named the lambda ("; lambda of the recipes (0.7)");
    # every other line, numbers and footer included, is identical
    results = _load("east_table")
    md = write_results(tmp_path / "east_table.json", results, east_text_table.table_markdown(results))
    new, old = (
        md.with_suffix(".md").read_text().splitlines(),
        (RESULTS / "east_table.md").read_text().splitlines(),
    )
    differing = [(a, b) for a, b in zip(old, new, strict=True) if a != b]
    assert len(differing) == 1 and differing[0][0].startswith("Accuracy (%) mean ± std over seeds")
    assert differing[0][1] == differing[0][0].replace("4 epochs.", "4 epochs; lambda of the recipes (0.7).")


def test_east_table_rows_and_their_overrides():
    rows = east_text_table.rows_spec([8], lam=0.3, baseline=True)
    assert [label for label, _, _ in rows] == [
        "baseline",
        "EAsT-FitNet",
        "EAsT-dCor",
        "EC-FitNet d=8",
        "EC-dCor d=8",
    ]
    assert rows[0][2] == [] and all("method.kwargs.lam=0.3" in ov for _, _, ov in rows[1:])
    assert rows[3][2] == ["method.kwargs.loss=fitnet", "method.kwargs.d=8", "method.kwargs.lam=0.3"]
    assert [label for label, _, _ in east_text_table.rows_spec([8], None, False)][0] == "EAsT-FitNet"


def test_east_table_run_scores_every_seed_of_every_row_on_the_unseen_domains(monkeypatch, tmp_path):
    monkeypatch.setattr(east_text_table, "vader_all", lambda domain: domain)
    monkeypatch.setattr(east_text_table, "load_student", lambda path: path.parent.name)
    monkeypatch.setattr(east_text_table, "model_accuracy", lambda student, data: len(student + data) / 100)
    summary = {"val_acc": 0.7, "test_acc": 0.6, "best_step": 5, "train_time_s": 1.0}
    monkeypatch.setattr(east_text_table, "run_sweep", lambda trials, out, progress: [summary] * len(trials))
    grid = east_text_table.TextTableGrid(seeds=[0, 1], ds=[8], epochs=1, unseen=["tweets"], baseline=False)
    res = east_text_table.run_table(grid, CONFIGS, str(tmp_path))
    assert len(res["runs"]) == 4 * 2 and {r["seed"] for r in res["runs"]} == {0, 1}
    assert all(r["overrides"][-1] == "train.epochs=1" and "unseen_tweets" in r for r in res["runs"])
    assert list(east_text_table.column_values(res)["EC-dCor d=8"]) == ["test_acc", "unseen_tweets"]


def test_lambda_grid_text_lists_every_variant_and_lambda():
    from kdforge.experiments.east_grid import lambda_grid_text

    assert (
        lambda_grid_text({"EAsT-dCor": {"0.3": 81.234, "0.7": 80.1}}) == "EAsT-dCor: λ=0.3 81.23, λ=0.7 80.10"
    )


def test_image_pair_titles_read_the_label_count_of_the_recipe_or_the_override():
    assert east_image_pairs.title("digits_ae", ["data.subset=75"], CONFIGS).endswith("digits, 75 labels")
    assert "FMNIST 10 classes" in east_image_pairs.title("fmnist_coarse", [], CONFIGS)


def _body(markdown: str) -> str:
    """A results table without its provenance footer (command, date, commit differ between runs)."""
    return markdown.split("\n\n<sub>command:")[0]


@pytest.mark.parametrize(
    ("script", "name", "runner", "argv", "grid"),
    [
        ("east_table", "east_table_lam0.3", "run_table", ["--ds", "32", "--lam", "0.3", "--no-baseline"],
         east_text_table.TextTableGrid([0, 1, 2], [32], 4, ["tweets", "amazon"], 0.3, False)),
        ("east_text", "east_text_tweets", "run_pair",
         ["--pair", "tweets", "--reuse", "old/east_text_tweets.json"],
         EastGrid([0, 1, 2], [8, 32, 128], 32, [0.1, 0.3, 0.5], [0], [], [])),
        ("east_images", "east_images_digits", "run_pairs", ["--pairs", "digits_ae", "digits_coarse"],
         EastGrid([0, 1, 2], [8, 16, 32, 64], 16, [0.3, 0.7], None, [], [])),
    ],
)  # fmt: skip
def test_east_scripts_run_mode_hands_the_declared_grid_to_the_library(
    tmp_path, monkeypatch, script, name, runner, argv, grid
):
    """With the library's runs stubbed by the committed ones, a run writes the committed table again."""
    committed = {k: v for k, v in _load(name).items() if k != "provenance"}
    calls = []
    monkeypatch.setattr(
        east_protocol, "plot_pairs", lambda tables, ds, out: calls.append(("plot", list(tables)))
    )
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    module = importlib.import_module(script)
    target = east_image_pairs if script == "east_images" else module
    monkeypatch.setattr(target, runner, lambda *args: calls.append(args) or committed)
    out = tmp_path / f"{name}.json"
    monkeypatch.setattr(sys, "argv", [f"{script}.py", *argv, "--out", str(out)])
    try:
        module.main()
    finally:
        sys.modules.pop(script, None)
    assert [a for a in calls[0] if isinstance(a, (EastGrid, east_text_table.TextTableGrid))] == [grid]
    assert calls[1][0] == "plot"
    assert _body(out.with_suffix(".md").read_text()) == _body((RESULTS / f"{name}.md").read_text())


def _run_script(monkeypatch, script: str, *argv: str, patch: dict | None = None) -> None:
    """Run ``benchmarks/<script>.py``'s main with ``argv``, after setting ``patch``'s attributes on it."""
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    module = importlib.import_module(script)
    for attr, value in (patch or {}).items():
        monkeypatch.setattr(module, attr, value)
    monkeypatch.setattr(sys, "argv", [f"{script}.py", *argv])
    try:
        module.main()
    finally:
        sys.modules.pop(script, None)


def test_quickstart_seeds_run_mode_rebuilds_the_committed_table_from_the_seeds_results(tmp_path, monkeypatch):
    committed = _load("quickstart")

    def fake_quickstart(tmp, dataset, data_dir, seed, progress):
        s = next(x for x in committed["per_seed"] if x["seed"] == seed)
        rows = [
            {"name": n, **row, "ratios": s["ratios_kd"] if n == "kd" else {}} for n, row in s["rows"].items()
        ]
        clock["now"] += s["cpu_time_s"]
        return {
            "report": {"rows": rows},
            "kd_gain_points": s["kd_gain"],
            "wall_time_s": s["wall_time_s"],
            "teacher_time_s": s["teacher_time_s"],
            "selection": {arm: {"overrides": o} for arm, o in s["selected"].items()},
        }

    clock = {"now": 0.0}  # process CPU time: each fake run advances it by its committed seconds
    monkeypatch.setattr("time.process_time", lambda: clock["now"])
    out = tmp_path / "quickstart.json"
    _run_script(monkeypatch, "quickstart_seeds", "--out", str(out), patch={"quickstart": fake_quickstart})
    assert _body(out.with_suffix(".md").read_text()) == _body((RESULTS / "quickstart.md").read_text())


def test_cli_startup_run_mode_rebuilds_the_committed_table_from_the_committed_times(tmp_path, monkeypatch):
    committed = _load("cli_startup")
    monkeypatch.setattr(
        cli_startup, "measure", lambda cmds, rounds: (committed["times_s"], committed["cpu_times_s"])
    )
    out = tmp_path / "cli_startup.json"
    _run_script(monkeypatch, "cli_startup", "--rounds", "21", "--out", str(out))
    written = json.loads(out.read_text())
    assert _body(out.with_suffix(".md").read_text()) == _body((RESULTS / "cli_startup.md").read_text())
    assert (
        written["median_s"] == committed["median_s"] and written["meets_target"] == committed["meets_target"]
    )


def test_engine_overhead_run_mode_writes_a_table_per_setting(tmp_path, monkeypatch):
    out = tmp_path / "engine_overhead.json"
    steps = str(engine_overhead.WARMUP + 2)
    _run_script(
        monkeypatch,
        "engine_overhead",
        "--rounds",
        "1",
        "--steps",
        steps,
        "--batch-size",
        "4",
        "--out",
        str(out),
    )
    assert list(json.loads(out.read_text())["results"]) == list(engine_overhead.SETTINGS)
    assert "| cnn_teacher (cnn teacher, mlp student, batch 4) |" in out.with_suffix(".md").read_text()
