"""The GE2E speaker-encoder teacher: weights lookup, deterministic embeddings, parity with Resemblyzer."""

from __future__ import annotations

import shutil
import subprocess

import numpy as np
import pytest
import torch

from kdforge.data.audio_folder import fix_length, read_audio
from kdforge.errors import KdforgeError
from kdforge.models import build_model
from kdforge.models.audio_features import MelFrontEnd
from kdforge.models.audio_teachers import GE2EEncoder, partial_windows, resemblyzer_weights


def _weights_or_skip():
    try:
        return resemblyzer_weights()
    except KdforgeError as e:
        pytest.skip(f"GE2E weights not installed: {e.fix}")


@pytest.fixture(scope="module")
def encoder():
    _weights_or_skip()
    return GE2EEncoder().eval()


def _clips(tmp_path) -> list[np.ndarray]:
    """A spoken word from espeak-ng when installed, and synthetic voiced sounds of three lengths."""
    rng = np.random.default_rng(0)
    clips = []
    for seconds, pitch in ((0.8, 120.0), (1.0, 210.0), (3.0, 160.0)):
        t = np.arange(int(16000 * seconds)) / 16000
        voiced = sum(np.sin(2 * np.pi * pitch * h * t) / h for h in range(1, 12)) * np.hanning(len(t))
        clips.append((0.1 * voiced + 0.003 * rng.standard_normal(len(t))).astype(np.float32))
    if shutil.which("espeak-ng"):
        path = tmp_path / "seven.wav"
        subprocess.run(["espeak-ng", "-w", str(path), "seven"], check=True, capture_output=True)
        from kdforge.models.audio_features import resample

        samples, rate = read_audio(path)
        clips.append(resample(torch.from_numpy(samples).double(), rate, 16000).float().numpy())
    return clips


def test_partial_windows_golden():
    assert partial_windows(101) == [(0, 160)]  # a 1 s clip: one zero-padded 1.6 s window
    assert partial_windows(301) == [(0, 160), (77, 237), (154, 314)]  # 3 s: last window 91% covered
    assert partial_windows(250) == [(0, 160), (77, 237)]  # 2.5 s: a third window would cover 11%


def test_missing_or_wrong_weights_say_how_to_get_them(tmp_path, monkeypatch):
    monkeypatch.setenv("KDFORGE_CACHE", str(tmp_path))
    monkeypatch.setattr("importlib.util.find_spec", lambda name: None)
    with pytest.raises(KdforgeError, match="not installed") as err:
        resemblyzer_weights()
    assert "make data-audio" in err.value.fix
    (tmp_path / "fake.pt").write_bytes(b"not the weights")
    with pytest.raises(KdforgeError, match="SHA-256 differs"):
        resemblyzer_weights(tmp_path / "fake.pt")


def test_teacher_embeds_a_clip_deterministically(encoder, tmp_path):
    wave = torch.from_numpy(_clips(tmp_path)[-1])
    x = MelFrontEnd()(fix_length(wave, 16000))[None, None]  # audio_folder's features of a 1 s clip
    with torch.no_grad():
        a, b = encoder(x), encoder(x.clone())
        frames, pooled = [], []
        encoder.frames.register_forward_hook(lambda m, i, o: frames.append(o))
        encoder.frames_mean.register_forward_hook(lambda m, i, o: pooled.append(o))
        encoder(x)
    assert torch.equal(a, b) and a.shape == (1, 256)
    assert torch.allclose(a.norm(dim=1), torch.ones(1)) and (a >= 0).all()  # ReLU, then L2 norm
    assert frames[0].shape == (1, 101, 256) and torch.allclose(pooled[0], frames[0].mean(1))
    other = MelFrontEnd()(fix_length(torch.from_numpy(_clips(tmp_path)[1]), 16000))[None, None]
    with torch.no_grad():
        assert float((encoder(other) * a).sum()) < 0.999  # another sound, another embedding


def test_log_mel_input_equals_waveform_input(encoder, tmp_path):
    """audio_folder's log-mel features give the embedding of the waveform (trailing silence: exact)."""
    wave = fix_length(torch.from_numpy(_clips(tmp_path)[0]), 14000, "start")
    wave = torch.nn.functional.pad(wave, (0, 2000))  # 1 s, the last 125 ms silent
    with torch.no_grad():
        from_waves = encoder.embed_waves(wave[None])
        from_log_mel = encoder(MelFrontEnd()(wave[None])[:, None])
    assert torch.allclose(from_waves, from_log_mel, atol=1e-5)


def test_parity_with_resemblyzer_voice_encoder(encoder, tmp_path):
    try:
        from resemblyzer import VoiceEncoder
    except Exception as e:  # not installed, or its librosa / webrtcvad stack is missing
        pytest.skip(f"resemblyzer not importable: {e}")
    reference = VoiceEncoder("cpu", verbose=False)
    for clip in _clips(tmp_path):
        ref = reference.embed_utterance(clip)
        with torch.no_grad():
            ours = encoder.embed_waves(torch.from_numpy(clip)[None])[0].numpy()
        np.testing.assert_allclose(ours, ref, atol=2e-5)


def test_classifier_probe_trains_only_its_head():
    _weights_or_skip()
    probe = build_model("ge2e_classifier", (1, 40, 101), 5, freeze_encoder=True)
    trainable = {n for n, p in probe.named_parameters() if p.requires_grad}
    assert trainable == {"head.weight", "head.bias"}
    tuned = build_model("ge2e_classifier", (1, 40, 101), 5)
    assert all(p.requires_grad for p in tuned.parameters())
    with pytest.raises(KdforgeError, match="needs log-mel input"):
        build_model("ge2e_classifier", (1, 28, 28), 5)
