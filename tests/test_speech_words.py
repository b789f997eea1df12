"""The spoken-words generator: split by voice, reproducibility, resumption, the Asterisk export, the CLI."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from kdforge.cli import app
from kdforge.data import load_dataset
from kdforge.data.audio_folder import read_manifest
from kdforge.data.speech_words import (
    ASTERISK_DIR,
    WORDS,
    SpeechWordsConfig,
    export_asterisk,
    generate,
    trim_silence,
    voices_by_split,
)
from kdforge.errors import KdforgeError

needs_synth = pytest.mark.skipif(
    not (shutil.which("espeak-ng") and shutil.which("flite")),
    reason="espeak-ng/flite not installed (make data-audio)",
)
TINY = SpeechWordsConfig(espeak_voices=4, flite_variants=1, words="0a", val_voices=0.2, test_voices=0.2)


@pytest.fixture(scope="module")
def tiny_set(tmp_path_factory):
    """9 voices (4 espeak-ng, 5 flite) x 2 words, made once for this module."""
    if not (shutil.which("espeak-ng") and shutil.which("flite")):
        pytest.skip("espeak-ng/flite not installed (make data-audio)")
    out = tmp_path_factory.mktemp("words")
    return generate(out, TINY, progress=False)


def test_words_are_the_36_classes():
    assert "".join(WORDS) == "0123456789abcdefghijklmnopqrstuvwxyz"
    assert WORDS["7"] == "seven" and WORDS["w"] == "double you"


def test_trim_silence_keeps_the_sound_and_a_margin():
    rate = 16000
    tone = np.sin(np.arange(rate // 2) * 0.3)
    x = np.concatenate([np.zeros(rate), tone, np.zeros(rate)])
    y = trim_silence(x, rate)
    assert len(tone) <= len(y) <= len(tone) + 2 * int(0.05 * rate) + 2 * rate // 100
    assert np.abs(y).max() == pytest.approx(np.abs(tone).max())
    assert len(trim_silence(np.zeros(100), rate)) == 100


@needs_synth
def test_split_by_voice_has_no_overlap_and_every_voice_speaks_every_word(tiny_set):
    rows = read_manifest(tiny_set)
    assert len(rows) == 9 * 2
    assert list(rows[0]) == [
        "path",
        "label",
        "voice",
        "engine",
        "accent",
        "variant",
        "speed",
        "pitch",
        "split",
    ]
    by_split = voices_by_split(tiny_set)
    assert set(by_split) == {"train", "val", "test"}
    assert sum(len(v) for v in by_split.values()) == 9
    assert not (by_split["train"] & by_split["test"] or by_split["train"] & by_split["val"])
    assert not by_split["val"] & by_split["test"]
    for voice in {r["voice"] for r in rows}:
        assert sorted(r["label"] for r in rows if r["voice"] == voice) == ["0", "a"]
    assert {r["engine"] for r in rows} == {"espeak-ng", "flite"}
    assert all((tiny_set.parent / r["path"]).stat().st_size > 1000 for r in rows)


@needs_synth
def test_same_seed_same_set_and_the_adapter_keeps_voices_apart(tiny_set, tmp_path):
    again = generate(tmp_path / "again", TINY, progress=False)
    assert again.read_text() == tiny_set.read_text()
    first = read_manifest(tiny_set)[0]["path"]
    assert (tmp_path / "again" / first).read_bytes() == (tiny_set.parent / first).read_bytes()
    assert generate(tiny_set.parent, TINY, progress=False) == tiny_set  # resumable: same options, no error
    with pytest.raises(KdforgeError, match="made with other options"):
        generate(tiny_set.parent, SpeechWordsConfig(espeak_voices=5, words="0a"), progress=False)
    splits = load_dataset("audio_folder", data_dir=str(tiny_set.parent), manifest="manifest.csv")
    voice_of = {str(tiny_set.parent / r["path"]): r["voice"] for r in read_manifest(tiny_set)}
    voices = {s: {voice_of[f] for f in files} for s, files in splits.files.items()}
    assert voices == voices_by_split(tiny_set)
    assert splits.num_classes == 2 and splits.input_shape == (1, 40, 101)


def test_bad_options_are_refused(tmp_path):
    with pytest.raises(KdforgeError, match="unknown word"):
        generate(tmp_path / "w", SpeechWordsConfig(words="0!"), progress=False)
    with pytest.raises(KdforgeError, match="cannot be split"):
        generate(tmp_path / "w", SpeechWordsConfig(espeak_voices=1, flite_variants=0), progress=False)
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "x.txt").write_text("mine")
    with pytest.raises(KdforgeError, match="not a speech-words folder"):
        generate(tmp_path / "busy", TINY, progress=False)


def test_asterisk_export(tmp_path):
    with pytest.raises(KdforgeError, match="not found"):
        export_asterisk(tmp_path / "a", sounds_dir=tmp_path / "nowhere")
    if not Path(ASTERISK_DIR, "digits", "0.wav").is_file():
        pytest.skip("asterisk-core-sounds-en-wav not installed (make data-audio)")
    manifest = export_asterisk(tmp_path / "real")
    rows = read_manifest(manifest)
    assert (
        len(rows) == 36
        and {r["split"] for r in rows} == {"test"}
        and {r["voice"] for r in rows} == {"asterisk"}
    )
    assert (tmp_path / "real" / "z" / "asterisk.wav").is_file()


@needs_synth
def test_cli_mounts_data_speech_words(tmp_path):
    res = CliRunner().invoke(
        app, ["data", "speech-words", "--out", str(tmp_path / "w"), "--espeak-voices", "3",
              "--flite-variants", "0", "--words", "1", "--val-voices", "0.3", "--test-voices", "0.3"],
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    assert "voices per split {'test': 1, 'train': 1, 'val': 1}" in res.output
