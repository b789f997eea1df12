"""A user's own dataset/model code reaches every command: ``--plugin FILE_OR_MODULE`` and entry points."""

from __future__ import annotations

import json
import os
import textwrap

import pytest
import yaml

from kdforge import registry
from kdforge.data import load_dataset
from kdforge.errors import KdforgeError
from kdforge.registry import DATASETS, load_plugin, load_plugins

PLUGIN = textwrap.dedent(
    '''
    """A user's file: a data set and a model registered by name."""
    import torch
    from torch import nn

    from kdforge import register_dataset, register_model
    from kdforge.data import Splits, TensorData


    @register_dataset("{prefix}blobs")
    def blobs(data_dir=None, val_size=20, seed=0, subset=None):
        """Two Gaussian blobs in 4-D."""
        g = torch.Generator().manual_seed(0)
        y = torch.arange(120) % 2
        x = torch.randn(120, 4, generator=g) + 2.0 * y[:, None]
        part = lambda a, b: TensorData({{"x": x[a:b], "y": y[a:b]}})
        return Splits(part(0, 80), part(80, 80 + val_size), part(100, 120), 2, (4,), "blobs", ["a", "b"])


    class Net(nn.Module):
        def __init__(self, num_classes, width):
            super().__init__()
            self.body = nn.Sequential(nn.Linear(4, width), nn.ReLU(), nn.Linear(width, num_classes))

        def forward(self, x):
            return self.body(x)


    @register_model("{prefix}net")
    def net(input_shape, num_classes, width: int = 8):
        """A two-layer MLP on 4 features."""
        return Net(num_classes, width)
    '''
)


@pytest.fixture
def clean_registries(monkeypatch):
    """Plugins loaded in this test leave no entries behind."""
    for reg in (registry.DATASETS, registry.MODELS, registry.METHODS):
        monkeypatch.setattr(reg, "_items", dict(reg._items))
    monkeypatch.setattr(registry, "_user_plugins", {})


def write_plugin(directory, name="my_plugin", prefix="my_"):
    path = directory / f"{name}.py"
    path.write_text(PLUGIN.format(prefix=prefix))
    return path


def test_file_plugin_registers_once(tmp_path, clean_registries):
    path = write_plugin(tmp_path)
    with pytest.raises(KdforgeError, match="unknown dataset 'my_blobs'"):
        load_dataset("my_blobs")
    module = load_plugin(str(path))
    assert load_plugin(str(path)) is module  # a second load is a no-op, not a clash
    splits = load_dataset("my_blobs")
    assert splits.class_names == ["a", "b"] and len(splits.train) == 80


def test_module_plugin(tmp_path, clean_registries, monkeypatch):
    write_plugin(tmp_path, "my_module_plugin", prefix="mod_")
    monkeypatch.syspath_prepend(str(tmp_path))
    load_plugins(["my_module_plugin"])
    assert "mod_blobs" in DATASETS.names() and "mod_net" in registry.MODELS.names()


@pytest.mark.parametrize(
    ("source", "spec", "message"),
    [
        (None, "missing.py", "plugin file 'missing.py' does not exist"),
        (None, "no_such_plugin_module", "neither a file nor an importable module"),
        (
            "import no_such_dependency_xyz\n",
            "p.py",
            "failed to import: ModuleNotFoundError.*no_such_dependency_xyz",
        ),
        ("raise RuntimeError('boom')\n", "p.py", r"plugin 'p\.py' failed to import: RuntimeError: boom"),
        (
            "from kdforge import register_dataset\nregister_dataset('digits')(lambda: None)\n",
            "p.py",
            r"plugin 'p\.py': dataset 'digits' is registered twice \(already by kdforge\.data\.vision\)",
        ),
    ],
)
def test_bad_plugins(tmp_path, clean_registries, monkeypatch, source, spec, message):
    monkeypatch.chdir(tmp_path)
    if source is not None:
        (tmp_path / spec).write_text(source)
    with pytest.raises(KdforgeError, match=message):
        load_plugin(spec)


