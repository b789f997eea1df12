"""The ``audio_folder`` adapter on folders of generated WAVs: layouts, splits, features, bad input."""

from __future__ import annotations

import csv
import wave

import numpy as np
import pytest
import torch

from kdforge.data import load_dataset
from kdforge.data.audio_folder import clip_features, fix_length, read_audio, write_wav
from kdforge.errors import KdforgeError
from kdforge.models.audio_features import MelFrontEnd, resample

TONES = {"low": 300.0, "mid": 900.0, "high": 2500.0}


def _tone(freq: float, rate: int, seconds: float = 0.5, phase: float = 0.0) -> np.ndarray:
    t = np.arange(int(rate * seconds)) / rate
    return 0.5 * np.sin(2 * np.pi * freq * t + phase)


def make_folder(root, per_class=6, rate=16000, voices=None, manifest=False):
    """``root/<class>/<voice>_<i>.wav`` tones; optional manifest.csv with a voice column."""
    rows = []
    for c, freq in TONES.items():
        for i in range(per_class):
            voice = f"v{i % voices}" if voices else f"v{i}"
            path = write_wav(root / c / f"{voice}_{i}.wav", _tone(freq * (1 + 0.01 * i), rate, phase=i), rate)
            rows.append({"path": f"{c}/{path.name}", "label": c, "voice": voice})
    if manifest:
        with open(root / "manifest.csv", "w", newline="") as f:
            writer = csv.DictWriter(f, ["path", "label", "voice"])
            writer.writeheader()
            writer.writerows(rows)
    return root


def test_wav_round_trip_and_other_sample_widths(tmp_path):
    x = _tone(440, 8000, 0.1)
    back, rate = read_audio(write_wav(tmp_path / "a.wav", x, 8000))
    assert rate == 8000 and back.dtype == np.float32
    assert np.abs(back - x).max() < 1.0 / 32767 + 1e-6
    for width, scale in ((1, 127), (3, 2**23 - 1)):  # 8-bit unsigned, 24-bit signed, stereo
        with wave.open(str(tmp_path / f"w{width}.wav"), "wb") as f:
            f.setnchannels(2), f.setsampwidth(width), f.setframerate(8000)
            ints = np.round(x * scale).astype(np.int64)
            stereo = np.repeat(ints, 2)
            if width == 1:
                raw = (stereo + 128).astype(np.uint8).tobytes()
            else:
                raw = b"".join(int(v).to_bytes(3, "little", signed=True) for v in stereo)
            f.writeframes(raw)
        back, _ = read_audio(tmp_path / f"w{width}.wav")
        assert np.abs(back - x).max() < 2.0 / scale


def test_fix_length():
    x = torch.arange(10.0)
    assert fix_length(x, 4).tolist() == [3, 4, 5, 6]
    assert fix_length(x, 4, "start").tolist() == [0, 1, 2, 3]
    assert fix_length(torch.ones(2), 5).tolist() == [0, 1, 1, 0, 0]
    assert fix_length(torch.ones(2), 4, "start").tolist() == [1, 1, 0, 0]


