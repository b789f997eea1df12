"""MPO decomposition: exactness, parameter count, canonical form, truncation, reference parity."""

from __future__ import annotations

import math

import pytest
import torch

from kdforge.errors import KdforgeError
from kdforge.tensor.mpo import (
    bond_dims,
    contraction_plan,
    mpo_contract,
    mpo_decompose,
    mpo_num_params,
    propose_factorization,
)

CASES = [
    ((6, 10), [2, 3], [5, 2]),
    ((64, 784), [4, 4, 4], [7, 16, 7]),
    ((128, 128), [4, 2, 4, 4], [4, 4, 2, 4]),
    ((96, 60), [2, 3, 4, 2, 2], [3, 1, 5, 2, 2]),
    ((768, 768), [32, 1, 1, 1, 24], [32, 1, 1, 1, 24]),
    ((10, 64), [10], [64]),
    ((12, 18), [1, 12, 1], [3, 2, 3]),
]

# small SVDs: one thread avoids pathological oversubscription on shared 2-core machines
torch.set_num_threads(1)


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).norm() / b.norm())


@pytest.mark.parametrize("shape,rf,cf", CASES)
def test_untruncated_reconstruction_float32(shape, rf, cf):
    w = torch.randn(*shape, generator=torch.Generator().manual_seed(0))
    mpo = mpo_decompose(w, rf, cf)
    assert mpo.to_matrix().dtype == torch.float32
    assert _rel(mpo.to_matrix(), w) < 1e-5
    assert [tuple(c.shape[1:3]) for c in mpo.cores] == list(zip(rf, cf, strict=True))


@pytest.mark.parametrize("shape,rf,cf", CASES)
def test_param_count_formula_and_bonds(shape, rf, cf):
    mpo = mpo_decompose(torch.randn(*shape, dtype=torch.float64), rf, cf)
    assert mpo.bonds == bond_dims(rf, cf)
    assert mpo.num_params() == mpo_num_params(rf, cf)


def test_param_count_golden_reference_style():
    # 768 x 768 with [32,1,1,1,24]: d = [1, 576, 576, 576, 576, 1]
    rf = [32, 1, 1, 1, 24]
    assert bond_dims(rf, rf) == [1, 576, 576, 576, 576, 1]
    assert mpo_num_params(rf, rf) == 32 * 32 * 576 + 3 * 576 * 576 + 576 * 24 * 24
    assert mpo_num_params(rf, rf) > 768 * 768  # over-parameterized
    assert mpo_num_params([2, 3], [5, 2], max_bond=3) == 1 * 10 * 3 + 3 * 6 * 1


