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

from kdforge.distill import DistillConfig  # dataclasses only: the defaults of `distill`
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
}
for _name, (_module, _help) in _SUBAPPS.items():
    with contextlib.suppress(ImportError):
        app.add_typer(importlib.import_module(_module).app, name=_name, help=_help)


@app.callback()
def _global_options(
    plugin: list[str] = typer.Option(
        None,
        "--plugin",
        metavar="FILE_OR_MODULE",
        help="Your own code to import first (a .py file or a module name; repeatable): its "
        "register_dataset / register_model / register_method entries become usable by every command.",
    ),
) -> None:
    """kdforge: compress a trained teacher into a small student (KD, FitNet, OPDF, KT, EAsT)."""
    if plugin:
        from kdforge.registry import load_plugins

        load_plugins(plugin)


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

    Paths written in the recipe (checkpoint, init_from, hf:DIR, torchscript:FILE, FILE.py:FUNCTION,
    data.data_dir) resolve against the recipe file's directory; "{output_dir}/..." against the
    run's output directory (so --output-dir moves the whole chain); overrides against the
    current directory.
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
        if name == "models":
            from kdforge.models.reference import REFERENCE_FORMS

            typer.echo(f"  or by reference: {', '.join(REFERENCE_FORMS)}")


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


_DISTILL = DistillConfig()


@app.command()
def distill(
    teacher: str = typer.Option(
        ..., help="Exported teacher (RUN/student.safetensors with its .json) or a model name/reference."
    ),
    data: str = typer.Option(_DISTILL.data, help="Registered data set (see `kdforge list datasets`)."),
    data_dir: str = typer.Option(None, "--data-dir", help="Directory the data set reads (e.g. IDX files)."),
    data_option: list[str] = typer.Option(None, "--data-option", help="Data set option KEY=VALUE (repeat)."),
    val_size: int = typer.Option(None, help="Validation examples carved from the training split."),
    labelled: int = typer.Option(
        None, help="Keep only N training labels; the rest is an unlabelled pool the teacher labels."
    ),
    unlabelled: int = typer.Option(None, help="Size of the unlabelled pool (default: every other example)."),
    student: str = typer.Option(_DISTILL.student, help="Registered student model."),
    student_option: list[str] = typer.Option(
        None, "--student-option", help="Student option KEY=VALUE (repeat); default hidden=[64] for mlp."
    ),
    teacher_option: list[str] = typer.Option(None, "--teacher-option", help="Teacher option KEY=VALUE."),
    teacher_checkpoint: str = typer.Option(None, help="Teacher weights when --teacher is a model name."),
    teacher_outputs: int = typer.Option(None, help="Teacher output width if not the data's class count."),
    head: str = typer.Option(
        _DISTILL.head, help="Fit a missing head by 'probe' (frozen teacher) or 'finetune'."
    ),
    method: list[str] = typer.Option(
        _DISTILL.methods, "--method", help="Distillation method(s) to compare (repeat)."
    ),
    seed: list[int] = typer.Option(
        _DISTILL.seeds, "--seed", help="Seed(s); selection uses the mean over seeds."
    ),
    steps: int = typer.Option(
        _DISTILL.steps, help="Optimizer steps of every student run (same for every arm)."
    ),
    batch_size: int = typer.Option(_DISTILL.batch_size, help="Training batch size."),
    lr: list[float] = typer.Option(_DISTILL.grid.lr, "--lr", help="Learning rates tried for every arm."),
    temperature: list[float] = typer.Option(
        _DISTILL.grid.temperature, "--temperature", help="KD temperatures tried."
    ),
    alpha: list[float] = typer.Option(_DISTILL.grid.alpha, "--alpha", help="KD soft-target weights tried."),
    grid_steps: list[int] = typer.Option(
        None, "--grid-steps", help="Schedule lengths tried for every arm (repeat; replaces --steps)."
    ),
    output_dir: str = typer.Option(
        _DISTILL.output_dir, "--output-dir", help="Runs, recipe and report go here."
    ),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show progress bars."),
    resume: bool = typer.Option(
        False, "--resume", help="Accepted for symmetry with `run`: finished runs are always reused."
    ),
) -> None:
    """Distil a teacher into a smaller student, tuned fairly on validation, and write a report.

    Trains the student alone and with each method over the same learning-rate grid (KD also
    over temperatures and weights), keeps each arm's best validation point, scores test once
    and writes OUTPUT_DIR/report.md|json|png and OUTPUT_DIR/distill.yaml (every setting).
    Run the same command again to resume: finished runs are skipped.
    """
    import yaml

    from kdforge.distill import TuningGrid
    from kdforge.distill import distill as run_distill

    def options(pairs: list[str] | None, flag: str) -> dict:
        out = {}
        for pair in pairs or []:
            if "=" not in pair:
                raise KdforgeError(f"{flag} '{pair}' is not KEY=VALUE", f"write e.g. {flag} hidden=[64]")
            key, raw = pair.split("=", 1)
            out[key] = yaml.safe_load(raw)
        return out

    cfg = DistillConfig(
        teacher=teacher,
        teacher_kwargs=options(teacher_option, "--teacher-option"),
        teacher_checkpoint=teacher_checkpoint,
        teacher_outputs=teacher_outputs,
        head=head,
        data=data,
        data_dir=data_dir,
        data_kwargs=options(data_option, "--data-option"),
        val_size=val_size,
        labelled=labelled,
        unlabelled=unlabelled,
        student=student,
        methods=list(method),
        seeds=list(seed),
        steps=steps,
        batch_size=batch_size,
        grid=TuningGrid(
            lr=list(lr), temperature=list(temperature), alpha=list(alpha), steps=list(grid_steps or [])
        ),
        output_dir=output_dir,
    )
    if student_option:
        cfg.student_kwargs = options(student_option, "--student-option")
    elif student != _DISTILL.student:  # the default options belong to the default student
        cfg.student_kwargs = {}
    result = run_distill(cfg, progress=progress)
    typer.echo("\n" + result["paths"]["md"].read_text())
    typer.echo(f"report: {result['paths']['md']} (+ .json, .png); recipe: {output_dir}/distill.yaml")


@app.command()
def quickstart(
    output_dir: str = typer.Option("runs/quickstart", help="Where the teacher, runs and report are written."),
    dataset: str = typer.Option("fashion_mnist", help="Registered data set (see `kdforge list`)."),
    data_dir: str = typer.Option(None, "--data-dir", help="MNIST-format IDX directory (dataset idx)."),
    seed: int = typer.Option(0, help="Seed for the labelled subset, the validation split, init and order."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show progress bars."),
    resume: bool = typer.Option(
        False, "--resume", help="Accepted for symmetry with `run`: the teacher and finished runs are reused."
    ),
) -> None:
    """Distillation where it pays: 500 labels plus 20,000 unlabelled images the teacher labels.

    Trains a CNN teacher on the labelled images (once; reused later), then `kdforge distill`:
    an MLP student alone and with Hinton KD, tuned alike on validation; prints the report.
    Interrupted or repeated, it continues where it stopped (finished runs are reused).
    """
    from kdforge.quickstart import quickstart as qs

    result = qs(output_dir, dataset, data_dir, seed, progress=progress)
    typer.echo("\n" + result["paths"]["md"].read_text())
    typer.echo(
        f"KD gain over the tuned student alone: {result['kd_gain_points']:+.2f} points (test); "
        f"wall time {result['wall_time_s']:.0f} s; runs and report in {output_dir}/"
    )


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
