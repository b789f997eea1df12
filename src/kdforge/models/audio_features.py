"""The audio front end, in torch: resampling, STFT power spectrum, mel filterbank, (log-)mel spectrogram.

One module for every audio feature in kdforge, so the data adapter (``audio_folder``) and the audio
teacher (``ge2e_speaker``) compute their mel spectrograms the same way. The defaults match the
GE2E speaker encoder's front end (16 kHz, 25 ms Hann window = 400 samples, 10 ms hop = 160
samples, 40 mel channels, power spectrum, zero-padded centred frames), which are also those of
``librosa.feature.melspectrogram`` (>= 0.10) with these arguments.

Formulas:

- Power spectrum: ``P[f, t] = |sum_n w[n] x[t*hop + n - n_fft/2] e^{-2 pi i f n / n_fft}|^2``
  (periodic Hann window ``w``, the signal zero-padded by ``n_fft/2`` on both sides).
- Mel scale (Slaney, as the Auditory Toolbox and librosa's default): linear ``m = 3 f / 200`` below
  1 kHz, logarithmic above: ``m = 15 + 27 ln(f / 1000) / ln(6.4)``; or HTK ``m = 2595 log10(1 + f/700)``.
- Filterbank: ``n_mels`` triangles whose corners are ``n_mels + 2`` points equally spaced in mel
  between ``fmin`` and ``fmax``, each scaled to unit area (``2 / (f_{i+2} - f_i)``, "slaney" norm).
- Log-mel: ``ln(M + log_offset)``; :meth:`MelFrontEnd.power_from_log` inverts it.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from kdforge.errors import KdforgeError


def hz_to_mel(freq: Tensor, htk: bool = False) -> Tensor:
    """Frequency in Hz -> mel (Slaney's piecewise linear/log scale, or HTK's when ``htk``)."""
    freq = torch.as_tensor(freq, dtype=torch.float64)
    if htk:
        return 2595.0 * torch.log10(1.0 + freq / 700.0)
    linear = freq * 3.0 / 200.0
    log = 15.0 + torch.log(freq.clamp(min=1e-10) / 1000.0) * 27.0 / math.log(6.4)
    return torch.where(freq >= 1000.0, log, linear)


def mel_to_hz(mel: Tensor, htk: bool = False) -> Tensor:
    """Mel -> frequency in Hz (inverse of :func:`hz_to_mel`)."""
    mel = torch.as_tensor(mel, dtype=torch.float64)
    if htk:
        return 700.0 * (10.0 ** (mel / 2595.0) - 1.0)
    linear = mel * 200.0 / 3.0
    log = 1000.0 * torch.exp((mel - 15.0) * math.log(6.4) / 27.0)
    return torch.where(mel >= 15.0, log, linear)


def mel_filterbank(
    sample_rate: int,
    n_fft: int,
    n_mels: int,
    fmin: float = 0.0,
    fmax: float | None = None,
    htk: bool = False,
    norm: bool = True,
) -> Tensor:
    """Triangular mel filters ``[n_mels, n_fft // 2 + 1]`` (float32) applied to a power spectrum.

    Args:
        fmax: upper edge (default ``sample_rate / 2``).
        htk: HTK mel scale instead of Slaney's.
        norm: scale each triangle to unit area (Slaney's "slaney" normalisation).
    """
    fmax = sample_rate / 2 if fmax is None else fmax
    fft_freqs = torch.linspace(0, sample_rate / 2, n_fft // 2 + 1, dtype=torch.float64)
    mels = torch.linspace(
        float(hz_to_mel(fmin, htk)), float(hz_to_mel(fmax, htk)), n_mels + 2, dtype=torch.float64
    )
    corners = mel_to_hz(mels, htk)
    widths = corners.diff()
    ramps = corners[:, None] - fft_freqs[None, :]
    rising = -ramps[:-2] / widths[:-1, None]
    falling = ramps[2:] / widths[1:, None]
    weights = torch.clamp(torch.minimum(rising, falling), min=0.0)
    if norm:
        weights = weights * (2.0 / (corners[2:] - corners[:-2]))[:, None]
    return weights.float()


def power_spectrogram(
    wave: Tensor, n_fft: int, hop_length: int, win_length: int | None = None, center: bool = True
) -> Tensor:
    """``|STFT|^2`` of ``wave [..., T]`` with a periodic Hann window: ``[..., n_fft//2 + 1, frames]``.

    Centred frames zero-pad the signal by ``n_fft // 2`` on both sides (``frames = 1 + T // hop``).
    """
    window = torch.hann_window(win_length or n_fft, periodic=True, dtype=wave.dtype, device=wave.device)
    shape = wave.shape
    spec = torch.stft(
        wave.reshape(-1, shape[-1]), n_fft, hop_length, win_length or n_fft, window,
        center=center, pad_mode="constant", return_complex=True,
    )  # fmt: skip
    power = spec.real.square() + spec.imag.square()
    return power.reshape(*shape[:-1], *power.shape[-2:])


def resample(
    wave: Tensor, orig_rate: int, new_rate: int, zero_crossings: int = 16, rolloff: float = 0.95
) -> Tensor:
    """Band-limited resampling of ``wave [..., T]`` to ``[..., ceil(T * new_rate / orig_rate)]``.

    Windowed-sinc interpolation: output sample ``n`` sits at input position ``t = n * orig / new``
    and is ``sum_i x[i] 2 f_c sinc(2 f_c (t - i)) w(t - i)`` with cutoff ``f_c = rolloff / 2 *
    min(1, new / orig)`` cycles per input sample (below both Nyquist frequencies) and a Hann
    window ``w`` spanning ``zero_crossings`` zero crossings each side. The signal is taken as
    zero outside ``[0, T)``. Computed as one strided convolution with one kernel per output phase.
    """
    if orig_rate <= 0 or new_rate <= 0:
        raise KdforgeError(f"sample rates must be positive (got {orig_rate} -> {new_rate})", "fix the rates")
    if orig_rate == new_rate:
        return wave
    g = math.gcd(orig_rate, new_rate)
    orig, new = orig_rate // g, new_rate // g
    cutoff = 0.5 * rolloff * min(1.0, new / orig)
    half_width = zero_crossings / (2 * cutoff)  # window half-width in input samples
    margin = math.ceil(half_width)
    offsets = torch.arange(-margin, margin + orig + 1, dtype=torch.float64)  # input index - q * orig
    phases = torch.arange(new, dtype=torch.float64)[:, None] * orig / new  # t - q * orig per phase
    dist = phases - offsets[None, :]
    window = torch.where(dist.abs() <= half_width, torch.cos(math.pi * dist / (2 * half_width)) ** 2, 0.0)
    kernels = (2 * cutoff * torch.sinc(2 * cutoff * dist) * window).to(wave.dtype)  # [new, L]
    shape, length = wave.shape, wave.shape[-1]
    n_out = math.ceil(length * new / orig)
    n_blocks = math.ceil(n_out / new)
    padded_len = (n_blocks - 1) * orig + kernels.shape[1]
    x = F.pad(wave.reshape(-1, 1, length), (margin, max(0, padded_len - length - margin)))
    out = F.conv1d(x, kernels[:, None, :], stride=orig)[..., :n_blocks]  # [B, new, blocks]
    out = out.transpose(1, 2).reshape(len(x), -1)[:, :n_out]
    return out.reshape(*shape[:-1], n_out)


@dataclass
class MelConfig:
    """Options of the mel front end (defaults: the GE2E speaker encoder's, see the module docstring)."""

    sample_rate: int = 16000
    n_fft: int = 400  # 25 ms at 16 kHz
    hop_length: int = 160  # 10 ms at 16 kHz
    win_length: int | None = None  # default n_fft
    n_mels: int = 40
    fmin: float = 0.0
    fmax: float | None = None  # default sample_rate / 2
    htk: bool = False  # HTK mel scale instead of Slaney's
    log: bool = True  # ln(mel + log_offset) instead of the power mel
    log_offset: float = 1e-6


class MelFrontEnd(nn.Module):
    """Waveform ``[..., T]`` -> (log-)mel spectrogram ``[..., n_mels, 1 + T // hop]``."""

    def __init__(self, config: MelConfig | None = None, **overrides) -> None:
        super().__init__()
        self.config = MelConfig(**{**asdict(config or MelConfig()), **overrides})
        c = self.config
        fb = mel_filterbank(c.sample_rate, c.n_fft, c.n_mels, c.fmin, c.fmax, c.htk)
        self.register_buffer("filterbank", fb, persistent=False)

    def power_mel(self, wave: Tensor) -> Tensor:
        """The power mel spectrogram (never logged)."""
        c = self.config
        power = power_spectrogram(wave, c.n_fft, c.hop_length, c.win_length)
        return torch.matmul(self.filterbank.to(power.dtype), power)

    def forward(self, wave: Tensor) -> Tensor:
        mel = self.power_mel(wave)
        return torch.log(mel + self.config.log_offset) if self.config.log else mel

    def power_from_log(self, log_mel: Tensor) -> Tensor:
        """Invert :meth:`forward`'s log: ``exp(x) - log_offset``, clipped at 0."""
        return (torch.exp(log_mel) - self.config.log_offset).clamp(min=0.0)


__all__ = [
    "MelConfig",
    "MelFrontEnd",
    "hz_to_mel",
    "mel_filterbank",
    "mel_to_hz",
    "power_spectrogram",
    "resample",
]
