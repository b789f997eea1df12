"""A pre-trained audio teacher: the GE2E speaker encoder shipped in the Resemblyzer 0.1.4 wheel.

Wan et al., "Generalized End-to-End Loss for Speaker Verification" (ICASSP 2018), as packaged by
Resemblyzer (PyPI ``Resemblyzer`` 0.1.4, Apache-2.0; file ``resemblyzer/pretrained.pt``): a 3-layer
LSTM (hidden 256) over 40-channel *power* mel frames (16 kHz, 25 ms window, 10 ms hop); the last
layer's final hidden state -> linear 256 -> ReLU -> L2 normalisation is the speaker embedding.

kdforge loads those weights into its own module (no librosa / webrtcvad needed) with the front end of
:mod:`kdforge.models.audio_features`. Inputs are the ``audio_folder`` log-mel features
``x [B, 1, 40, T]`` (the log is inverted to the power mel the encoder was trained on) or waveforms
(:meth:`GE2EEncoder.embed_waves`). Outputs, each at its own module path for ``kdforge embed extract``:

- ``encoder`` -- the utterance embedding ``[B, 256]``, computed as Resemblyzer's ``embed_utterance``:
  partial windows of 160 frames (1.6 s) every 77 frames (rate 1.3/s), the signal zero-padded to the
  last window, each window embedded, the L2-normalised mean of the window embeddings. A clip of at
  most 1.6 s is one window.
- ``encoder.frames`` -- frame-level features: the last LSTM layer's output at every frame of the
  clip ``[B, T, 256]`` (for a distance-correlation loss per time step).
- ``encoder.frames_mean`` -- their mean over the clip's frames ``[B, 256]``.

The weights file is never downloaded at run time: :func:`resemblyzer_weights` finds it in the cache,
in an installed ``resemblyzer`` package, or in the wheel that ``make data-audio`` pip-downloads.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import zipfile
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from kdforge.errors import KdforgeError
from kdforge.models.audio_features import MelConfig, MelFrontEnd
from kdforge.models.hf import cache_root
from kdforge.registry import register_model

RESEMBLYZER_VERSION = "0.1.4"
WHEEL_NAME = f"Resemblyzer-{RESEMBLYZER_VERSION}-py3-none-any.whl"
WEIGHTS_MEMBER = "resemblyzer/pretrained.pt"
WEIGHTS_SHA256 = "39373b86598fa3da9fcddee6142382efe09777e8d37dc9c0561f41f0070f134e"
#: GE2E's front end: 16 kHz, 25 ms / 10 ms, 40 power-mel channels.
GE2E_MEL = MelConfig(sample_rate=16000, n_fft=400, hop_length=160, n_mels=40, log=False)
PARTIAL_FRAMES = 160  # 1.6 s windows
PARTIAL_STEP = 77  # round(16000 / 1.3 / 160): 1.3 windows per second
MIN_COVERAGE = 0.75  # a last window less filled than this is dropped (when there are others)
GET_WEIGHTS = (
    "run `make data-audio` (it runs `pip download --no-deps Resemblyzer==0.1.4 -d "
    "$KDFORGE_CACHE/wheels`), or pass weights=PATH to resemblyzer/pretrained.pt"
)


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _checked(path: Path) -> Path:
    if _sha256(path) != WEIGHTS_SHA256:
        raise KdforgeError(
            f"{path} is not Resemblyzer {RESEMBLYZER_VERSION}'s pretrained.pt (SHA-256 differs)",
            f"delete it and {GET_WEIGHTS}",
        )
    return path


def resemblyzer_weights(path: str | Path | None = None) -> Path:
    """Path of the GE2E weights file, verified by SHA-256; extracted from the wheel once if needed.

    Looks, in order, at ``path``, ``$KDFORGE_CACHE/resemblyzer-0.1.4/pretrained.pt``, an installed
    ``resemblyzer`` package and ``$KDFORGE_CACHE/wheels/Resemblyzer-0.1.4-py3-none-any.whl``.

    Raises:
        KdforgeError: none of them exists (the fix says how to get it) or the file is another one.
    """
    if path is not None:
        if not Path(path).is_file():
            raise KdforgeError(f"GE2E weights file {path} does not exist", GET_WEIGHTS)
        return _checked(Path(path))
    cached = cache_root() / f"resemblyzer-{RESEMBLYZER_VERSION}" / "pretrained.pt"
    if cached.is_file():
        return _checked(cached)
    spec = importlib.util.find_spec("resemblyzer")
    if spec is not None and spec.origin:
        packaged = Path(spec.origin).parent / "pretrained.pt"
        if packaged.is_file() and _sha256(packaged) == WEIGHTS_SHA256:
            return packaged
    wheel = cache_root() / "wheels" / WHEEL_NAME
    if wheel.is_file():
        cached.parent.mkdir(parents=True, exist_ok=True)
        tmp = cached.with_name("pretrained.pt.tmp")
        try:
            with zipfile.ZipFile(wheel) as z, z.open(WEIGHTS_MEMBER) as src, open(tmp, "wb") as dst:
                dst.write(src.read())
        except (zipfile.BadZipFile, KeyError) as e:
            raise KdforgeError(
                f"cannot read {WEIGHTS_MEMBER} from {wheel} ({e})", f"delete it and {GET_WEIGHTS}"
            ) from None
        os.replace(tmp, cached)
        return _checked(cached)
    raise KdforgeError(
        f"the GE2E speaker-encoder weights are not installed (looked in {cached.parent})", GET_WEIGHTS
    )


def partial_windows(n_frames: int) -> list[tuple[int, int]]:
    """(start, stop) frames of Resemblyzer's partial utterances for a clip of ``n_frames`` frames."""
    steps = max(1, n_frames - PARTIAL_FRAMES + PARTIAL_STEP + 1)
    windows = [(i, i + PARTIAL_FRAMES) for i in range(0, steps, PARTIAL_STEP)]
    last_start = windows[-1][0]
    coverage = (n_frames - 1 - last_start) / PARTIAL_FRAMES  # samples covered, in frames
    if coverage < MIN_COVERAGE and len(windows) > 1:
        windows = windows[:-1]
    return windows


