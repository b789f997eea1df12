"""Every registered method under ``accelerate launch --num_processes 2`` (CPU, gloo) == 1 process.

One launch of ``distributed_driver.py`` trains every method's tiny recipe in turn (about
a second each); one plain run of the same driver is the reference at the same global batch
(64, one epoch: 17 AdamW steps). Stated tolerances:

* a method whose losses are means over examples differs only in float summation order
  (each process averages half the batch's gradient, the all-reduce adds the halves): final
  validation loss and last training loss within 1e-4, final trainable state within 1e-5
  relative (L2 over all tensors), accuracies equal to one example in 200 (0.005). Measured
  when written: losses equal to 1e-6, states to 7e-8.
* a method with ``batch_statistics`` (a loss that is a statistic of the whole batch, e.g.
  EAsT's distance correlation) computes it over each process's half: a slightly different
  objective, so only the outcome is compared: validation loss within 0.01, accuracies within
  0.02 (measured: 1.1e-3 and 0.003).

Whatever the method, every rank ends with a bit-identical model (batch-norm statistics too).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from typer.testing import CliRunner

from distributed_driver import EXTRA_RECIPES, RECIPES
from kdforge.config import from_dict
from kdforge.data.embeddings_cli import app as embed_app
from kdforge.engine.run import run_experiment
from kdforge.methods._base import Method
from kdforge.models import build_model
from kdforge.models.image_teachers import save_exported
from kdforge.registry import METHODS, list_methods
from test_registry import BATCH, METHOD_SETUPS

from conftest import digits_recipe, free_port

DRIVER = Path(__file__).with_name("distributed_driver.py")
EXACT = {"loss": 1e-4, "param": 1e-5, "acc": 0.005}
BATCH_STATISTICS = {"loss": 0.01, "acc": 0.02}


def _teachers(root: Path, wide: dict) -> Path:
    """teachers.json: the session's digits teacher and a 4-layer one for Theseus (16 wide)."""
    rec = digits_recipe(
        root, "deep", student={"name": "mlp", "kwargs": {"hidden": [16] * 4}}, train={"epochs": 2}
    )
    run_experiment(from_dict(rec), progress=False)
    deep = {
        "name": "mlp",
        "kwargs": {"hidden": [16] * 4},
        "checkpoint": str(root / "deep" / "student.safetensors"),
    }
    path = root / "teachers.json"
    path.write_text(json.dumps({"wide": wide, "deep": deep}))
    return path


def _embedding_cache(root: Path) -> Path:
    """A cache root holding the digits' embeddings by teacher ``tiny_mlp`` (for EAsT)."""
    torch.manual_seed(0)
    net = build_model("mlp", (1, 8, 8), 10, hidden=[12]).eval()
    save_exported(net, root / "tiny_mlp", "mlp", {"hidden": [12]}, (1, 8, 8), 10)
    cache = root / "cache"
    args = ["extract", "--dataset", "digits", "--model", "mlp", "--path", "blocks.0", "--name", "tiny_mlp",
            "--checkpoint", str(root / "tiny_mlp.safetensors")]  # fmt: skip
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("KDFORGE_CACHE", str(cache))
        res = CliRunner().invoke(embed_app, args)
    assert res.exit_code == 0, res.output
    return cache


@pytest.fixture(scope="module")
def runs(tmp_path_factory, digits_teacher):
    """(one-process results, two-process results, their work directories) of the driver."""
    root = tmp_path_factory.mktemp("dist")
    teachers = _teachers(root, digits_teacher[0])
    env = {**os.environ, "OMP_NUM_THREADS": "1", "KDFORGE_CACHE": str(_embedding_cache(root))}
    results = []
    launch = [str(Path(sys.executable).parent / "accelerate"), "launch", "--multi_gpu",
              "--main_process_port", str(free_port()), "--num_processes", "2",
              "--num_machines", "1", "--mixed_precision", "no",
              "--dynamo_backend", "no"]  # fmt: skip
    for tag, prefix in (("one", [sys.executable]), ("two", launch)):
        work, out = root / tag, root / f"{tag}.json"
        cmd = [*prefix, str(DRIVER), "--work", str(work), "--teachers", str(teachers), "--out", str(out)]
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
        assert r.returncode == 0, r.stderr[-4000:]
        results.append((json.loads(out.read_text()), work))
    return results