def _fake_installed_package(root, broken=False):
    """A package on sys.path whose metadata declares a kdforge.plugins entry point."""
    write_plugin(root, "ep_plugin", prefix="ep_")
    info = root / "ep_plugin-0.1.dist-info"
    info.mkdir()
    info.joinpath("METADATA").write_text("Metadata-Version: 2.1\nName: ep-plugin\nVersion: 0.1\n")
    target = "ep_plugin_missing" if broken else "ep_plugin"
    info.joinpath("entry_points.txt").write_text(f"[kdforge.plugins]\nblobs = {target}\n")


def test_entry_point_plugins(tmp_path, clean_registries, monkeypatch):
    _fake_installed_package(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    assert registry.load_entry_point_plugins() == ["blobs"]
    assert "ep_blobs" in DATASETS.names()


def test_broken_entry_point_names_its_package(tmp_path, clean_registries, monkeypatch):
    _fake_installed_package(tmp_path, broken=True)
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(
        KdforgeError, match=r"installed plugin 'blobs' \(ep_plugin_missing, package ep-plugin\)"
    ):
        registry.load_entry_point_plugins()


def _kdforge_process(*args, env=None):
    """``kdforge ARGS`` in a fresh process: a plugin must reach a command with nothing pre-imported."""
    import subprocess
    import sys

    cmd = [sys.executable, "-m", "kdforge.cli", *(str(a) for a in args)]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=600, env={**os.environ, **(env or {})})


def test_cli_plugin_reaches_list_run_and_embed(tmp_path):
    kd = _kdforge_process

    plugin = write_plugin(tmp_path)
    recipe = {
        "name": "blobs",
        "output_dir": str(tmp_path / "runs"),
        "data": {"name": "my_blobs", "batch_size": 16},
        "student": {"name": "my_net", "kwargs": {"width": 8}},
        "method": {"name": "supervised"},
        "train": {"epochs": 2, "lr": 0.05},
    }
    (tmp_path / "r.yaml").write_text(yaml.safe_dump(recipe))
    without = kd("run", tmp_path / "r.yaml", "--no-progress")
    assert without.returncode == 2 and "unknown dataset 'my_blobs'" in without.stderr
    assert "Traceback" not in without.stderr
    r = kd("--plugin", plugin, "run", tmp_path / "r.yaml", "--no-progress")
    assert r.returncode == 0, r.stderr
    run_dir = tmp_path / "runs" / "blobs"
    assert json.loads((run_dir / "labels.json").read_text()) == {"class_names": ["a", "b"]}
    extract = kd(
        "--plugin",
        plugin,
        "embed",
        "extract",
        "--dataset",
        "my_blobs",
        "--model",
        "my_net",
        "--checkpoint",
        run_dir / "student.safetensors",
        "--cache",
        tmp_path / "cache",
    )
    assert extract.returncode == 0, extract.stderr
    assert json.loads((tmp_path / "cache" / "manifest.json").read_text())["identity"]["dataset"] == "my_blobs"


def test_cli_module_and_entry_point_plugins_and_errors(tmp_path):
    kd = _kdforge_process

    write_plugin(tmp_path, "my_module_plugin", prefix="mod_")
    _fake_installed_package(tmp_path)
    env = {"PYTHONPATH": os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")])}
    r = kd("--plugin", "my_module_plugin", "list", "datasets", env=env)
    assert r.returncode == 0, r.stderr
    assert "  mod_blobs                Two Gaussian blobs in 4-D." in r.stdout
    assert "  ep_blobs " in r.stdout  # an installed entry point needs no option
    bad = kd("--plugin", tmp_path / "nope.py", "list")
    assert bad.returncode == 2 and "plugin file" in bad.stderr and "does not exist" in bad.stderr
    assert "Traceback" not in bad.stderr
