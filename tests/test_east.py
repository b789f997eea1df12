"""Method `east` (EAsT / EC): forward/backward, gradient routing into g, time alignment, errors."""

from __future__ import annotations

import pytest
import torch

from kdforge.errors import KdforgeError
from kdforge.methods.embedding_compression import EmbeddingCompression, align_time
from kdforge.models.cnn import CNN
from kdforge.models.text import TextCNN, TinyTransformer
from kdforge.registry import METHODS


def _text_batch(n: int = 8, t: int = 12, d: int = 20, seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    mask = torch.ones(n, t, dtype=torch.int64)
    mask[:, 9:] = 0
    return {
        "input_ids": torch.randint(1, 50, (n, t), generator=g) * mask,
        "attention_mask": mask,
        "y": torch.randint(0, 2, (n,), generator=g),
        "teacher_emb": torch.randn(n, d, generator=g),
    }


def _build(student=None, **kw) -> EmbeddingCompression:
    student = student or TextCNN(2, vocab=50, emb=8, channels=(16,), kernel=3)
    return METHODS.get("east").build(student, None, kw, _text_batch())


@pytest.mark.parametrize("compress", [True, False])
@pytest.mark.parametrize("loss", ["dcor", "fitnet"])
def test_forward_backward_all_variants(compress, loss):
    m = _build(compress=compress, loss=loss, d=4, kd_weight=0.5)
    logits, terms = m.training_step(_text_batch())
    assert logits.shape == (8, 2)
    expected = {"task", "reg", "kd"} | ({"g_head"} if compress else {"probe"})
    assert set(terms) == expected
    total = sum(terms.values())
    total.backward()
    assert all(torch.isfinite(v) for v in terms.values())
    assert m.student.embed.weight.grad.abs().sum() > 0
    if loss == "fitnet":
        assert m.regressor.weight.grad.abs().sum() > 0


def test_distance_loss_does_not_reach_g_but_head_loss_does():
    m = _build(compress=True, loss="dcor", d=4)
    _, terms = m.training_step(_text_batch())
    terms["reg"].backward(retain_graph=True)
    assert m.g.weight.grad is None or m.g.weight.grad.abs().sum() == 0
    assert m.student.embed.weight.grad.abs().sum() > 0  # the distance loss does train the student
    terms["g_head"].backward()
    assert m.g.weight.grad.abs().sum() > 0 and m.g_head.weight.grad.abs().sum() > 0


def test_g_head_loss_does_not_reach_student():
    m = _build(compress=True, loss="fitnet", d=4)
    _, terms = m.training_step(_text_batch())
    terms["g_head"].backward()
    assert m.student.embed.weight.grad is None or m.student.embed.weight.grad.abs().sum() == 0


def test_lambda_weights_task_and_reg():
    m0 = _build(compress=False, lam=0.0)
    _, t0 = m0.training_step(_text_batch())
    assert t0["reg"].item() == 0.0 and t0["task"].item() > 0
    m1 = _build(compress=False, lam=1.0)
    _, t1 = m1.training_step(_text_batch())
    assert t1["task"].item() == 0.0 and t1["reg"].item() > 0


def test_ec_learns_g_and_student_on_a_separable_toy():
    """A short joint loop: g's head becomes accurate and the student's dCor to g(e) rises."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny ops: threads only add contention on a shared CPU
    try:
        _toy_loop()
    finally:
        torch.set_num_threads(threads)


def _toy_loop() -> None:
    torch.manual_seed(0)
    n, d_e = 64, 20
    y = torch.arange(n) % 2
    ids = torch.randint(3, 50, (n, 12))
    ids[:, 0] = 1 + y  # the label is readable from the first token
    e = torch.randn(n, d_e)
    e[:, 0] += 3 * (2 * y - 1)  # one label-relevant direction in noise
    batch = {
        "input_ids": ids,
        "attention_mask": torch.ones(n, 12, dtype=torch.int64),
        "y": y,
        "teacher_emb": e,
    }
    student = TextCNN(2, vocab=50, emb=8, channels=(16,), kernel=3)
    m = METHODS.get("east").build(student, None, {"compress": True, "d": 2, "lam": 0.5}, batch)
    opt = torch.optim.Adam(m.trainable_parameters(), lr=1e-2)
    first = None
    for _ in range(60):
        _, terms = m.training_step(batch)
        first = first if first is not None else terms["reg"].item()
        opt.zero_grad()
        sum(terms.values()).backward()
        opt.step()
    with torch.no_grad():
        acc_g = (m.g_head(m.g(e)).argmax(1) == y).float().mean().item()
    assert acc_g > 0.9
    assert terms["reg"].item() < first
    assert (m.predict(batch).argmax(1) == y).float().mean().item() > 0.9


def test_sequence_student_and_image_student():
    tr = TinyTransformer(2, max_len=12, vocab=50, dim=16, depth=1, heads=2)
    batch = _text_batch()
    batch["teacher_emb"] = torch.randn(8, 6, 20)  # token-level teacher, coarser in time
    m = METHODS.get("east").build(tr, None, {"student_path": "blocks.0", "compress": True, "d": 5}, batch)
    _, terms = m.training_step(batch)
    sum(terms.values()).backward()
    img = {
        "x": torch.randn(6, 1, 8, 8),
        "y": torch.tensor([0, 1, 2, 0, 1, 2]),
        "teacher_emb": torch.randn(6, 16),
    }
    cnn = CNN(1, 3, channels=(4, 8), fc=None)
    m2 = METHODS.get("east").build(cnn, None, {"student_path": "blocks.1", "loss": "fitnet", "d": 3}, img)
    logits, terms = m2.training_step(img)
    assert logits.shape == (6, 3) and m2.regressor.in_features == 8
    assert m2.predict(img).shape == (6, 3)  # predict ignores teacher_emb


def test_align_time_repeats_coarser_and_truncates():
    f = torch.arange(3.0).reshape(1, 3, 1)  # coarse: 3 steps
    t = torch.zeros(1, 7, 2)  # fine: 7 steps -> repeat x2 -> 6, truncate to 6
    fa, ta = align_time(f, t)
    assert fa.flatten().tolist() == [0, 0, 1, 1, 2, 2] and ta.shape == (1, 6, 2)
    fa, ta = align_time(torch.ones(2, 5, 3), torch.ones(2, 4))
    assert fa.shape == (2, 3)


def test_errors():
    batch = _text_batch()
    batch.pop("teacher_emb")
    with pytest.raises(KdforgeError, match="needs 'teacher_emb'"):
        METHODS.get("east").build(TextCNN(2, vocab=50, emb=8, channels=(16,)), None, {}, batch)
    with pytest.raises(KdforgeError, match="unknown loss"):
        _build(loss="mse")
    with pytest.raises(KdforgeError, match="student has no module"):
        _build(student_path="nope")
    m = _build()
    with pytest.raises(KdforgeError, match="undefined for batch size 2"):
        m.training_step(_text_batch(n=2))
