"""Labelled English text: the VADER ground-truth sentiment sets, tokenised with the MiniLM tokenizer.

Source: Hutto & Gilbert, "VADER: A Parsimonious Rule-based Model for Sentiment
Analysis of Social Media Text", ICWSM 2014. The human-rated ground truth ships
inside the *sdist* of the PyPI package ``vaderSentiment==3.3.2`` (MIT licence;
the wheel lacks it) as ``additional_resources/hutto_ICWSM_2014.tar.gz``. Each
``*_GroundTruth.txt`` is tab-separated ``id<TAB>mean rating in [-4, 4]<TAB>text``:

============  ======  =========================================
domain        rows    notes
============  ======  =========================================
movies        10,605  snippets from Pang & Lee sentence polarity
tweets         4,200
amazon         3,708  product review snippets
nyt            5,190  New York Times editorial snippets
============  ======  =========================================

Labels are binarised by sign (1 = positive, 0 = negative); rows rated exactly 0
are dropped. Train on one domain and score on another as an unseen set with
the same label space.

Setup (once, the only download; done by ``kdforge embed download-vader``,
``python -m kdforge.data.embeddings_cli download-vader`` or :func:`download_vader`)::

    pip download --no-deps --no-binary :all: vaderSentiment==3.3.2 -d ~/.cache/kdforge/vader

Nothing is downloaded when a data set is loaded: a missing file is an error that
prints this command.
"""

from __future__ import annotations

import io
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import torch

from kdforge.data._batches import TensorData
from kdforge.data.vision import Splits, split_train_val
from kdforge.errors import KdforgeError
from kdforge.registry import register_dataset

VADER_VERSION = "3.3.2"
VADER_SDIST = f"vaderSentiment-{VADER_VERSION}.tar.gz"
_INNER = f"vaderSentiment-{VADER_VERSION}/additional_resources/hutto_ICWSM_2014.tar.gz"
#: domain -> (file inside hutto_ICWSM_2014/, expected row count)
VADER_DOMAINS: dict[str, tuple[str, int]] = {
    "movies": ("movieReviewSnippets_GroundTruth.txt", 10605),
    "tweets": ("tweets_GroundTruth.txt", 4200),
    "amazon": ("amazonReviewSnippets_GroundTruth.txt", 3708),
    "nyt": ("nytEditorialSnippets_GroundTruth.txt", 5190),
}
DOWNLOAD_CMD = "pip download --no-deps --no-binary :all: vaderSentiment==3.3.2 -d {dir}"


def vader_dir(data_dir: str | Path | None = None) -> Path:
    """Where the VADER sdist lives: ``data_dir``, ``$KDFORGE_VADER`` or ``$KDFORGE_CACHE/vader``."""
    if data_dir:
        return Path(data_dir)
    if os.environ.get("KDFORGE_VADER"):
        return Path(os.environ["KDFORGE_VADER"])
    from kdforge.models.hf import cache_root

    return cache_root() / "vader"


def download_vader(data_dir: str | Path | None = None) -> Path:
    """Explicit setup step: ``pip download`` the vaderSentiment sdist into the cache dir.

    Raises:
        KdforgeError: pip failed (no access to PyPI); prints the manual command.
    """
    d = vader_dir(data_dir)
    d.mkdir(parents=True, exist_ok=True)
    if (d / VADER_SDIST).is_file():
        return d / VADER_SDIST
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:"]
    cmd += [f"vaderSentiment=={VADER_VERSION}", "-d", str(d)]
    res = subprocess.run(cmd, capture_output=True, text=True)
    if res.returncode != 0 or not (d / VADER_SDIST).is_file():
        raise KdforgeError(
            f"pip could not download the vaderSentiment sdist: {res.stderr.strip()[-300:]}",
            f"check access to PyPI, or run by hand: {DOWNLOAD_CMD.format(dir=d)}",
        )
    return d / VADER_SDIST


def _parse(text: str, source: str) -> list[tuple[str, float]]:
    rows = []
    for ln, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        parts = line.rstrip("\r").split("\t", 2)
        try:
            rows.append((parts[2].strip(), float(parts[1])))
        except (IndexError, ValueError):
            msg = f"{source}:{ln} is not 'id<TAB>score<TAB>text'"
            raise KdforgeError(msg, "re-download the sdist") from None
    return rows


def read_vader(domain: str, data_dir: str | Path | None = None) -> list[tuple[str, float]]:
    """All ``(text, rating)`` rows of one VADER domain, read from the cached sdist and count-checked."""
    if domain not in VADER_DOMAINS:
        raise KdforgeError(f"unknown VADER domain '{domain}'", f"use one of {sorted(VADER_DOMAINS)}")
    fname, expected = VADER_DOMAINS[domain]
    d = vader_dir(data_dir)
    sdist = d / VADER_SDIST
    if not sdist.is_file():
        raise KdforgeError(
            f"the VADER ground-truth data is not in '{d}' ({VADER_SDIST} missing)",
            f"run `make data-text` or: {DOWNLOAD_CMD.format(dir=d)}",
        )
    try:
        with tarfile.open(sdist) as outer:
            inner_bytes = outer.extractfile(_INNER).read()  # type: ignore[union-attr]
        with tarfile.open(fileobj=io.BytesIO(inner_bytes)) as inner:
            raw = inner.extractfile(f"hutto_ICWSM_2014/{fname}").read()  # type: ignore[union-attr]
    except (KeyError, tarfile.TarError, AttributeError) as e:
        fix = f"delete it and re-run: {DOWNLOAD_CMD.format(dir=d)}"
        raise KdforgeError(f"{sdist} does not hold {fname}: {e}", fix) from None
    rows = _parse(raw.decode("utf-8"), fname)
    if len(rows) != expected:
        raise KdforgeError(
            f"{fname} has {len(rows)} rows, expected {expected}", f"delete {sdist} and re-download it"
        )
    return rows


