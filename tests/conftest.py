"""Shared fixtures: tiny recipes on the 8x8 digits, and a trained tiny teacher."""

from __future__ import annotations

import socket

import pytest
import torch

from kdforge.config import from_dict
from kdforge.engine.run import run_experiment

torch.set_num_threads(1)


def digits_recipe(tmp_path, name="run", **over):
    """A recipe dict training a small MLP on the 8x8 digits in about a second."""
    d = {
        "name": name,
        "output_dir": str(tmp_path),
        "seed": 0,
        "data": {"name": "digits", "batch_size": 64, "eval_batch_size": 500},
        "student": {"name": "mlp", "kwargs": {"hidden": [32]}},
        "method": {"name": "supervised"},
        "train": {"epochs": 3, "lr": 0.01, "log_every_steps": 5},
    }
    for k, v in over.items():
        d[k] = {**d[k], **v} if isinstance(v, dict) and isinstance(d.get(k), dict) else v
    return d


@pytest.fixture(scope="session")
def digits_teacher(tmp_path_factory):
    """An exported MLP teacher trained on digits: (model config dict with checkpoint, summary)."""
    root = tmp_path_factory.mktemp("teacher")
    rec = digits_recipe(
        root, "teacher", student={"name": "mlp", "kwargs": {"hidden": [128]}}, train={"epochs": 8}
    )
    summary = run_experiment(from_dict(rec), progress=False)
    teacher = {
        "name": "mlp",
        "kwargs": {"hidden": [128]},
        "checkpoint": str(root / "teacher" / "student.safetensors"),
    }
    return teacher, summary


def free_port() -> int:
    """A TCP port nobody listens on now: each `accelerate launch` in the tests gets its own
    (the default 29500 can still be held by an earlier launch, or by another job)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]
