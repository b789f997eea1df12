"""Image side of EAsT / EC: resizing CNN teachers, teacher training, shifted unseen set, named caches."""

from __future__ import annotations

import torch
from typer.testing import CliRunner

from kdforge.config import load_recipe
from kdforge.data import load_dataset
from kdforge.data.embeddings import load
from kdforge.data.embeddings_cli import app
from kdforge.data.vision import shifted_images
from kdforge.engine.run import run_experiment
from kdforge.models import build_model
from kdforge.models.image_teachers import (
    coarse_labels,
    encode,
    save_exported,
    train_autoencoder,
    train_classifier,
)

DIGITS = load_dataset("digits")
TEACHER_KW = {"channels": [4, 8], "fc": 16, "global_pool": False, "resize": 16}


def test_cnn_resize_serves_any_input_size_with_one_set_of_weights():
    torch.manual_seed(0)
    big = build_model("cnn", (1, 28, 28), 5, channels=[4, 8], global_pool=False, resize=28)
    small = build_model("cnn", (1, 8, 8), 5, channels=[4, 8], global_pool=False, resize=28)
    small.load_state_dict(big.state_dict())  # same parameter shapes whatever the input size
    big.eval(), small.eval()
    x8 = torch.rand(3, 1, 8, 8)
    x28 = torch.nn.functional.interpolate(x8, size=(28, 28), mode="bilinear", align_corners=False)
    assert torch.allclose(small(x8), big(x28), atol=1e-6)
    plain = build_model("cnn", (1, 28, 28), 5, channels=[4, 8], global_pool=False)
    plain.load_state_dict(big.state_dict())
    plain.eval()
    assert torch.equal(plain(x28), big(x28))  # 28x28 input: resize is a no-op


def test_shifted_images_is_a_deterministic_label_preserving_shift():
    x = DIGITS.test.tensors["x"][:50]
    a, b = shifted_images(x, seed=0), shifted_images(x, seed=0)
    assert torch.equal(a, b) and a.shape == x.shape
    assert a.min() >= 0 and a.max() <= 1
    assert not torch.equal(a, shifted_images(x, seed=1))
    assert (a - x).abs().mean() > 0.1  # really shifted
    ident = shifted_images(x, max_degrees=0, max_shift=0, noise=0)
    assert torch.allclose(ident, x, atol=1e-5)


def test_coarse_labels_group_fashion_mnist_into_its_five_super_classes():
    # Fashion-MNIST classes: 0 T-shirt, 1 trouser, 2 pullover, 3 dress, 4 coat, 5 sandal, 6 shirt,
    # 7 sneaker, 8 bag, 9 ankle boot -> tops, trousers, dresses, footwear, bags
    expected = [{0, 2, 4, 6}, {1}, {3}, {5, 7, 9}, {8}]
    coarse = coarse_labels(torch.arange(10))
    groups = [set(torch.nonzero(coarse == c).flatten().tolist()) for c in coarse.unique()]
    assert sorted(groups, key=min) == sorted(expected, key=min)
    assert coarse.unique().tolist() == [0, 1, 2, 3, 4]  # usable as class indices of a 5-way head
    labels = torch.tensor([[9, 0], [8, 5]])
    assert torch.equal(coarse_labels(labels), coarse[labels])  # elementwise, any shape


def test_autoencoder_learns_without_labels_and_leaves_head_alone():
    torch.manual_seed(0)
    net = build_model("cnn", (1, 8, 8), 1, **TEACHER_KW)
    head = net.head.weight.clone()
    hist = train_autoencoder(
        net, DIGITS.train.tensors["x"][:128], epochs=3, batch_size=32, lr=5e-3, log=False
    )
    assert hist[-1] < 0.8 * hist[0]
    assert torch.equal(net.head.weight, head)
    assert encode(net, DIGITS.test.tensors["x"][:4]).shape == (4, 16)


def test_classifier_teacher_learns_its_task():
    torch.manual_seed(0)
    x, y = DIGITS.train.tensors["x"][:400], DIGITS.train.tensors["y"][:400] % 2
    net = build_model("cnn", (1, 8, 8), 2, **TEACHER_KW)
    hist = train_classifier(net, x, y, epochs=4, batch_size=32, lr=5e-3, log=False)
    assert hist[-1] > max(0.75, hist[0])


def test_extract_exported_teachers_under_their_own_names(tmp_path, monkeypatch):
    monkeypatch.setenv("KDFORGE_CACHE", str(tmp_path / "cache"))
    runner = CliRunner()
    nets = {}
    for name, seed in (("t_a", 0), ("t_b", 1)):
        torch.manual_seed(seed)
        nets[name] = build_model("cnn", (1, 28, 28), 3, **TEACHER_KW).eval()
        save_exported(nets[name], tmp_path / name, "cnn", TEACHER_KW, (1, 28, 28), 3)
        args = ["extract", "--dataset", "digits", "--model", "cnn", "--path", "fc", "--name", name,
                "--checkpoint", str(tmp_path / f"{name}.safetensors")]  # fmt: skip
        res = runner.invoke(app, args)
        assert res.exit_code == 0, res.output
    x = torch.cat([DIGITS.train.tensors["x"], DIGITS.val.tensors["x"], DIGITS.test.tensors["x"]])
    for name, net in nets.items():
        emb, _, m = load(tmp_path / "cache" / "embeddings" / "digits" / "all" / name, model=name)
        with torch.no_grad():
            assert torch.allclose(emb[:7], encode(net, x[:7]), atol=1e-5)  # the 28x28 teacher on 8x8 digits
    # a spec naming another builder is refused
    args = ["extract", "--dataset", "digits", "--model", "mlp", "--path", "fc", "--name", "t_c",
            "--checkpoint", str(tmp_path / "t_a.safetensors")]  # fmt: skip
    res = runner.invoke(app, args)
    assert res.exit_code != 0 and "holds a 'cnn'" in str(res.exception)


def test_ec_image_recipe_runs_end_to_end(tmp_path, monkeypatch):
    """The digits EC recipe, shortened, with a tiny exported teacher: trains, beats chance, exports."""
    monkeypatch.setenv("KDFORGE_CACHE", str(tmp_path / "cache"))
    torch.manual_seed(0)
    net = build_model("cnn", (1, 28, 28), 1, **TEACHER_KW).eval()
    save_exported(net, tmp_path / "ae", "cnn", TEACHER_KW, (1, 28, 28), 1)
    args = ["extract", "--dataset", "digits", "--model", "cnn", "--path", "fc", "--name", "ae_fmnist",
            "--checkpoint", str(tmp_path / "ae.safetensors")]  # fmt: skip
    assert CliRunner().invoke(app, args).exit_code == 0
    cfg = load_recipe(
        "configs/east/digits_ae_ec.yaml",
        ["train.epochs=3", f"output_dir={tmp_path}", "data.subset=300", "method.kwargs.d=8"],
    )
    s = run_experiment(cfg, progress=False)
    assert s["val_acc"] > 0.3 and (cfg.run_dir / "student.safetensors").is_file()