def binarise(rows: list[tuple[str, float]]) -> tuple[list[str], torch.Tensor]:
    """Texts and sign labels (1 positive, 0 negative); rows rated exactly 0 are dropped."""
    kept = [(t, s) for t, s in rows if s != 0]
    return [t for t, _ in kept], torch.tensor([int(s > 0) for _, s in kept], dtype=torch.int64)


def tokenize(texts: list[str], max_len: int = 64, tokenizer=None) -> dict[str, torch.Tensor]:
    """MiniLM-tokenise to a fixed length: ``input_ids`` and ``attention_mask``, int64 ``[N, max_len]``."""
    if tokenizer is None:
        from kdforge.models.hf import load_tokenizer

        tokenizer = load_tokenizer()
    tok = tokenizer.__class__.from_str(tokenizer.to_str())  # a copy: padding settings stay local
    tok.enable_truncation(max_len)
    tok.enable_padding(length=max_len, pad_id=0, pad_token="[PAD]")
    enc = tok.encode_batch(texts)
    ids = torch.tensor([e.ids for e in enc], dtype=torch.int64)
    mask = torch.tensor([e.attention_mask for e in enc], dtype=torch.int64)
    return {"input_ids": ids.reshape(-1, max_len), "attention_mask": mask.reshape(-1, max_len)}


def text_splits(
    texts: list[str],
    y: torch.Tensor,
    name: str,
    max_len: int,
    val_size: int,
    seed: int,
    subset: int | None,
    test_fraction: float = 0.2,
    tokenizer=None,
    test_seed: int = 4321,
) -> Splits:
    """Tokenise and split: a ``test_fraction`` test split drawn with ``test_seed`` (independent of
    the run seed), validation carved from the rest with the run ``seed``."""
    enc = tokenize(texts, max_len, tokenizer)
    n = len(texts)
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(test_seed))
    n_test = int(round(test_fraction * n))
    test_idx, train_idx = perm[:n_test], perm[n_test:]
    test = TensorData({**{k: v[test_idx] for k, v in enc.items()}, "y": y[test_idx]})
    # split_train_val works on one 'x' tensor: stack ids and mask, split, unstack
    x = torch.stack([enc["input_ids"][train_idx], enc["attention_mask"][train_idx]], 1)
    tr, va = split_train_val(x, y[train_idx], val_size, seed, subset)

    def unstack(d: TensorData) -> TensorData:
        xx = d.tensors["x"]
        return TensorData({"input_ids": xx[:, 0], "attention_mask": xx[:, 1], "y": d.tensors["y"]})

    return Splits(unstack(tr), unstack(va), test, int(y.max()) + 1, (max_len,), name)


def vader_all(domain: str, max_len: int = 64, data_dir: str | None = None) -> TensorData:
    """Every binarised row of one domain as one split (for unseen-set evaluation)."""
    texts, y = binarise(read_vader(domain, data_dir))
    return TensorData({**tokenize(texts, max_len), "y": y})


def _make_vader(domain: str, default_val: int):
    def loader(
        data_dir: str | None = None,
        val_size: int = default_val,
        seed: int = 0,
        subset: int | None = None,
        max_len: int = 64,
        test_fraction: float = 0.2,
        test_seed: int = 4321,
    ) -> Splits:
        texts, y = binarise(read_vader(domain, data_dir))
        return text_splits(
            texts, y, f"vader_{domain}", max_len, val_size, seed, subset, test_fraction, test_seed=test_seed
        )

    n = VADER_DOMAINS[domain][1]
    loader.__name__ = f"vader_{domain}"
    loader.__doc__ = (
        f"VADER {domain} ({n:,} rated rows, zeros dropped), binary sentiment, MiniLM token ids; "
        "fixed test split (test_fraction, default 20%; a smaller fraction gives a subset of the "
        "default test split; test_seed draws it), validation carved from the rest with the run seed. MIT."
    )
    return register_dataset(f"vader_{domain}")(loader)


vader_movies = _make_vader("movies", 1000)
vader_tweets = _make_vader("tweets", 400)
vader_amazon = _make_vader("amazon", 350)
vader_nyt = _make_vader("nyt", 500)

__all__ = [
    "VADER_DOMAINS",
    "binarise",
    "download_vader",
    "read_vader",
    "text_splits",
    "tokenize",
    "vader_all",
]
