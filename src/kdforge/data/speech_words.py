"""Spoken English words (digits 0-9, letters a-z: 36 classes) from speech synthesisers, split by voice.

:func:`generate` writes an ``audio_folder`` layout ``OUT/<word>/<voice>.wav`` plus ``OUT/manifest.csv``
(``path,label,voice,engine,accent,variant,speed,pitch,split``). A *voice* is one synthesiser setting
(espeak-ng: English accent x voice variant x speed x pitch, drawn with the seed; flite: one of its
voices x a speaking rate) and speaks every word once; whole voices go to ``train``, ``val``
or ``test``, so the test voices never appear in training. The same seed and options give the same
manifest and the same clips. Each clip is trimmed of leading/trailing silence and stored as 16-bit
WAV at the synthesiser's rate (22.05 kHz espeak-ng, 8/16 kHz flite).

:func:`export_asterisk` copies the real studio recordings of the same 36 words from the Debian
package ``asterisk-core-sounds-en-wav`` (``digits/0-9.wav``, ``letters/a-z.wav``, 8 kHz) into the same
layout: one take per word, an unseen *real speech* test set.

The synthesisers come from Debian (``make data-audio``: espeak-ng, flite, sox,
asterisk-core-sounds-en-wav); nothing is downloaded.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from kdforge.data.audio_folder import read_audio, read_manifest, write_wav
from kdforge.errors import KdforgeError

# fmt: off
#: the letters' names, spelt out so that every synthesiser says the name (not "a" as an article).
LETTER_NAMES = ("ay", "bee", "see", "dee", "ee", "eff", "gee", "aitch", "eye", "jay", "kay", "el", "em",
                "en", "oh", "pee", "cue", "are", "ess", "tee", "you", "vee", "double you", "ex", "why", "zee")
DIGIT_NAMES = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
#: espeak-ng's English accents (``espeak-ng --voices=en``, Debian 12's 1.51).
ESPEAK_ACCENTS = ("en", "en-029", "en-GB-scotland", "en-GB-x-gbclan", "en-GB-x-gbcwmd", "en-GB-x-rp",
                  "en-US", "en-US-nyc")
#: espeak-ng voice variants (``+variant``) that sound like a human voice (no robots or whispers).
ESPEAK_VARIANTS = ("m1", "m2", "m3", "m4", "m5", "m6", "m7", "f1", "f2", "f3", "f4", "f5", "klatt",
                   "klatt2", "klatt3", "klatt4", "Alex", "Andy", "Annie", "Denis", "Gene", "Jacky", "Lee",
                   "Mario", "Michael", "Mike", "adam", "anika", "aunty", "belinda", "benjamin", "boris",
                   "caleb", "david", "ed", "edward", "grandma", "grandpa", "iven", "john", "linda", "max",
                   "michel", "norbert", "paul", "pedro", "quincy", "rob", "robert", "steph", "travis",
                   "victor")
# fmt: on
#: label -> the text a synthesiser reads.
WORDS: dict[str, str] = dict(
    zip("0123456789abcdefghijklmnopqrstuvwxyz", DIGIT_NAMES + LETTER_NAMES, strict=True)
)
#: flite's full-vocabulary voices (``flite -lv`` minus the clock-only ``awb_time``).
FLITE_VOICES = ("kal", "kal16", "awb", "rms", "slt")
ASTERISK_DIR = "/usr/share/asterisk/sounds/en"
INSTALL = (
    "run `make data-audio` (apt-get install espeak-ng flite sox asterisk-core-sounds-en-wav; needs root)"
)
MANIFEST_COLUMNS = ("path", "label", "voice", "engine", "accent", "variant", "speed", "pitch", "split")


@dataclass
class SpeechWordsConfig:
    """Options of :func:`generate` (saved as ``OUT/speech_words.json``)."""

    espeak_voices: int = 48  # espeak-ng voices drawn with the seed
    flite_variants: int = 2  # speaking rates of each flite voice (the first at its own rate; 0: no flite)
    words: str = "".join(WORDS)  # labels to speak (default all 36)
    val_voices: float = 0.15  # share of voices for validation
    test_voices: float = 0.2  # share of voices for test
    seed: int = 0
    min_speed: int = 120  # espeak-ng words per minute
    max_speed: int = 200
    min_pitch: int = 20  # espeak-ng pitch 0-99
    max_pitch: int = 80


def _voices(cfg: SpeechWordsConfig) -> list[dict]:
    rng = np.random.default_rng(cfg.seed)
    voices = []
    for i in range(cfg.espeak_voices):
        voices.append({
            "voice": f"espeak-{i:03d}", "engine": "espeak-ng",
            "accent": ESPEAK_ACCENTS[rng.integers(len(ESPEAK_ACCENTS))],
            "variant": ESPEAK_VARIANTS[rng.integers(len(ESPEAK_VARIANTS))],
            "speed": int(rng.integers(cfg.min_speed, cfg.max_speed + 1)),
            "pitch": int(rng.integers(cfg.min_pitch, cfg.max_pitch + 1)),
        })  # fmt: skip
    for name in FLITE_VOICES:
        for j in range(cfg.flite_variants):
            stretch = 1.0 if j == 0 else round(float(rng.uniform(0.8, 1.3)), 2)
            voices.append({
                "voice": f"flite-{name}-{j}", "engine": "flite", "accent": "en-US", "variant": name,
                "speed": stretch, "pitch": "",
            })  # fmt: skip
    names = [v["voice"] for v in voices]
    order = np.random.default_rng(cfg.seed + 1).permutation(len(names))
    n_test = max(1, round(cfg.test_voices * len(names)))
    n_val = max(1, round(cfg.val_voices * len(names)))
    if len(names) < n_test + n_val + 1:
        raise KdforgeError(
            f"{len(names)} voices cannot be split into train/val/test ({n_val} val, {n_test} test)",
            "ask for more voices (--espeak-voices, --flite-variants)",
        )
    split = {names[i]: "test" for i in order[:n_test]} | {
        names[i]: "val" for i in order[n_test : n_test + n_val]
    }
    for v in voices:
        v["split"] = split.get(v["voice"], "train")
    return voices


def _command(voice: dict, text: str, out: str) -> list[str]:
    if voice["engine"] == "espeak-ng":
        return ["espeak-ng", "-v", f"{voice['accent']}+{voice['variant']}", "-s", str(voice["speed"]),
                "-p", str(voice["pitch"]), "-w", out, text]  # fmt: skip
    return [
        "flite",
        "-voice",
        voice["variant"],
        "-t",
        text,
        "-o",
        out,
        "--setf",
        f"duration_stretch={voice['speed']}",
    ]


def trim_silence(
    samples: np.ndarray, rate: int, threshold_db: float = -40.0, margin_s: float = 0.05
) -> np.ndarray:
    """Cut leading/trailing 10 ms frames quieter than ``threshold_db`` below the peak, keeping a margin."""
    frame = max(1, rate // 100)
    n = len(samples) // frame
    if n == 0:
        return samples
    energy = np.sqrt((samples[: n * frame].reshape(n, frame) ** 2).mean(1))
    loud = np.nonzero(energy > energy.max() * 10 ** (threshold_db / 20))[0]
    if len(loud) == 0:
        return samples
    margin = int(margin_s * rate)
    return samples[max(0, loud[0] * frame - margin) : min(len(samples), (loud[-1] + 1) * frame + margin)]


def _synthesise(voice: dict, label: str, out: Path) -> None:
    if out.is_file():  # resumable: a finished clip is kept
        return
    with tempfile.TemporaryDirectory() as tmp:
        raw = os.path.join(tmp, "raw.wav")
        result = subprocess.run(_command(voice, WORDS[label], raw), capture_output=True, text=True)
        if result.returncode != 0 or not os.path.isfile(raw):
            raise KdforgeError(
                f"{voice['engine']} failed for '{WORDS[label]}' with voice {voice['voice']}: "
                f"{result.stderr.strip()[:200]}",
                f"check that `{' '.join(_command(voice, WORDS[label], 'x.wav'))}` runs; {INSTALL}",
            )
        samples, rate = read_audio(raw)
    write_wav(out, trim_silence(samples, rate), rate)


def _check_tools(engines: set[str]) -> None:
    missing = [e for e in sorted(engines) if shutil.which(e) is None]
    if missing:
        raise KdforgeError(f"speech synthesiser(s) {', '.join(missing)} not installed", INSTALL)


def _write_manifest(path: Path, rows: list[dict]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, MANIFEST_COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    os.replace(tmp, path)


def generate(
    out: str | Path, config: SpeechWordsConfig | None = None, workers: int = 2, progress: bool = True
) -> Path:
    """Synthesise the spoken-words set into ``out`` (resumable; refuses a folder made with other options).

    Returns:
        The manifest path (``out/manifest.csv``).

    Raises:
        KdforgeError: a synthesiser is missing or fails, an unknown word, or ``out`` holds another set.
    """
    cfg = config or SpeechWordsConfig()
    unknown = sorted(set(cfg.words) - set(WORDS))
    if unknown:
        raise KdforgeError(f"unknown word label(s) {unknown}", f"choose from {''.join(WORDS)}")
    out = Path(out)
    settings = out / "speech_words.json"
    if settings.is_file():
        if json.loads(settings.read_text()) != asdict(cfg):
            raise KdforgeError(
                f"{out} holds a speech-words set made with other options (see {settings}); nothing changed",
                "choose another --out, or delete the folder",
            )
    elif out.exists() and any(out.iterdir()):
        raise KdforgeError(f"{out} exists and is not a speech-words folder", "choose an empty or new --out")
    voices = _voices(cfg)
    _check_tools({v["engine"] for v in voices})
    out.mkdir(parents=True, exist_ok=True)
    settings.write_text(json.dumps(asdict(cfg), indent=1) + "\n")
    jobs = [(v, label, out / label / f"{v['voice']}.wav") for v in voices for label in cfg.words]
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(jobs), desc="speech-words")
    with ThreadPoolExecutor(max(1, workers)) as pool:
        for _ in pool.map(lambda job: _synthesise(*job), jobs):
            if bar is not None:
                bar.update()
    if bar is not None:
        bar.close()
    rows = [{"path": f"{label}/{path.name}", "label": label, **v} for v, label, path in jobs]
    _write_manifest(out / "manifest.csv", rows)
    return out / "manifest.csv"


def export_asterisk(
    out: str | Path, sounds_dir: str | Path = ASTERISK_DIR, words: str = "".join(WORDS)
) -> Path:
    """Copy Asterisk's studio recordings of ``words`` into ``out/<word>/asterisk.wav`` + a manifest.

    Raises:
        KdforgeError: the package (or one recording) is missing.
    """
    sounds = Path(sounds_dir)
    rows = []
    for label in words:
        src = sounds / ("digits" if label.isdigit() else "letters") / f"{label}.wav"
        if not src.is_file():
            raise KdforgeError(
                f"Asterisk recording {src} not found", INSTALL.replace("espeak-ng flite sox ", "")
            )
        dst = Path(out) / label / "asterisk.wav"
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, dst)
        rows.append(
            {
                "path": f"{label}/asterisk.wav",
                "label": label,
                "voice": "asterisk",
                "engine": "studio",
                "accent": "en-US",
                "variant": "",
                "speed": "",
                "pitch": "",
                "split": "test",
            }
        )
    _write_manifest(Path(out) / "manifest.csv", rows)
    return Path(out) / "manifest.csv"


def voices_by_split(manifest: str | Path) -> dict[str, set[str]]:
    """The voices of each split in a speech-words manifest."""
    out: dict[str, set[str]] = {}
    for row in read_manifest(Path(manifest)):
        out.setdefault(row["split"], set()).add(row["voice"])
    return out


__all__ = ["WORDS", "SpeechWordsConfig", "export_asterisk", "generate", "trim_silence", "voices_by_split"]
