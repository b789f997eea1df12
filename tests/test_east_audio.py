"""EAsT / EC end to end on generated speech: synthesise, cache the GE2E teacher's embeddings, train."""

from __future__ import annotations

import math
import shutil

import pytest
import torch
from typer.testing import CliRunner

from kdforge.config import load_recipe
from kdforge.data.embeddings import load
from kdforge.data.embeddings_cli import app as embed_app
from kdforge.data.speech_words import SpeechWordsConfig, generate
from kdforge.engine.run import run_experiment
from kdforge.errors import KdforgeError
from kdforge.models.audio_teachers import resemblyzer_weights


@pytest.fixture(scope="module")
def words(tmp_path_factory):
    """11 voices x 3 words, and the GE2E utterance / mean-frame embeddings of every clip."""
    if not (shutil.which("espeak-ng") and shutil.which("flite")):
        pytest.skip("espeak-ng/flite not installed (make data-audio)")
    try:
        resemblyzer_weights()
    except KdforgeError as e:
        pytest.skip(f"GE2E weights not installed: {e.fix}")
    root = tmp_path_factory.mktemp("audio")
    cfg = SpeechWordsConfig(espeak_voices=6, flite_variants=1, words="01a", val_voices=0.2, test_voices=0.2)
    generate(root / "words", cfg, progress=False)
    for path in ("encoder", "encoder.frames_mean"):
        cache = str(root / "ge2e" / path)
        args = ["extract", "--dataset", "audio_folder", "--data-dir", str(root / "words"),
                "--model", "ge2e_classifier", "--path", path, "--cache", cache]  # fmt: skip
        res = CliRunner().invoke(embed_app, args)
        assert res.exit_code == 0, res.output
    return root


def test_teacher_embeddings_are_cached_per_clip(words):
    emb, _, manifest = load(words / "ge2e" / "encoder", model="ge2e_classifier@encoder")
    assert emb.shape == (33, 256) and manifest["identity"]["dataset"] == "audio_folder"
    assert torch.allclose(emb.norm(dim=1), torch.ones(33), atol=1e-5)
    frames, _, _ = load(words / "ge2e" / "encoder.frames_mean")
    assert frames.shape == (33, 256) and not torch.allclose(frames, emb)


@pytest.mark.parametrize("recipe", ["words_baseline", "words_ec", "words_teacher_probe"])
def test_audio_recipes_run_end_to_end(words, tmp_path, recipe):
    overrides = [
        f"output_dir={tmp_path}", f"data.data_dir={words / 'words'}", "train.epochs=2",
        "data.batch_size=8", "data.kwargs.per_class=null",
    ]  # fmt: skip
    if recipe == "words_ec":
        overrides = [
            o.replace("data.kwargs.per_class", "data.kwargs.base_kwargs.per_class") for o in overrides
        ]
        overrides += [f"data.kwargs.cache={words / 'ge2e' / 'encoder'}", "method.kwargs.d=4"]
    summary = run_experiment(load_recipe(f"configs/east_audio/{recipe}.yaml", overrides), progress=False)
    run_dir = tmp_path / load_recipe(f"configs/east_audio/{recipe}.yaml").name
    assert (run_dir / "student.safetensors").is_file()
    accuracies = [v for k, v in summary.items() if "acc" in k and isinstance(v, float)]
    assert accuracies and all(0.0 <= a <= 1.0 and math.isfinite(a) for a in accuracies)