def test_every_registered_method_has_a_recipe():
    missing = sorted(set(list_methods()) - set(RECIPES))
    assert not missing, f"add a tiny recipe for {missing} to RECIPES in tests/distributed_driver.py"


@pytest.mark.parametrize("name", list_methods())
def test_two_processes_match_one(runs, name):
    (one, work1), (two, work2) = runs
    assert name in one, f"no recipe for method '{name}' in tests/distributed_driver.py"
    a, b = one[name], two[name]
    assert (a["processes"], b["processes"]) == (1, 2)
    assert a["steps"] == b["steps"] > 0 and a["skipped_steps"] == b["skipped_steps"] == 0
    tol = BATCH_STATISTICS if METHODS.get(name).batch_statistics else EXACT
    assert abs(a["val_loss"] - b["val_loss"]) <= tol["loss"], (a, b)
    assert abs(a["val_acc"] - b["val_acc"]) <= tol["acc"] and abs(a["test_acc"] - b["test_acc"]) <= tol["acc"]
    if "param" not in tol:
        return
    # the logged training loss is the global batch's (averaged over processes), not rank 0's half
    assert abs(a["last_train_loss"] - b["last_train_loss"]) <= tol["loss"]
    s1, s2 = load_file(str(work1 / f"{name}.safetensors")), load_file(str(work2 / f"{name}.safetensors"))
    assert s1.keys() == s2.keys()
    diff = torch.cat([(s1[k].double() - s2[k].double()).reshape(-1) for k in s1]).norm()
    norm = torch.cat([s1[k].double().reshape(-1) for k in s1]).norm()
    assert diff / norm <= tol["param"], float(diff / norm)


@pytest.mark.parametrize("name", [*list_methods(), *EXTRA_RECIPES])
def test_every_rank_ends_with_the_same_model(runs, name):
    """Parameters and buffers (batch-norm running statistics too) are bit-identical on both ranks,
    which stopped at the same step with the same best step."""
    result = runs[1][0][name]
    assert len(result["digests"]) == 2 and result["digests"][0] == result["digests"][1]
    assert result["loops"][0] == result["loops"][1]


def test_early_stopping_stops_every_rank_where_one_process_stops(runs):
    (one, _), (two, _) = runs
    a, b = one["supervised_early_stop"], two["supervised_early_stop"]
    assert a["stopped_early"] and b["stopped_early"] and a["steps"] == b["steps"] < 5 * 17
    assert b["loops"][0] == b["loops"][1] == a["loops"][0]


def test_broadcasts_hand_rank_0s_values_to_every_rank(runs):
    per_rank = runs[1][0]["_broadcasts"]["per_rank"]
    assert per_rank == [{"values": [0.0, 0.5], "tensors": [0.0, 0.0], "int_tensor": [0]}] * 2


def test_gradients_missing_on_some_ranks_take_part_in_the_all_reduce(runs):
    got = runs[1][0]["_uneven_gradients"]
    assert got["used_by_all"] == [1.5] * 3  # (1 + 2) / 2
    assert got["used_by_rank1"] == [2.0] * 3  # (0 + 4) / 2: rank 0 contributed zeros
    assert got["unused"] is None  # no rank had it: stays None, as on one process
    assert got["buffer"] == [0.5, 0.5] and got["loss"] == [1.0]


@pytest.mark.parametrize("name", list_methods())
def test_training_step_takes_no_random_decision_from_a_per_process_stream(name):
    """Audit of every method (no dropout in these models): with ``shared_rng`` seeded alike, the
    loss does not depend on the global RNG, which the engine seeds differently on each process."""
    method = METHOD_SETUPS[name]()
    method.train()
    batch = dict(getattr(method, "_test_batch", BATCH))
    losses = []
    for process_seed in (1, 2):
        torch.manual_seed(process_seed)
        for m in method.modules():
            if isinstance(m, Method):
                m.shared_rng.manual_seed(0)
        losses.append({k: v.detach() for k, v in method.training_step(batch)[1].items()})
    assert losses[0].keys() == losses[1].keys()
    assert all(torch.equal(losses[0][k], losses[1][k]) for k in losses[0]), losses
