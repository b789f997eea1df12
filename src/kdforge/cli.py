"""The ``kdforge`` command line: thin wrappers over the library.

Every user-facing failure is a :class:`~kdforge.errors.KdforgeError`, printed as
one message with its fix (exit code 2), never as a traceback. Ctrl-C or SIGTERM
during training saves a checkpoint, prints the command that resumes it and exits
with 130 / 143.

Start-up stays light (``kdforge --help`` and ``kdforge list`` import neither torch
nor any method): commands import the library inside their bodies, the sub-command
groups in :data:`_SUBAPPS` are imported only when used, and ``list`` reads the
registrations from source.
"""

from __future__ import annotations

import importlib
import json
import os
import shlex
import signal
import sys
from pathlib import Path
from typing import Any

import typer
from typer.core import TyperCommand, TyperGroup

from kdforge.distill import DistillConfig  # dataclasses only: the defaults of `distill`
from kdforge.engine.interrupt import STOP_SIGNALS, TrainingInterrupted, signal_name
from kdforge.errors import KdforgeError

# Sub-command groups and commands kept in other modules, mounted when first used:
# name -> ("module" or "module:attribute" holding a typer.Typer, one-line help).
# A Typer with several commands becomes `kdforge NAME COMMAND`, one with a single
# command becomes the command `kdforge NAME`. Adding one is adding a line here.
_SUBAPPS: dict[str, tuple[str, str]] = {
    "translate": ("kdforge.methods.translation.cli", "Knowledge Translation: make pairs, train, evaluate."),
    "embed": ("kdforge.data.embeddings_cli", "Teacher-embedding cache: extract embeddings once."),
    "data": ("kdforge.data.speech_words_cli", "Generated data sets: spoken words (synthetic and real)."),
}


_COMPLETION_OPTIONS = ("install_completion", "show_completion")


class SignalExit(BaseException):
    """SIGINT/SIGTERM outside training (a BaseException, like KeyboardInterrupt)."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal_name(signum))
        self.signum = signum


def _raise_signal_exit(signum: int, _frame: Any) -> None:
    raise SignalExit(signum)


class _Deferred(TyperCommand):
    """Stands in for a :data:`_SUBAPPS` entry: lists with its help, imports when run."""

    def __init__(self, name: str, target: str, help_text: str) -> None:
        super().__init__(name, help=help_text, add_help_option=False)
        self.target = target

    def load(self) -> Any:
        """The real click command (imports its module)."""
        module, _, attribute = self.target.partition(":")
        try:
            sub_app = getattr(importlib.import_module(module), attribute or "app")
        except ImportError as e:
            raise KdforgeError(
                f"`kdforge {self.name}` needs the package '{e.name}', which is not installed",
                "install kdforge with its optional extras (pip install -e '.[dev,nlp]')",
            ) from None
        command = typer.main.get_command(sub_app)
        command.help = command.help or self.help
        # as with app.add_typer: the top level decides about shell completion (off)
        command.params = [p for p in command.params if p.name not in _COMPLETION_OPTIONS]
        return command

    def make_context(self, info_name: str | None, args: list[str], parent=None, **extra: Any):
        """Parse with the real command: the context (and its ``command``) are the real one's."""
        return self.load().make_context(info_name, args, parent=parent, **extra)