@pytest.mark.parametrize("shape,rf,cf", CASES[1:4])
def test_canonical_form_isometries_and_center_norm(shape, rf, cf):
    w = torch.randn(*shape, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    mpo = mpo_decompose(w, rf, cf)
    c = mpo.center
    assert c == len(rf) // 2
    for k, core in enumerate(mpo.cores):
        d0, i, j, d1 = core.shape
        if k < c:  # left-orthonormal: sum_{a,i,j} T[a,i,j,b] T[a,i,j,b'] = delta
            m = core.reshape(d0 * i * j, d1)
            torch.testing.assert_close(m.T @ m, torch.eye(d1, dtype=m.dtype), atol=1e-10, rtol=0)
        elif k > c:  # right-orthonormal
            m = core.reshape(d0, i * j * d1)
            torch.testing.assert_close(m @ m.T, torch.eye(d0, dtype=m.dtype), atol=1e-10, rtol=0)
    # the centre carries all the norm (the singular spectrum)
    assert math.isclose(float(mpo.cores[c].norm()), float(w.norm()), rel_tol=1e-10)


def test_truncation_equals_svd_tail_n2():
    g = torch.Generator().manual_seed(2)
    w = torch.randn(12, 20, dtype=torch.float64, generator=g)
    rf, cf = [3, 4], [4, 5]
    # the single bond sees W reshaped to (i1 j1, i2 j2)
    m = w.reshape(3, 4, 4, 5).permute(0, 2, 1, 3).reshape(12, 20)
    s = torch.linalg.svdvals(m)
    for r in (1, 3, 7):
        approx = mpo_decompose(w, rf, cf, max_bond=r).to_matrix()
        tail = float(s[r:].pow(2).sum().sqrt())
        assert math.isclose(float((approx - w).norm()), tail, rel_tol=1e-9)
    # energy: keeps the fewest values reaching the fraction
    frac = float(s[:5].pow(2).sum() / s.pow(2).sum())
    mpo = mpo_decompose(w, rf, cf, energy=frac)
    assert mpo.bonds[1] == 5
    assert math.isclose(float((mpo.to_matrix() - w).norm()), float(s[5:].pow(2).sum().sqrt()), rel_tol=1e-9)


def test_truncation_exact_for_low_rank_matrix():
    g = torch.Generator().manual_seed(3)
    w = torch.randn(16, 2, dtype=torch.float64, generator=g) @ torch.randn(
        2, 16, dtype=torch.float64, generator=g
    )
    # rank-2 W: with rows/cols split [16,1] x [1,16] the bond sees W itself
    mpo = mpo_decompose(w, [16, 1], [1, 16], max_bond=2)
    assert _rel(mpo.to_matrix(), w) < 1e-12


def test_contract_is_differentiable_and_deterministic():
    w = torch.randn(24, 36)
    a = mpo_decompose(w, [2, 3, 4], [3, 4, 3])
    b = mpo_decompose(w.clone(), [2, 3, 4], [3, 4, 3])
    for x, y in zip(a.cores, b.cores, strict=True):
        assert torch.equal(x, y)
    cores = [c.clone().requires_grad_(True) for c in a.cores]
    mpo_contract(cores).sum().backward()
    assert all(c.grad is not None and c.grad.abs().sum() > 0 for c in cores)


def _reference_contract(cores: list[torch.Tensor]) -> torch.Tensor:
    """Left-to-right einsum sweep: the textbook MPO contraction, independent of mpo_contract's plan."""
    full = cores[0]
    for core in cores[1:]:
        d0, i1, j1, _ = full.shape
        _, i2, j2, d2 = core.shape
        full = torch.einsum("aijb,bklc->aikjlc", full, core).reshape(d0, i1 * i2, j1 * j2, d2)
    return full.reshape(full.shape[1], full.shape[2])


@pytest.mark.parametrize("shape,rf,cf", CASES)
def test_contract_matches_reference_values_and_gradients(shape, rf, cf):
    """The planned matrix-product chain == the einsum sweep, forward and backward (random cores)."""
    g = torch.Generator().manual_seed(5)
    bonds = bond_dims(rf, cf)
    base = [
        torch.randn(bonds[k], i, j, bonds[k + 1], dtype=torch.float64, generator=g)
        for k, (i, j) in enumerate(zip(rf, cf, strict=True))
    ]
    probe = torch.randn(*shape, dtype=torch.float64, generator=g)
    grads = []
    for fn in (mpo_contract, _reference_contract):
        cores = [c.clone().requires_grad_(True) for c in base]
        w = fn(cores)
        assert w.shape == shape and w.is_contiguous()
        (w * probe).sum().backward()
        grads.append((w.detach(), [c.grad for c in cores]))
    (w_new, g_new), (w_ref, g_ref) = grads
    assert _rel(w_new, w_ref) < 1e-12  # float64 round-off (sums over bonds up to 576 wide)
    assert all(_rel(a, b) < 1e-12 for a, b in zip(g_new, g_ref, strict=True))


def test_contraction_plan_is_cached_but_not_shared():
    shapes = [(1, 24, 24, 256), (256, 1, 1, 256), (256, 16, 16, 1)]
    cost, split = contraction_plan(shapes)
    assert split[0, 2] == 0 and split[1, 2] == 1
    split[0, 2] = 99  # a caller's copy: mutating it must not poison the cache
    assert contraction_plan(shapes)[1][0, 2] == 0
    assert cost == 256**3 + 576 * 256 * 256  # middle into the right end first, then the left end


def test_bad_factorizations_raise():
    w = torch.randn(6, 10)
    with pytest.raises(KdforgeError, match=r"multiplies to 8.*6 rows"):
        mpo_decompose(w, [2, 4], [2, 5])
    with pytest.raises(KdforgeError, match="equal length"):
        mpo_decompose(w, [2, 3], [10])
    with pytest.raises(KdforgeError, match="2-D"):
        mpo_decompose(torch.randn(2, 3, 4), [2], [12])


def test_propose_factorization():
    assert propose_factorization(768, 5) == [32, 1, 1, 1, 24]
    assert propose_factorization(3072, 5) == [64, 1, 1, 1, 48]
    assert propose_factorization(512, 5, common_with=64) == [8, 1, 8, 1, 8]
    assert propose_factorization(64, 5, common_with=512) == [8, 1, 1, 1, 8]
    for dim, n in [(784, 3), (10, 4), (97, 5), (1, 2)]:
        f = propose_factorization(dim, n)
        assert len(f) == n and math.prod(f) == dim


@pytest.mark.parametrize("n", [3, 5])
@pytest.mark.parametrize(
    "student,teacher",
    [((192, 192), (384, 384)), ((768, 192), (1536, 384)), ((64, 784), (1024, 784)), ((30, 50), (60, 50))],
)
def test_common_factorizations_give_equal_auxiliary_shapes(student, teacher, n):
    """Bonds too, not only outer factors: the narrow side's bonds must not be capped lower."""
    (so, si), (to, ti) = student, teacher
    m = student != teacher
    s_f = [propose_factorization(so, n, to, m), propose_factorization(si, n, ti, m)]
    t_f = [propose_factorization(to, n, so, m), propose_factorization(ti, n, si, m)]
    s_cores = mpo_decompose(torch.randn(so, si, dtype=torch.float64), *s_f).cores
    t_cores = mpo_decompose(torch.randn(to, ti, dtype=torch.float64), *t_f).cores
    aux = [k for k in range(n) if k != n // 2]
    assert [s_cores[k].shape for k in aux] == [t_cores[k].shape for k in aux]
    assert s_cores[n // 2].shape != t_cores[n // 2].shape or student == teacher


def test_parity_with_tensorly_tt_matrix():
    tl = pytest.importorskip("tensorly")
    from tensorly.decomposition import tensor_train_matrix
    from tensorly.tt_matrix import tt_matrix_to_tensor

    tl.set_backend("numpy")
    g = torch.Generator().manual_seed(4)
    w = torch.randn(24, 30, dtype=torch.float64, generator=g)
    rf, cf = [2, 3, 4], [5, 3, 2]
    ours = mpo_decompose(w, rf, cf)
    ttm = tensor_train_matrix(w.reshape(*rf, *cf).numpy(), rank=bond_dims(rf, cf))
    theirs = torch.from_numpy(tt_matrix_to_tensor(ttm).reshape(24, 30))
    torch.testing.assert_close(ours.to_matrix(), theirs, atol=1e-10, rtol=0)
    assert [tuple(f.shape) for f in ttm] == [tuple(c.shape) for c in ours.cores]
    # both truncated to the same bonds give the same best n=2 approximation
    ours2 = mpo_decompose(w, [4, 6], [6, 5], max_bond=4).to_matrix()
    t2 = tensor_train_matrix(w.reshape(4, 6, 6, 5).numpy(), rank=[1, 4, 1])
    torch.testing.assert_close(
        ours2, torch.from_numpy(tt_matrix_to_tensor(t2).reshape(24, 30)), atol=1e-9, rtol=0
    )


def test_contraction_plan_golden_reference_style():
    # [a,1,1,1,b]: left-to-right costs about 4 * (a_i a_j) * d * d; starting at the small end is cheaper
    rf = [24, 1, 1, 1, 16]
    cf = [48, 1, 1, 1, 32]
    d = bond_dims(rf, cf)  # [1, 512, 512, 512, 512, 1]
    shapes = [(d[k], i, j, d[k + 1]) for k, (i, j) in enumerate(zip(rf, cf, strict=True))]
    cost, split = contraction_plan(shapes)
    left_to_right = 3 * (24 * 48) * 512 * 512 + (24 * 48) * 512 * (16 * 32)
    # best: absorb the middle tensors into the right end (b_i b_j = d = 512), then the left end
    assert cost == 3 * 512**3 + (24 * 48) * 512 * 512 < left_to_right
    assert split[0, 4] == 0
    # n = 2: a single merge
    assert contraction_plan([(1, 2, 3, 6), (6, 2, 1, 1)]) == (1 * 6 * 6 * 2 * 1, {(0, 1): 0})
