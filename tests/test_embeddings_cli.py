"""`kdforge embed extract` on a registered model (8x8 digits + MLP checkpoint), end to end."""

from __future__ import annotations

import torch
from safetensors.torch import save_file
from typer.testing import CliRunner

from kdforge.data import load_dataset
from kdforge.data.embeddings import load
from kdforge.data.embeddings_cli import app
from kdforge.data.embeddings_dataset import with_teacher_emb
from kdforge.models import build_model


def test_extract_registered_model_and_attach(tmp_path, monkeypatch):
    monkeypatch.setenv("KDFORGE_CACHE", str(tmp_path / "cache"))
    torch.manual_seed(0)
    net = build_model("mlp", (1, 8, 8), 10)
    save_file(net.state_dict(), str(tmp_path / "t.safetensors"))
    runner = CliRunner()
    res = runner.invoke(app, ["extract", "--dataset", "digits", "--model", "mlp", "--path", "blocks.0"])
    assert res.exit_code != 0 and "no checkpoint" in str(res.exception)
    ckpt = str(tmp_path / "t.safetensors")
    args = ["extract", "--dataset", "digits", "--model", "mlp", "--checkpoint", ckpt, "--path", "blocks.0"]
    res = runner.invoke(app, args)
    assert res.exit_code == 0, res.output
    entry = tmp_path / "cache" / "embeddings" / "digits" / "all" / "mlp_blocks.0"
    emb, _, m = load(entry, dataset="digits", model="mlp@blocks.0")
    assert emb.shape[0] == 1797 and m["complete"]
    # the dataset wrapper attaches embeddings to train only, matched by content for another seed's split
    s = with_teacher_emb(base="digits", model="mlp@blocks.0", cache=str(entry), seed=3)
    assert "teacher_emb" in s.train.tensors and "teacher_emb" not in s.val.tensors
    x = s.train.tensors["x"][:5]
    with torch.no_grad():
        expect = net.blocks[0](x.flatten(1))
    assert torch.allclose(s.train.tensors["teacher_emb"][:5], expect, atol=1e-5)
    assert len(s.train) == len(load_dataset("digits", seed=3).train)
