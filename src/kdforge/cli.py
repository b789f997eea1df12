"""The ``kdforge`` command line: thin wrappers over the library.

Every user-facing failure is a :class:`~kdforge.errors.KdforgeError`, printed as
one message with its fix (exit code 2), never as a traceback.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import os
import sys
from pathlib import Path

import typer

from kdforge.errors import KdforgeError

app = typer.Typer(
    help="kdforge: compress a trained teacher into a small student (KD, FitNet, OPDF, KT, EAsT).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

# Sub-command groups contributed by method packages (mounted when importable).
_SUBAPPS = {
    "translate": ("kdforge.methods.translation.cli", "Knowledge Translation: make pairs, train, evaluate."),
    "embed": ("kdforge.data.embeddings_cli", "Teacher-embedding cache: extract embeddings once."),
    "data": ("kdforge.data.speech_words_cli", "Generated data sets: spoken words (synthetic and real)."),
}
for _name, (_module, _help) in _SUBAPPS.items():
    with contextlib.suppress(ImportError):
        app.add_typer(importlib.import_module(_module).app, name=_name, help=_help)


@app.command()
def run(
    recipe: Path = typer.Argument(..., help="YAML recipe (see configs/)."),
    overrides: list[str] = typer.Argument(None, help="Dotted overrides, e.g. train.lr=0.01 seed=1."),
    resume: bool = typer.Option(False, "--resume", help="Continue this run from its last checkpoint."),
    output_dir: str = typer.Option(None, "--output-dir", help="Parent directory of the run directory."),
    data_dir: str = typer.Option(None, "--data-dir", help="MNIST-format IDX directory to use as data."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show a progress bar."),
) -> None:
    """Train one recipe; writes config, metrics, checkpoints, exported student and summary.json.

    The run directory is OUTPUT_DIR/NAME. A killed run continues with --resume and ends
    with the same result as an uninterrupted one. Under `accelerate launch --num_processes N`
    the global batch is split across processes.
    """
    from kdforge.config import load_recipe
    from kdforge.engine.run import run_experiment

    extra = list(overrides or [])
    if output_dir:
        extra.append(f"output_dir={output_dir}")
    if data_dir:
        extra.append(f"data.data_dir={data_dir}")
    cfg = load_recipe(recipe, extra)
    summary = run_experiment(cfg, resume=resume, progress=progress)
    if os.environ.get("RANK", "0") == "0":  # one summary under `accelerate launch`
        typer.echo(json.dumps(summary, indent=1))


@app.command("list")
def list_(kind: str = typer.Argument("all", help="methods | models | datasets | all")) -> None:
    """List registered methods, models and data sets with a one-line description."""
    from kdforge.registry import DATASETS, METHODS, MODELS

    regs = {"methods": METHODS, "models": MODELS, "datasets": DATASETS}
    if kind != "all" and kind not in regs:
        raise KdforgeError(f"unknown list kind '{kind}'", "use methods, models, datasets or all")
    for name, reg in regs.items():
        if kind not in ("all", name):
            continue
        typer.echo(f"{name}:")
        for key, obj in reg.items():
            doc = (obj.__doc__ or "").strip().splitlines()
            typer.echo(f"  {key:<24} {doc[0] if doc else ''}")


@app.command()
def report(
    run_dirs: list[Path] = typer.Argument(..., help="Finished run directories."),
    out: Path = typer.Option(None, "--out", help="Write the markdown table here."),
    plot: Path = typer.Option(None, "--plot", help="Write a PNG of training curves here."),
) -> None:
    """Markdown table (mean ± std over runs sharing a name) and optional PNG of training curves."""
    from kdforge.report.plots import plot_curves
    from kdforge.report.tables import load_summary, summaries_table

    table = summaries_table([load_summary(d) for d in run_dirs])
    typer.echo(table)
    if out:
        out.write_text(table + "\n")
    if plot:
        plot_curves(run_dirs, plot)
        typer.echo(f"curves written to {plot}")


@app.command()
def quickstart(
    output_dir: str = typer.Option("runs/quickstart", help="Where the three runs are written."),
    dataset: str = typer.Option("fashion_mnist", help="Registered data set (see `kdforge list`)."),
    data_dir: str = typer.Option(None, "--data-dir", help="MNIST-format IDX directory (dataset idx)."),
    epochs: int = typer.Option(3, help="Epochs per model."),
    seed: int = typer.Option(0, help="Seed for initialisation, order and the validation split."),
    resume: bool = typer.Option(False, "--resume", help="Keep finished runs, continue unfinished ones."),
) -> None:
    """Train a CNN teacher, an MLP student alone and the same student with Hinton KD; print the table.

    Takes a few minutes on 2 CPU cores with the default Fashion-MNIST data.
    """
    from kdforge.quickstart import quickstart as qs

    result = qs(output_dir, dataset, data_dir, epochs, seed, resume=resume)
    typer.echo("\n" + result["table"])
    typer.echo(f"\nwall time {result['wall_time_s']:.0f} s; runs in {output_dir}/")


def main() -> None:
    """Console-script entry point: run the app, turning KdforgeError into one clear message."""
    try:
        app(standalone_mode=False)
    except KdforgeError as e:
        typer.secho(f"error: {e.cause}", fg="red", err=True)
        if e.fix:
            typer.echo(f"  fix: {e.fix}", err=True)
        sys.exit(2)
    except (typer.Abort, KeyboardInterrupt):
        typer.echo("interrupted; resume with --resume", err=True)
        sys.exit(130)
    except Exception as e:  # click usage errors carry their own exit codes
        import click

        if isinstance(e, click.exceptions.ClickException):
            e.show()
            sys.exit(e.exit_code)
        if isinstance(e, click.exceptions.Exit):
            sys.exit(e.exit_code)
        raise


if __name__ == "__main__":
    main()
