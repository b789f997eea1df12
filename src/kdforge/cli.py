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

from kdforge.engine.interrupt import STOP_SIGNALS, TrainingInterrupted, signal_name
from kdforge.errors import KdforgeError

# Sub-command groups and commands kept in other modules, mounted when first used:
# name -> ("module" or "module:attribute" holding a typer.Typer, one-line help).
# A Typer with several commands becomes `kdforge NAME COMMAND`, one with a single
# command becomes the command `kdforge NAME`. Adding one is adding a line here.
_SUBAPPS: dict[str, tuple[str, str]] = {
    "translate": ("kdforge.methods.translation.cli", "Knowledge Translation: make pairs, train, evaluate."),
    "embed": ("kdforge.data.embeddings_cli", "Teacher-embedding cache: extract embeddings once."),
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