class GE2EEncoder(nn.Module):
    """The GE2E speaker encoder (``lstm``, ``linear``) on power-mel frames, with hook points for features."""

    def __init__(self, weights: str | Path | None = None, pretrained: bool = True) -> None:
        super().__init__()
        self.lstm = nn.LSTM(GE2E_MEL.n_mels, 256, 3, batch_first=True)
        self.linear = nn.Linear(256, 256)
        self.frames = nn.Identity()  # hook point: last LSTM layer per frame [B, T, 256]
        self.frames_mean = nn.Identity()  # hook point: its mean over the clip [B, 256]
        self.front = MelFrontEnd(GE2E_MEL)
        self.log_front = MelFrontEnd(GE2E_MEL, log=True)  # audio_folder's features: inverted in forward
        if pretrained:
            state = torch.load(resemblyzer_weights(weights), map_location="cpu", weights_only=True)
            model_state = {
                k: v for k, v in state["model_state"].items() if k.startswith(("lstm.", "linear."))
            }
            self.load_state_dict(model_state)

    def _window_embedding(self, mels: Tensor) -> Tensor:
        _, (hidden, _) = self.lstm(mels)
        raw = F.relu(self.linear(hidden[-1]))
        return raw / raw.norm(dim=1, keepdim=True).clamp(min=1e-12)

    def embed_frames(self, mels: Tensor) -> Tensor:
        """Utterance embedding ``[B, 256]`` of power-mel frames ``[B, T, 40]`` (zero frames pad windows)."""
        n = mels.shape[1]
        windows = partial_windows(n)
        padded = F.pad(mels, (0, 0, 0, max(0, windows[-1][1] - n)))
        if len(windows) == 1:  # the LSTM is causal: the padded window's first n outputs are the clip's
            out, (hidden, _) = self.lstm(padded)
            raw = F.relu(self.linear(hidden[-1]))
            embedding = raw / raw.norm(dim=1, keepdim=True).clamp(min=1e-12)
        else:
            out = self.lstm(mels)[0]
            parts = torch.stack([self._window_embedding(padded[:, a:b]) for a, b in windows], 1).mean(1)
            embedding = parts / parts.norm(dim=1, keepdim=True).clamp(min=1e-12)
        frames = self.frames(out[:, :n])
        self.frames_mean(frames.mean(1))
        return embedding

    def embed_waves(self, waves: Tensor) -> Tensor:
        """Utterance embeddings ``[B, 256]`` of 16 kHz waveforms ``[B, samples]`` (as ``embed_utterance``).

        The waveform is zero-padded to the end of its last partial window before the mel
        spectrogram is taken, exactly as Resemblyzer does (it adds one more, partly filled frame).
        """
        n_frames = 1 + waves.shape[-1] // GE2E_MEL.hop_length
        stop = partial_windows(n_frames)[-1][1] * GE2E_MEL.hop_length
        padded = F.pad(waves, (0, max(0, stop - waves.shape[-1])))
        mels = self.front.power_mel(padded).transpose(1, 2)
        windows = partial_windows(n_frames)
        parts = torch.stack([self._window_embedding(mels[:, a:b]) for a, b in windows], 1)
        mean = parts.mean(1)
        return mean / mean.norm(dim=1, keepdim=True).clamp(min=1e-12)

    def forward(self, x: Tensor) -> Tensor:
        """Utterance embedding of ``audio_folder``'s log-mel features ``[B, 1, 40, T]`` or ``[B, 40, T]``."""
        if x.dim() == 4:
            x = x.squeeze(1)
        if x.shape[1] != GE2E_MEL.n_mels:
            raise KdforgeError(
                f"the GE2E encoder needs {GE2E_MEL.n_mels} mel channels, got input {tuple(x.shape)}",
                "load the audio with audio_folder's defaults (n_mels=40, 16 kHz, n_fft=400, hop_length=160)",
            )
        return self.embed_frames(self.log_front.power_from_log(x).transpose(1, 2))