def test_class_folders_give_stratified_seeded_splits_and_log_mels(tmp_path):
    make_folder(tmp_path, per_class=8, rate=22050)
    s0 = load_dataset("audio_folder", data_dir=str(tmp_path), seconds=0.5)
    s1 = load_dataset("audio_folder", data_dir=str(tmp_path), seconds=0.5, seed=1)
    assert s0.num_classes == 3 and s0.class_names == ["high", "low", "mid"]
    assert s0.input_shape == (1, 40, 1 + 8000 // 160)
    assert len(s0.train) + len(s0.val) + len(s0.test) == 24
    files = [set(s0.files[s]) for s in ("train", "val", "test")]
    assert not (files[0] & files[1] or files[0] & files[2] or files[1] & files[2])
    assert s0.files["test"] == s1.files["test"]  # the test split does not move with the run seed
    assert torch.bincount(s0.test.tensors["y"], minlength=3).min() >= 1
    # features: the front end applied to the resampled, level-scaled clip
    i = s0.files["train"].index(str(tmp_path / "low" / "v0_0.wav"))
    raw, rate = read_audio(tmp_path / "low" / "v0_0.wav")
    wave16 = resample(torch.from_numpy(raw).double(), rate, 16000).float()
    wave16 = wave16 * (10 ** (-30 / 20) / wave16.square().mean().sqrt())
    expected = MelFrontEnd()(fix_length(wave16, 8000))
    assert torch.allclose(s0.train.tensors["x"][i, 0], expected, atol=1e-4)
    again = clip_features([tmp_path / "low" / "v0_0.wav"], seconds=0.5, mel={"n_mels": 40})
    assert torch.equal(again[0], s0.train.tensors["x"][i])  # an extra test set gets the same features
    # the tone's mel band is the loudest: labels match content
    band = s0.train.tensors["x"][:, 0].mean(-1).argmax(-1)
    bands = {name: set(band[s0.train.tensors["y"] == i].tolist()) for i, name in enumerate(s0.class_names)}
    assert max(bands["low"]) < min(bands["mid"]) and max(bands["mid"]) < min(bands["high"])


def test_given_split_folders_and_per_class(tmp_path):
    for split in ("train", "test"):
        make_folder(tmp_path / split, per_class=5)
    s = load_dataset("audio_folder", data_dir=str(tmp_path), seconds=0.25, features="wave")
    assert s.input_shape == (4000,)
    assert all("/test/" in f for f in s.files["test"]) and len(s.test) == 15
    assert all("/train/" in f for f in s.files["val"] + s.files["train"])
    few = load_dataset("audio_folder", data_dir=str(tmp_path), seconds=0.25, features="wave", per_class=2)
    assert torch.bincount(few.train.tensors["y"]).tolist() == [2, 2, 2]
    other = load_dataset(
        "audio_folder", data_dir=str(tmp_path), seconds=0.25, features="wave", per_class=2, seed=3
    )
    assert few.files["train"] != other.files["train"]  # the subset is drawn with the run seed


def test_manifest_group_split_keeps_voices_apart(tmp_path):
    make_folder(tmp_path, per_class=12, voices=6, manifest=True)
    for seed in (0, 1, 2):
        s = load_dataset(
            "audio_folder", data_dir=str(tmp_path), manifest="manifest.csv", group_column="voice",
            seconds=0.25, seed=seed, val_size=1, test_fraction=0.34,
        )  # fmt: skip
        voices = {k: {f.split("/")[-1].split("_")[0] for f in v} for k, v in s.files.items()}
        assert len(voices["test"]) == 2 and len(voices["val"]) == 1
        assert not (voices["train"] & voices["test"] or voices["train"] & voices["val"])
        assert not voices["val"] & voices["test"]


def test_label_column_makes_the_voice_the_class_split_by_word(tmp_path):
    make_folder(tmp_path, per_class=6, voices=3, manifest=True)
    s = load_dataset(
        "audio_folder", data_dir=str(tmp_path), manifest="manifest.csv", label_column="voice",
        group_column="label", seconds=0.25, val_size=1, test_fraction=0.34, per_class=1,
    )  # fmt: skip
    assert s.num_classes == 3 and s.class_names == ["v0", "v1", "v2"]
    words = {k: {f.split("/")[-2] for f in v} for k, v in s.files.items()}
    assert all(len(w) == 1 for w in words.values()) and len(set().union(*words.values())) == 3
    voice_of = [f.split("/")[-1].split("_")[0] for f in s.files["test"]]
    assert s.test.tensors["y"].tolist() == [s.class_names.index(v) for v in voice_of]
    assert len(s.train) == 3  # per_class counts clips per voice
    with pytest.raises(KdforgeError, match="no 'accent' column"):
        load_dataset("audio_folder", data_dir=str(tmp_path), manifest="manifest.csv", label_column="accent")


@pytest.mark.parametrize(
    ("breakage", "message"),
    [
        ("empty_class", "holds no .wav/.flac files"),
        ("unreadable", "cannot read audio file .*broken.wav"),
        ("too_few", "too few to split"),
        ("no_label_column", "has no 'label' column .*columns: path, voice"),
        ("few_groups", "too few to split .* by group"),
        ("no_dir", "does not exist"),
    ],
)
def test_bad_input_gives_one_clear_error(tmp_path, breakage, message):
    make_folder(tmp_path, per_class=4, voices=2, manifest=True)
    kwargs = {"data_dir": str(tmp_path), "seconds": 0.25}
    if breakage == "empty_class":
        (tmp_path / "silent").mkdir()
    elif breakage == "unreadable":
        (tmp_path / "low" / "broken.wav").write_bytes(b"RIFF....not audio")
    elif breakage == "too_few":
        for f in sorted((tmp_path / "mid").iterdir())[2:]:
            f.unlink()
    elif breakage == "no_label_column":
        lines = (tmp_path / "manifest.csv").read_text().splitlines()
        (tmp_path / "manifest.csv").write_text("\n".join(",".join(line.split(",")[::2]) for line in lines))
        kwargs["manifest"] = "manifest.csv"
    elif breakage == "few_groups":
        kwargs |= {"manifest": "manifest.csv", "group_column": "voice"}
    elif breakage == "no_dir":
        kwargs["data_dir"] = str(tmp_path / "nowhere")
    with pytest.raises(KdforgeError, match=message):
        load_dataset("audio_folder", **kwargs)


def test_flac_through_soundfile(tmp_path):
    soundfile = pytest.importorskip("soundfile")
    x = _tone(440, 16000, 0.1).astype(np.float32)
    soundfile.write(str(tmp_path / "a.flac"), x, 16000)
    back, rate = read_audio(tmp_path / "a.flac")
    assert rate == 16000 and np.abs(back - x).max() < 1e-3
