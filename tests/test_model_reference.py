"""Models by reference (hf:DIR, torchscript:FILE, torchvision:/timm:ARCH, py:MODULE:FUNCTION,
FILE.py:FUNCTION) built on the fly in tmp_path, each run in a few-step experiment; their errors."""

from __future__ import annotations

import sys
import types

import pytest
import torch
import yaml
from torch import nn

from kdforge.config import from_dict, load_recipe
from kdforge.data import Splits, TensorData
from kdforge.engine.run import build_method, load_splits, run_experiment
from kdforge.errors import KdforgeError
from kdforge.models import build_model, check_num_classes, load_model
from kdforge.registry import DATASETS

from conftest import digits_recipe

VOCAB, MAX_LEN = 40, 8
BUILDER_FILE = """
import torch
from torch import nn


class Net(nn.Module):
    def __init__(self, pixels, num_classes, width):
        super().__init__()
        self.body = nn.Sequential(nn.Flatten(), nn.Linear(pixels, width), nn.ReLU())
        self.head = nn.Linear(width, num_classes)

    def forward(self, x):
        return self.head(self.body(x))


def tiny(input_shape, num_classes, width=16):
    pixels = 1
    for s in input_shape:
        pixels *= s
    return Net(pixels, num_classes, width)


def not_a_model(input_shape, num_classes):
    return "a string"


NOT_CALLABLE = 3
"""


def tiny_tokens(seed: int = 0, **_ignored) -> Splits:
    """Random token sequences labelled by whether token 1 occurs: a 2-class text task."""
    g = torch.Generator().manual_seed(seed)

    def split(n: int) -> TensorData:
        ids = torch.randint(2, VOCAB, (n, MAX_LEN), generator=g)
        ids[torch.rand(n, MAX_LEN, generator=g) < 0.15] = 1
        mask = torch.ones(n, MAX_LEN, dtype=torch.int64)
        mask[:, -2:] = 0
        ids[:, -2:] = 0
        return TensorData({"input_ids": ids, "attention_mask": mask, "y": (ids == 1).any(1).long()})

    return Splits(split(64), split(32), split(32), 2, (MAX_LEN,), "tiny_tokens")


@pytest.fixture
def text_data(monkeypatch):
    """Register the tiny text data set for this test only (registry parametrized tests stay as they are)."""
    DATASETS.names()  # load the built-in registrations first
    monkeypatch.setitem(DATASETS._items, "tiny_tokens", tiny_tokens)


@pytest.fixture(scope="module")
def hf_dirs(tmp_path_factory):
    """Tiny BERTs saved with save_pretrained: a 2-class classifier, a 3-class one, a bare encoder."""
    from transformers import BertConfig, BertForSequenceClassification, BertModel

    root = tmp_path_factory.mktemp("hf")
    config = dict(
        vocab_size=VOCAB,
        hidden_size=16,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=32,
        max_position_embeddings=16,
    )
    torch.manual_seed(0)
    BertForSequenceClassification(BertConfig(**config, num_labels=2)).save_pretrained(root / "cls2")
    BertForSequenceClassification(BertConfig(**config, num_labels=3)).save_pretrained(root / "cls3")
    BertModel(BertConfig(**config)).save_pretrained(root / "encoder")
    return root


def text_recipe(tmp_path, **over):
    d = {
        "name": "run",
        "output_dir": str(tmp_path / "runs"),
        "data": {"name": "tiny_tokens", "batch_size": 16, "eval_batch_size": 32},
        "student": {"name": "text_cnn", "kwargs": {"emb": 8, "channels": [8], "kernel": 3}},
        "method": {"name": "supervised"},
        "train": {"epochs": 1, "max_steps": 3, "lr": 0.01},
    }
    d.update(over)
    return d


def scripted_cnn(path, num_classes=10):
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 6 * 6, num_classes))
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.jit.save(torch.jit.script(net), str(path))
    return net


def write_recipe(path, data):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(data))
    return path


# ----------------------------------------------------------------------------- each kind, end to end