class GE2EClassifier(nn.Module):
    """The GE2E encoder (``encoder``) plus a linear ``head`` on its utterance embedding."""

    def __init__(
        self, num_classes: int, weights: str | Path | None = None, freeze_encoder: bool = False
    ) -> None:
        super().__init__()
        self.encoder = GE2EEncoder(weights)
        self.encoder.requires_grad_(not freeze_encoder)
        self.head = nn.Linear(256, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.encoder(x))


@register_model("ge2e_classifier")
def ge2e_classifier(
    input_shape: tuple[int, ...], num_classes: int, weights: str | None = None, freeze_encoder: bool = False
) -> GE2EClassifier:
    """Pre-trained GE2E speaker encoder (Resemblyzer 0.1.4 weights) + a linear head, on 40-channel log-mels.

    ``freeze_encoder=True`` trains only the head (a linear probe); otherwise the whole encoder is
    fine-tuned. Embeddings: ``kdforge embed extract --model ge2e_classifier --path encoder``
    (``encoder.frames`` / ``encoder.frames_mean`` for frame-level features); no checkpoint needed.
    """
    if tuple(input_shape)[-2:-1] != (GE2E_MEL.n_mels,):
        raise KdforgeError(
            f"ge2e_classifier needs log-mel input [1, 40, frames], got {tuple(input_shape)}",
            "use the audio_folder dataset with n_mels=40",
        )
    return GE2EClassifier(num_classes, weights, freeze_encoder)


ge2e_classifier.pretrained = True  # type: ignore[attr-defined]  # embeddable without a checkpoint

__all__ = ["GE2EClassifier", "GE2EEncoder", "ge2e_classifier", "partial_windows", "resemblyzer_weights"]