class _KdforgeGroup(TyperGroup):
    """The top-level group: lazy sub-apps and one place that turns failures into messages."""

    def list_commands(self, ctx: Any) -> list[str]:
        """Commands defined here, then the lazily mounted ones."""
        own = super().list_commands(ctx)
        return own + [name for name in _SUBAPPS if name not in own]

    def get_command(self, ctx: Any, cmd_name: str) -> Any:
        """A command defined here, or a stand-in for a :data:`_SUBAPPS` entry (nothing imported)."""
        if cmd_name in self.commands:
            return self.commands[cmd_name]
        if cmd_name in _SUBAPPS:
            return _Deferred(cmd_name, *_SUBAPPS[cmd_name])
        return None

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        """Parse as usual, keeping the arguments for the resume hint."""
        ctx.meta["kdforge.argv"] = list(args)
        return super().parse_args(ctx, args)

    def invoke(self, ctx: Any) -> Any:
        """Run the sub-command; a KdforgeError or an interrupt becomes one message and an exit code."""
        try:
            return super().invoke(ctx)
        except TrainingInterrupted as e:
            if os.environ.get("RANK", "0") == "0":
                typer.secho(e.cause, fg="yellow", err=True)
                typer.echo(f"  resume with: {_resume_command(ctx.meta['kdforge.argv'])}", err=True)
            raise typer.Exit(e.exit_code) from None
        except KdforgeError as e:
            typer.secho(f"error: {e.cause}", fg="red", err=True)
            if e.fix:
                typer.echo(f"  fix: {e.fix}", err=True)
            raise typer.Exit(2) from None
        except SignalExit as e:
            typer.secho(
                f"interrupted by {e} outside training; checkpoints already written are kept "
                "(continue a run with --resume)",
                err=True,
            )
            raise typer.Exit(128 + e.signum) from None


def _resume_command(args: list[str]) -> str:
    """The command line that continues the interrupted one (``args``: kdforge's arguments)."""
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        return "the same `accelerate launch ...` command plus --resume"
    if "--resume" not in args:
        args = [*args, "--resume"]
    return shlex.join(["kdforge", *args])


app = typer.Typer(
    cls=_KdforgeGroup,
    help="kdforge: compress a trained teacher into a small student (KD, FitNet, OPDF, KT, EAsT).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,  # plain help: formatting it with rich costs ~0.1 s CPU per start
)


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
    progress: bool = typer.Option(
        True,
        "--progress/--no-progress",
        help="Show a progress bar (on a terminal) or a progress line every train.progress_every_s s.",
    ),
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
    from kdforge._registry_scan import KINDS, describe_registered

    if kind != "all" and kind not in KINDS:
        raise KdforgeError(f"unknown list kind '{kind}'", "use methods, models, datasets or all")
    for name, entries in describe_registered().items():
        if kind not in ("all", name):
            continue
        typer.echo(f"{name}:")
        for key, doc in entries.items():
            typer.echo(f"  {key:<24} {doc}")
        if name == "models":
            from kdforge.registry import REFERENCE_FORMS

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
        _DISTILL.head,
        help="When the teacher has no trained head for the data's classes (other output width, or an "
        "hf: encoder / head: new), fit one first: 'probe' (frozen teacher) or 'finetune' (all of it).",
    ),
    head_steps: int = typer.Option(_DISTILL.head_steps, help="Optimizer steps of that head fitting."),
    head_lr: float = typer.Option(_DISTILL.head_lr, help="Learning rate of that head fitting."),
    method: list[str] = typer.Option(
        _DISTILL.methods, "--method", help="Distillation method(s) to compare (repeat)."
    ),
    method_option: list[str] = typer.Option(
        None,
        "--method-option",
        help="Method option KEY=VALUE, or METHOD.KEY=VALUE for one of several methods (repeat), e.g. "
        "student_path=blocks.1 for fitnet; a KD temperature or alpha given here is fixed, not tuned.",
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

    from kdforge.distill import TuningGrid, parse_method_options
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
        head_steps=head_steps,
        head_lr=head_lr,
        data=data,
        data_dir=data_dir,
        data_kwargs=options(data_option, "--data-option"),
        val_size=val_size,
        labelled=labelled,
        unlabelled=unlabelled,
        student=student,
        methods=list(method),
        method_options=parse_method_options(list(method_option or []), list(method)),
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


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point (``kdforge``): exits with the command's status.

    SIGINT and SIGTERM raise :class:`SignalExit` outside training (during training the
    loop takes them over to save a checkpoint first), so both end with one message and
    status 130 / 143 rather than a traceback or a silent kill.
    """
    for sig in STOP_SIGNALS:
        signal.signal(sig, _raise_signal_exit)
    app(args=sys.argv[1:] if argv is None else argv, prog_name="kdforge")


if __name__ == "__main__":
    main()
