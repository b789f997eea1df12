"""``kdforge embed extract``: cache a frozen teacher's embeddings of a dataset split."""

from __future__ import annotations

import typer

from kdforge.errors import KdforgeError

app = typer.Typer(help="Teacher-embedding caches (embeddings as teachers).", no_args_is_help=True)


@app.callback()
def _group() -> None:
    """Teacher-embedding caches (embeddings as teachers)."""


#: built-in embedders: name -> (description)
BUILTIN = {
    "minilm": "all-MiniLM-L6-v2 mean-pooled, L2-normalised sentence embedding [N, 384]",
    "minilm-tokens": "all-MiniLM-L6-v2 last-layer token states [N, T, 384] (stored float16)",
}


def make_embedder(model: str, checkpoint: str | None, path: str | None, splits):
    """Embedder for a built-in name or for a registered model (+ checkpoint, + module path).

    A checkpoint exported by kdforge (``X.safetensors`` with its spec ``X.json`` beside it) is
    rebuilt from the spec, so its kwargs (e.g. ``resize``) need not match the dataset's shape.
    """
    import torch

    from kdforge.data.embeddings import module_embedder

    if model in BUILTIN:
        from kdforge.models.hf import SentenceEncoder

        return module_embedder(SentenceEncoder(tokens=model == "minilm-tokens")), (
            torch.float16 if model == "minilm-tokens" else torch.float32
        )
    from pathlib import Path

    from kdforge.models import build_model
    from kdforge.registry import MODELS

    if getattr(MODELS.get(model), "pretrained", False) and not checkpoint:  # weights come with the builder
        net = build_model(model, splits.input_shape, splits.num_classes)
        return module_embedder(net, path), torch.float32
    if not checkpoint:
        raise KdforgeError(
            f"model '{model}' has no checkpoint: its embeddings would be random", "pass --checkpoint"
        )
    spec = Path(checkpoint).with_suffix(".json")
    if spec.is_file():  # exported by kdforge: the architecture (kwargs, shapes) comes from the spec
        import json

        from kdforge.models import load_model

        saved = json.loads(spec.read_text()).get("model")
        if saved != model:
            raise KdforgeError(
                f"checkpoint {checkpoint} holds a '{saved}', not '{model}'",
                "pass the --model the checkpoint was exported from",
            )
        net = load_model(checkpoint)
    else:
        from kdforge.io import load_weights

        net = load_weights(build_model(model, splits.input_shape, splits.num_classes), checkpoint)
    return module_embedder(net, path), torch.float32


@app.command()
def extract(
    dataset: str = typer.Option(..., help="registered dataset, e.g. vader_movies"),
    model: str = typer.Option("minilm", help=f"{', '.join(BUILTIN)} or a registered model name"),
    split: str = typer.Option("all", help="train | val | test | all (all three, matched by content later)"),
    checkpoint: str = typer.Option(None, help="safetensors weights for a registered model"),
    path: str = typer.Option(None, help="module path whose output is the embedding (default: model output)"),
    cache: str = typer.Option(
        None, help="cache entry dir (default $KDFORGE_CACHE/embeddings/DATASET/SPLIT/MODEL)"
    ),
    name: str = typer.Option(
        None, help="cache name of this teacher (default MODEL@PATH); name two checkpoints differently"
    ),
    batch_size: int = typer.Option(64),
    data_dir: str = typer.Option(None),
) -> None:
    """Run a frozen model over one split once and store its embeddings (resumable)."""
    from kdforge.data import load_dataset
    from kdforge.data.embeddings import all_rows, default_root, entry_dir
    from kdforge.data.embeddings import extract as run_extract

    splits = load_dataset(dataset, data_dir=data_dir)
    data = all_rows(splits) if split == "all" else getattr(splits, split, None)
    if data is None:
        raise KdforgeError(f"unknown split '{split}'", "use train, val, test or all")
    embed, dtype = make_embedder(model, checkpoint, path, splits)
    name = name or (model if not path else f"{model}@{path}")
    out = cache or entry_dir(default_root(), dataset, split, name)
    run_extract(
        embed, data, out, dataset=dataset, split=split, model=name, batch_size=batch_size, dtype=dtype
    )
    typer.echo(f"embeddings of {dataset}/{split} by {name}: {out}")


@app.command("download-vader")
def download_vader_cmd(directory: str = typer.Option(None, help="default $KDFORGE_CACHE/vader")) -> None:
    """One-time setup: pip-download the vaderSentiment 3.3.2 sdist (VADER ground-truth sentiment sets)."""
    from kdforge.data.text import download_vader

    typer.echo(download_vader(directory))


if __name__ == "__main__":
    app()