def test_hf_teacher_with_head_distils_into_a_student_derived_from_it(tmp_path, text_data, hf_dirs):
    """hf:DIR teacher (its own 2-class head, no checkpoint needed) -> KD into its layer 0 + new head."""
    teacher = {"name": f"hf:{hf_dirs / 'cls2'}"}
    student = {"name": f"hf:{hf_dirs / 'encoder'}", "kwargs": {"layers": [0]}}
    cfg = from_dict(text_recipe(tmp_path, teacher=teacher, student=student, method={"name": "kd"}))
    summary = run_experiment(cfg, progress=False)
    assert summary["steps"] == 3 and summary["teacher_params"] > summary["student_params"]
    exported = load_model(cfg.run_dir / "student")  # rebuilt from hf:DIR + kwargs, then its weights
    assert len(exported.encoder.encoder.layer) == 1
    method = build_method(cfg, load_splits(cfg))
    assert sum(p.numel() for p in exported.parameters()) == summary["student_params"]
    # the teacher is the saved classifier itself: same logits as transformers gives
    from transformers import AutoModelForSequenceClassification

    batch = tiny_tokens().val.tensors
    reference = AutoModelForSequenceClassification.from_pretrained(hf_dirs / "cls2", local_files_only=True)
    want = reference.eval()(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    got = method.teacher(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
    assert torch.allclose(got, want, atol=1e-6)


def test_hf_narrow_student_and_new_head_on_a_classifier(hf_dirs):
    narrow = build_model(f"hf:{hf_dirs / 'encoder'}", (MAX_LEN,), 2, layers=[1], width_factor=2)
    assert narrow.encoder.config.hidden_size == 8 and len(narrow.encoder.encoder.layer) == 1
    renewed = build_model(f"hf:{hf_dirs / 'cls3'}", (MAX_LEN,), 2, head="new")
    assert renewed.head.out_features == 2
    shallow = build_model(f"hf:{hf_dirs / 'cls2'}", (MAX_LEN,), 2, layers=[1])  # keeps its own head
    full = build_model(f"hf:{hf_dirs / 'cls2'}", (MAX_LEN,), 2)
    assert len(shallow.model.bert.encoder.layer) == 1 and shallow.model.config.num_hidden_layers == 1
    assert torch.equal(
        shallow.model.bert.encoder.layer[0].output.dense.weight,
        full.model.bert.encoder.layer[1].output.dense.weight,
    )


def test_torchscript_teacher_from_a_recipe_path_relative_to_the_recipe(tmp_path, monkeypatch):
    """torchscript:FILE written relative to the recipe file; the run is started from another cwd."""
    net = scripted_cnn(tmp_path / "recipes" / "models" / "teacher.pt")
    recipe = write_recipe(
        tmp_path / "recipes" / "kd.yaml",
        digits_recipe(
            tmp_path / "runs",
            teacher={"name": "torchscript:models/teacher.pt"},
            method={"name": "kd"},
            train={"epochs": 1, "max_steps": 3},
        ),
    )
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    cfg = load_recipe(recipe)
    assert cfg.teacher.name == f"torchscript:{tmp_path / 'recipes' / 'models' / 'teacher.pt'}"
    summary = run_experiment(cfg, progress=False)
    assert summary["steps"] == 3
    assert summary["teacher_params"] == sum(p.numel() for p in net.parameters())


def test_builder_file_and_module_as_student(tmp_path, monkeypatch):
    (tmp_path / "my_models.py").write_text(BUILDER_FILE)
    recipe = digits_recipe(
        tmp_path / "runs",
        student={"name": "my_models.py:tiny", "kwargs": {"width": 12}},
        train={"epochs": 1, "max_steps": 2},
    )
    cfg = load_recipe(write_recipe(tmp_path / "recipe.yaml", recipe))
    summary = run_experiment(cfg, progress=False)
    assert summary["student_params"] == 64 * 12 + 12 + 12 * 10 + 10
    assert load_model(cfg.run_dir / "student")(x=torch.zeros(1, 1, 8, 8)).shape == (1, 10)
    monkeypatch.syspath_prepend(str(tmp_path))
    model = build_model("py:my_models:tiny", (1, 8, 8), 10, width=5)
    assert model.head.in_features == 5


class XNet(nn.Module):
    """Flatten + linear, called as ``forward(x)`` like torchvision/timm models."""

    def __init__(self, num_classes: int, channels: int = 1) -> None:
        super().__init__()
        self.fc = nn.Linear(channels * 64, num_classes)

    def forward(self, x):
        return self.fc(x.flatten(1))


def fake_vision_package(name: str, build) -> types.ModuleType:
    """Stands in for torchvision/timm (which do not import beside this CPU torch build)."""
    module = types.ModuleType(name)
    if name == "torchvision":
        module.models = types.SimpleNamespace(
            list_models=lambda: ["tinynet"],
            get_model=lambda arch, weights, num_classes, **kw: build(num_classes, 1),
        )
    else:
        module.list_models = lambda: ["tinynet"]
        module.create_model = lambda arch, pretrained, num_classes, in_chans=3, **kw: build(
            num_classes, in_chans
        )
    return module


@pytest.mark.parametrize("package", ["torchvision", "timm"])
def test_architecture_with_a_local_weights_file(tmp_path, monkeypatch, package):
    """ARCH + checkpoint (a torch.save-d state dict): the weights file is what the teacher computes."""

    monkeypatch.setitem(sys.modules, package, fake_vision_package(package, XNet))
    torch.manual_seed(3)
    trained = XNet(10, 1)
    torch.save({"state_dict": trained.state_dict()}, tmp_path / "weights.pth")
    cfg = from_dict(
        digits_recipe(
            tmp_path,
            teacher={"name": f"{package}:tinynet", "checkpoint": str(tmp_path / "weights.pth")},
            method={"name": "kd"},
            train={"epochs": 1, "max_steps": 2},
        )
    )
    method = build_method(cfg, load_splits(cfg))
    x = torch.randn(2, 1, 8, 8)
    assert torch.equal(method.teacher(x=x), trained(x))
    assert run_experiment(cfg, progress=False)["teacher_params"] == 64 * 10 + 10
    with pytest.raises(KdforgeError, match=rf"{package} has no architecture 'tinyent' \(nearest: tinynet"):
        build_model(f"{package}:tinyent", (1, 8, 8), 10)
    cfg.teacher.checkpoint = None
    with pytest.raises(KdforgeError, match="needs a trained teacher but teacher.checkpoint is unset"):
        build_method(cfg, load_splits(cfg))


@pytest.mark.parametrize("package", ["torchvision", "timm"])
def test_real_vision_packages_when_they_import(package):
    try:
        __import__(package)
    except Exception as e:  # noqa: BLE001  (torchvision raises RuntimeError beside this torch build)
        with pytest.raises(
            KdforgeError, match=rf"(?s)need the Python package '{package}'.*kdforge\[{package}\]"
        ):
            build_model(f"{package}:resnet18", (3, 32, 32), 10)
        pytest.skip(f"{package} does not import here: {type(e).__name__}")
    model = build_model(f"{package}:resnet18", (3, 32, 32), 10)
    assert model(x=torch.randn(1, 3, 32, 32)).shape == (1, 10)


# ----------------------------------------------------------------------------- errors


def test_hf_dir_errors(tmp_path, hf_dirs):
    (tmp_path / "half").mkdir()
    (tmp_path / "half" / "config.json").write_text("{}")
    with pytest.raises(KdforgeError, match=r"not a Hugging Face model directory: missing model weights"):
        build_model(f"hf:{tmp_path / 'half'}", (MAX_LEN,), 2)
    (tmp_path / "empty").mkdir()
    with pytest.raises(KdforgeError, match=r"missing config.json; model weights \(one of model.safetensors"):
        build_model(f"hf:{tmp_path / 'empty'}", (MAX_LEN,), 2)
    with pytest.raises(KdforgeError, match="does not exist"):
        build_model(f"hf:{tmp_path / 'nowhere'}", (MAX_LEN,), 2)
    with pytest.raises(KdforgeError, match=r"head in .* has 3 classes, the data 2.*\n.*head: new"):
        build_model(f"hf:{hf_dirs / 'cls3'}", (MAX_LEN,), 2)
    with pytest.raises(KdforgeError, match="has no sequence-classification head"):
        build_model(f"hf:{hf_dirs / 'encoder'}", (MAX_LEN,), 2, head="keep")
    with pytest.raises(KdforgeError, match=r"has no option 'layer' \(did you mean: layers"):
        build_model(f"hf:{hf_dirs / 'encoder'}", (MAX_LEN,), 2, layer=[0])
    with pytest.raises(KdforgeError, match=r"cannot keep encoder layers \[5\] of a 2-layer model"):
        build_model(f"hf:{hf_dirs / 'encoder'}", (MAX_LEN,), 2, layers=[5])
    with pytest.raises(KdforgeError, match="width_factor narrows a BERT encoder with a new head only"):
        build_model(f"hf:{hf_dirs / 'cls2'}", (MAX_LEN,), 2, width_factor=2)


def test_torchscript_errors(tmp_path):
    (tmp_path / "broken.pt").write_bytes(b"not a zip archive")
    with pytest.raises(
        KdforgeError, match=r"TorchScript file '.*broken.pt' does not load.*\n.*torch.jit.save"
    ):
        build_model(f"torchscript:{tmp_path / 'broken.pt'}", (1, 8, 8), 10)
    with pytest.raises(KdforgeError, match="TorchScript file .* does not exist"):
        build_model(f"torchscript:{tmp_path / 'none.pt'}", (1, 8, 8), 10)
    scripted_cnn(tmp_path / "ok.pt")
    with pytest.raises(KdforgeError, match="takes no kwargs"):
        build_model(f"torchscript:{tmp_path / 'ok.pt'}", (1, 8, 8), 10, width=3)


def test_unknown_scheme_lists_the_valid_forms():
    with pytest.raises(KdforgeError, match=r"unknown model reference scheme 'onnx:'") as e:
        build_model("onnx:model.onnx", (1, 8, 8), 10)
    for form in (
        "hf:DIR",
        "torchscript:FILE",
        "torchvision:ARCH",
        "timm:ARCH",
        "py:MODULE:FUNCTION",
        "FILE.py:",
    ):
        assert form in str(e.value)


def test_builder_errors(tmp_path):
    (tmp_path / "my_models.py").write_text(BUILDER_FILE)
    (tmp_path / "broken.py").write_text("raise ValueError('boom')\n")
    file = tmp_path / "my_models.py"
    with pytest.raises(KdforgeError, match="'.*my_models.py:NOT_CALLABLE' is a int, not a callable builder"):
        build_model(f"{file}:NOT_CALLABLE", (1, 8, 8), 10)
    with pytest.raises(KdforgeError, match=r"returned a str, not a torch nn.Module"):
        build_model(f"{file}:not_a_model", (1, 8, 8), 10)
    with pytest.raises(KdforgeError, match=r"has no 'tiyn' \(nearest: tiny"):
        build_model(f"{file}:tiyn", (1, 8, 8), 10)
    with pytest.raises(
        KdforgeError, match=r"running model builder file .*broken.py' failed: ValueError: boom"
    ):
        build_model(f"{tmp_path / 'broken.py'}:f", (1, 8, 8), 10)
    with pytest.raises(KdforgeError, match="model builder file .* does not exist"):
        build_model(f"{tmp_path / 'none.py'}:f", (1, 8, 8), 10)
    with pytest.raises(KdforgeError, match="cannot import module 'no_such_module_xyz'"):
        build_model("py:no_such_module_xyz:f", (1, 8, 8), 10)


def test_class_count_mismatch_between_data_and_teacher_is_caught_when_the_run_is_built(tmp_path):
    scripted_cnn(tmp_path / "five.pt", num_classes=5)
    cfg = from_dict(
        digits_recipe(
            tmp_path, teacher={"name": f"torchscript:{tmp_path / 'five.pt'}"}, method={"name": "kd"}
        )
    )
    with pytest.raises(KdforgeError, match=r"the teacher outputs 5 classes but the data has 10") as e:
        run_experiment(cfg, progress=False)
    assert "head for the data's 10 classes" in str(e.value)
    assert not cfg.run_dir.exists()  # refused before anything was written


def test_check_num_classes_names_what_the_model_returns():
    inputs = {"x": torch.zeros(2, 3)}

    class Wrong(nn.Module):
        def forward(self, x):
            return x.unsqueeze(-1)

    class Dropout(nn.Module):
        def __init__(self):
            super().__init__()
            self.drop = nn.Dropout(0.5)

        def forward(self, x, attention_mask=None):
            assert not self.training  # checked in eval mode
            return self.drop(x)

    with pytest.raises(KdforgeError, match=r"returns a tensor of shape \(2, 3, 1\), not logits"):
        check_num_classes(Wrong(), inputs, 3, "student")
    with pytest.raises(KdforgeError, match=r"student does not run on a batch of this data \(x \(2, 3\)\)"):
        check_num_classes(XNet(3), inputs, 3, "student")
    model = Dropout().train()
    check_num_classes(
        model, {**inputs, "teacher_emb": torch.zeros(2, 5)}, 3, "student"
    )  # extra input dropped
    assert model.training  # the mode is restored


def test_kdforge_list_names_the_reference_forms():
    from typer.testing import CliRunner

    from kdforge.cli import app

    out = CliRunner().invoke(app, ["list", "models"]).output
    assert "or by reference: hf:DIR, torchscript:FILE, torchvision:ARCH, timm:ARCH" in out
