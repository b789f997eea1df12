"""VADER text loader, tokenisation and text models, on tiny synthetic equivalents of the real files."""

from __future__ import annotations

import io
import tarfile

import pytest
import torch

from kdforge.data import text
from kdforge.errors import KdforgeError
from kdforge.models.hf import SentenceEncoder
from kdforge.models.text import TextCNN, TinyTransformer, masked_mean


def _tokenizer():
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers

    words = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "good", "bad", "movie", "very", "not", "a"]
    tok = Tokenizer(models.WordPiece({w: i for i, w in enumerate(words)}, unk_token="[UNK]"))
    tok.normalizer = normalizers.Lowercase()
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    return tok


def _fake_sdist(directory, rows: dict[str, list[str]]) -> None:
    """Write vaderSentiment-3.3.2.tar.gz with the nested hutto_ICWSM_2014.tar.gz, as on PyPI."""
    inner_buf = io.BytesIO()
    with tarfile.open(fileobj=inner_buf, mode="w:gz") as inner:
        for domain, lines in rows.items():
            data = "\r\n".join(lines).encode()
            info = tarfile.TarInfo(f"hutto_ICWSM_2014/{text.VADER_DOMAINS[domain][0]}")
            info.size = len(data)
            inner.addfile(info, io.BytesIO(data))
    with tarfile.open(directory / text.VADER_SDIST, "w:gz") as outer:
        info = tarfile.TarInfo(text._INNER)
        info.size = len(inner_buf.getvalue())
        outer.addfile(info, io.BytesIO(inner_buf.getvalue()))


@pytest.fixture
def vader(tmp_path, monkeypatch):
    pairs = [
        (2.5, "a very good movie"),
        (-1.2, "a bad movie"),
        (0.0, "a movie"),
        (1.0, "good"),
        (-3, "not good"),
    ]
    lines = [f"{i}\t{s}\t{t}" for i, (s, t) in enumerate(pairs * 8)]
    _fake_sdist(tmp_path, {"movies": lines, "tweets": lines[:5]})
    small = {"movies": (text.VADER_DOMAINS["movies"][0], 40), "tweets": (text.VADER_DOMAINS["tweets"][0], 5)}
    monkeypatch.setattr(text, "VADER_DOMAINS", {**text.VADER_DOMAINS, **small})
    monkeypatch.setattr("kdforge.models.hf.load_tokenizer", lambda *a: _tokenizer())
    return tmp_path


def test_read_binarise_and_split(vader):
    rows = text.read_vader("movies", vader)
    assert len(rows) == 40 and rows[0] == ("a very good movie", 2.5)
    texts, y = text.binarise(rows)
    assert len(texts) == 32 and "a movie" not in texts  # zeros dropped
    assert y[:4].tolist() == [1, 0, 1, 0]
    s = text.vader_movies(data_dir=str(vader), val_size=4, max_len=6)
    assert (len(s.train), len(s.val), len(s.test)) == (22, 4, 6)
    assert s.train.tensors["input_ids"].shape == (22, 6) and s.num_classes == 2 and s.input_shape == (6,)
    s2 = text.vader_movies(data_dir=str(vader), val_size=4, max_len=6, seed=1)
    assert torch.equal(
        s.test.tensors["input_ids"], s2.test.tensors["input_ids"]
    )  # test split is seed-independent


def test_tokenize_pads_and_truncates():
    enc = text.tokenize(["good movie", "a very very very good bad movie"], max_len=4, tokenizer=_tokenizer())
    assert enc["input_ids"].tolist() == [[4, 6, 0, 0], [9, 7, 7, 7]]
    assert enc["attention_mask"].tolist() == [[1, 1, 0, 0], [1, 1, 1, 1]]


def test_missing_and_corrupt_files_are_clear_errors(tmp_path, vader):
    with pytest.raises(KdforgeError, match="pip download --no-deps --no-binary :all: vaderSentiment==3.3.2"):
        text.read_vader("movies", tmp_path / "empty")
    with pytest.raises(KdforgeError, match="tweets_GroundTruth.txt has 5 rows, expected 4200"):
        text.VADER_DOMAINS["tweets"] = (text.VADER_DOMAINS["tweets"][0], 4200)
        text.read_vader("tweets", vader)
    with pytest.raises(KdforgeError, match="does not hold"):
        text.read_vader("amazon", vader)
    with pytest.raises(KdforgeError, match="unknown VADER domain"):
        text.read_vader("imdb", vader)


def test_text_students_forward_backward_and_ignore_padding():
    ids = torch.tensor([[4, 6, 0, 0], [9, 7, 5, 6]])
    mask = (ids != 0).long()
    for model in (TextCNN(2, vocab=10, emb=8, channels=(6,), kernel=3),
                  TinyTransformer(2, max_len=4, vocab=10, dim=8, depth=1, heads=2)):  # fmt: skip
        model.eval()
        out = model(ids, mask)
        assert out.shape == (2, 2)
        out.sum().backward()
        # changing tokens under padding does not change the prediction
        ids2 = ids.clone()
        ids2[0, 2:] = 5
        assert torch.allclose(model(ids2, mask)[0], out[0], atol=1e-5)


def test_sentence_encoder_trims_padding_without_changing_embeddings():
    from transformers import BertConfig, BertModel

    torch.manual_seed(0)
    bert = BertModel(BertConfig(vocab_size=20, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                                intermediate_size=32, max_position_embeddings=16)).eval()  # fmt: skip
    ids = torch.tensor([[2, 5, 6, 3, 0, 0, 0, 0], [2, 7, 3, 0, 0, 0, 0, 0]])
    mask = (ids != 0).long()
    with torch.no_grad():
        full = masked_mean(bert(input_ids=ids, attention_mask=mask).last_hidden_state, mask)
        enc = SentenceEncoder(bert, normalize=False)(ids, mask)
        normed = SentenceEncoder(bert)(ids, mask)
        tokens = SentenceEncoder(bert, tokens=True)(ids, mask)
    assert torch.allclose(enc, full, atol=1e-5)
    assert torch.allclose(normed.norm(dim=1), torch.ones(2), atol=1e-5)
    assert tokens.shape == (2, 8, 16) and tokens[1, 3:].abs().sum() == 0
