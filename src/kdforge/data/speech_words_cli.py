"""``kdforge data ...``: make the spoken-words sets (synthetic for training, real recordings for testing)."""

from __future__ import annotations

import typer

app = typer.Typer(help="Generated and exported data sets.", no_args_is_help=True)


@app.callback()
def _group() -> None:
    """Generated and exported data sets."""


@app.command("speech-words")
def speech_words(
    out: str = typer.Option(..., help="Output folder (audio_folder layout + manifest.csv)."),
    espeak_voices: int = typer.Option(48, help="espeak-ng voices (accent x variant x speed x pitch)."),
    flite_variants: int = typer.Option(2, help="Speaking rates per flite voice (5 voices; 0: no flite)."),
    words: str = typer.Option("0123456789abcdefghijklmnopqrstuvwxyz", help="Labels to speak."),
    val_voices: float = typer.Option(0.15, help="Share of voices held out for validation."),
    test_voices: float = typer.Option(0.2, help="Share of voices held out for test."),
    seed: int = typer.Option(0, help="Draws the espeak-ng voices and the split by voice."),
    workers: int = typer.Option(2, help="Synthesiser processes at a time."),
    asterisk: str = typer.Option(
        None, help="Also export the real Asterisk recordings of the words into this folder."
    ),
) -> None:
    """Synthesise digits and letters with espeak-ng and flite, split by voice (resumable)."""
    from kdforge.data.speech_words import SpeechWordsConfig, export_asterisk, generate, voices_by_split

    cfg = SpeechWordsConfig(espeak_voices, flite_variants, words, val_voices, test_voices, seed)
    manifest = generate(out, cfg, workers=workers)
    counts = {k: len(v) for k, v in sorted(voices_by_split(manifest).items())}
    typer.echo(f"{manifest}: voices per split {counts}")
    if asterisk:
        typer.echo(f"real recordings: {export_asterisk(asterisk, words=words)}")


@app.command("asterisk-words")
def asterisk_words(
    out: str = typer.Option(..., help="Output folder (audio_folder layout + manifest.csv)."),
    sounds_dir: str = typer.Option("/usr/share/asterisk/sounds/en", help="Asterisk's English sounds."),
    words: str = typer.Option("0123456789abcdefghijklmnopqrstuvwxyz", help="Labels to export."),
) -> None:
    """Export the real studio recordings of digits and letters (Debian asterisk-core-sounds-en-wav)."""
    from kdforge.data.speech_words import export_asterisk

    typer.echo(export_asterisk(out, sounds_dir, words))


if __name__ == "__main__":
    app()
