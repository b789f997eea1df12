"""The audio front end against direct numpy formulas (and librosa, when it happens to be installed)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from kdforge.errors import KdforgeError
from kdforge.models.audio_features import (
    MelConfig,
    MelFrontEnd,
    hz_to_mel,
    mel_filterbank,
    mel_to_hz,
    power_spectrogram,
    resample,
)


def _numpy_slaney_mel(f: float) -> float:
    return 3 * f / 200 if f < 1000 else 15 + math.log(f / 1000) / (math.log(6.4) / 27)


def _numpy_filterbank(sr: int, n_fft: int, n_mels: int, fmin: float, fmax: float) -> np.ndarray:
    """Triangles written out point by point: rise from corner i to i+1, fall to i+2, unit area."""
    lo, hi = _numpy_slaney_mel(fmin), _numpy_slaney_mel(fmax)
    mels = [lo + (hi - lo) * j / (n_mels + 1) for j in range(n_mels + 2)]
    corners = [m * 200 / 3 if m < 15 else 1000 * math.exp((m - 15) * math.log(6.4) / 27) for m in mels]
    out = np.zeros((n_mels, n_fft // 2 + 1))
    for i in range(n_mels):
        left, mid, right = corners[i], corners[i + 1], corners[i + 2]
        for k in range(n_fft // 2 + 1):
            f = k * sr / n_fft
            if left < f <= mid:
                out[i, k] = (f - left) / (mid - left)
            elif mid < f < right:
                out[i, k] = (right - f) / (right - mid)
        out[i] *= 2 / (right - left)
    return out


def _numpy_power(wave: np.ndarray, n_fft: int, hop: int) -> np.ndarray:
    """Centred, zero-padded frames times a periodic Hann window, explicit DFT matrix."""
    padded = np.concatenate([np.zeros(n_fft // 2), wave, np.zeros(n_fft // 2)])
    n_frames = 1 + len(wave) // hop
    frames = np.stack([padded[t * hop : t * hop + n_fft] for t in range(n_frames)], 1)  # [n_fft, T]
    window = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(n_fft) / n_fft)
    freqs = np.arange(n_fft // 2 + 1)[:, None] * np.arange(n_fft)[None, :]
    dft = np.exp(-2j * np.pi * freqs / n_fft)
    return np.abs(dft @ (frames * window[:, None])) ** 2


def _clip(n: int = 4000, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(n) / 16000
    chirp = np.sin(2 * np.pi * (200 + 1500 * t) * t) * np.hanning(n)
    return (0.3 * chirp + 0.02 * rng.standard_normal(n)).astype(np.float64)


def test_mel_scale_round_trips_and_has_its_golden_points():
    f = torch.tensor([0.0, 500.0, 1000.0, 4000.0, 8000.0])
    assert torch.allclose(mel_to_hz(hz_to_mel(f)), f.double(), atol=1e-6)
    assert torch.allclose(mel_to_hz(hz_to_mel(f, htk=True), htk=True), f.double(), atol=1e-6)
    assert float(hz_to_mel(1000.0)) == pytest.approx(15.0)  # the knee of Slaney's scale
    assert float(hz_to_mel(6400.0)) == pytest.approx(42.0)  # 15 + 27 * ln(6.4) / ln(6.4)
    assert float(hz_to_mel(1000.0, htk=True)) == pytest.approx(2595 * math.log10(1 + 1000 / 700))


def test_filterbank_equals_the_pointwise_formula():
    ours = mel_filterbank(16000, 400, 40).numpy()
    ref = _numpy_filterbank(16000, 400, 40, 0.0, 8000.0)
    assert ours.shape == (40, 201)
    np.testing.assert_allclose(ours, ref, rtol=1e-5, atol=1e-9)
    assert (ours > 0).sum(1).min() >= 1  # no empty filter at this resolution


def test_power_and_mel_equal_the_direct_dft():
    wave = _clip()
    ours = power_spectrogram(torch.from_numpy(wave), 400, 160).numpy()
    ref = _numpy_power(wave, 400, 160)
    assert ours.shape == ref.shape == (201, 1 + len(wave) // 160)
    np.testing.assert_allclose(ours, ref, rtol=1e-6, atol=1e-9 * ref.max())
    front = MelFrontEnd(log=False).double()
    mel = front(torch.from_numpy(wave)).numpy()
    np.testing.assert_allclose(mel, _numpy_filterbank(16000, 400, 40, 0, 8000) @ ref, rtol=1e-5, atol=1e-12)


def test_log_mel_and_its_inverse():
    wave = torch.from_numpy(_clip()).float()
    front = MelFrontEnd()
    log_mel = front(wave[None])
    assert log_mel.shape == (1, 40, 26)
    power = front.power_mel(wave[None])
    assert torch.allclose(log_mel, torch.log(power + 1e-6))
    assert torch.allclose(front.power_from_log(log_mel), power, rtol=1e-4, atol=1e-9)
    assert MelFrontEnd(MelConfig(n_mels=64), log=False).config.n_mels == 64


def test_matches_librosa_when_installed():
    librosa = pytest.importorskip("librosa")
    wave = _clip().astype(np.float32)
    ref = librosa.feature.melspectrogram(y=wave, sr=16000, n_fft=400, hop_length=160, n_mels=40)
    ours = MelFrontEnd(log=False)(torch.from_numpy(wave)).numpy()
    np.testing.assert_allclose(ours, ref, rtol=1e-3, atol=1e-6 * ref.max())
    np.testing.assert_allclose(
        mel_filterbank(22050, 1024, 64, 20, 8000).numpy(),
        librosa.filters.mel(sr=22050, n_fft=1024, n_mels=64, fmin=20, fmax=8000),
        rtol=1e-4, atol=1e-8,
    )  # fmt: skip


@pytest.mark.parametrize(("orig", "new"), [(22050, 16000), (8000, 16000), (16000, 8000), (44100, 16000)])
def test_resample_keeps_a_tone_and_the_length(orig, new):
    seconds, tone = 0.25, 440.0
    x = torch.sin(2 * math.pi * tone * torch.arange(int(orig * seconds), dtype=torch.float64) / orig)
    y = resample(x, orig, new)
    assert y.shape == (math.ceil(len(x) * new / orig),)
    expected = torch.sin(2 * math.pi * tone * torch.arange(len(y), dtype=torch.float64) / new)
    inner = slice(len(y) // 8, -len(y) // 8)  # away from the zero-padded edges
    assert (y[inner] - expected[inner]).abs().max() < 5e-3
    batch = resample(torch.stack([x, 2 * x]).float(), orig, new)
    assert batch.shape == (2, len(y)) and torch.allclose(batch[1], 2 * batch[0], atol=1e-5)


def test_resample_removes_what_the_new_rate_cannot_hold():
    x = torch.sin(2 * math.pi * 6000 * torch.arange(4000, dtype=torch.float64) / 16000)  # above 4 kHz
    assert resample(x, 16000, 8000)[200:-200].abs().max() < 0.02
    assert torch.equal(resample(x, 16000, 16000), x)
    with pytest.raises(KdforgeError, match="positive"):
        resample(x, 0, 16000)
