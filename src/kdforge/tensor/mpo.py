"""Matrix product operator (MPO, a.k.a. tensor-train matrix) decomposition of a 2-D weight.

A matrix ``W`` of shape ``(I, J)`` with ``I = i_1 * ... * i_n`` and
``J = j_1 * ... * j_n`` is written as a chain of ``n`` local tensors
``T_k`` of shape ``(d_{k-1}, i_k, j_k, d_k)`` (``d_0 = d_n = 1``)::

    W[(i_1..i_n), (j_1..j_n)] = sum_d T_1[1, i_1, j_1, d_1] T_2[d_1, i_2, j_2, d_2] ... T_n[.., 1]

Row index ``(i_1..i_n)`` is row-major (``i_1`` slowest), likewise the columns.
Untruncated bond dimensions are ``d_k = min(prod_{m<=k} i_m j_m, prod_{m>k} i_m j_m)``
and the contraction is exact. The decomposition is returned in *mixed canonical
form*: tensors left of the centre ``c = n // 2`` are left-orthonormal, tensors
right of it right-orthonormal, and the central tensor carries the singular
spectrum (its Frobenius norm equals ``||W||_F``).
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import torch
from torch import Tensor

from kdforge.errors import KdforgeError

__all__ = [
    "MPO",
    "bond_dims",
    "check_factors",
    "contraction_plan",
    "mpo_contract",
    "mpo_decompose",
    "mpo_num_params",
    "propose_factorization",
]


@dataclass
class MPO:
    """The local tensors of an MPO and the factorizations they were built with.

    Attributes:
        cores: ``n`` tensors, core ``k`` of shape ``(d_{k-1}, i_k, j_k, d_k)``.
        row_factors: ``(i_1, ..., i_n)``, product = number of rows.
        col_factors: ``(j_1, ..., j_n)``, product = number of columns.
    """

    cores: list[Tensor]
    row_factors: tuple[int, ...]
    col_factors: tuple[int, ...]

    @property
    def center(self) -> int:
        """Index of the central tensor (``n // 2``)."""
        return len(self.cores) // 2

    @property
    def bonds(self) -> list[int]:
        """Bond dimensions ``[d_0, ..., d_n]`` (``d_0 = d_n = 1``)."""
        return [self.cores[0].shape[0], *(c.shape[-1] for c in self.cores)]

    def num_params(self) -> int:
        """Total number of entries in the local tensors."""
        return sum(c.numel() for c in self.cores)

    def to_matrix(self) -> Tensor:
        """Contract back to the ``(I, J)`` matrix."""
        return mpo_contract(self.cores)


def check_factors(shape: tuple[int, int], row_factors: list[int], col_factors: list[int]) -> None:
    """Raise a :class:`KdforgeError` unless the factorizations fit ``shape``.

    Args:
        shape: ``(I, J)`` of the matrix.
        row_factors: factors whose product must equal ``I``.
        col_factors: factors whose product must equal ``J``; same length as ``row_factors``.
    """
    if len(row_factors) != len(col_factors) or not row_factors:
        raise KdforgeError(
            f"row factors {list(row_factors)} and column factors {list(col_factors)} must be "
            "non-empty and of equal length n",
            "pad the shorter factorization with 1s (e.g. [32,1,1,1,24])",
        )
    if any(int(f) < 1 for f in [*row_factors, *col_factors]):
        raise KdforgeError(f"factors must be positive integers, got {row_factors} / {col_factors}", "")
    for axis, dim, fac in (("rows", shape[0], row_factors), ("columns", shape[1], col_factors)):
        if math.prod(fac) != dim:
            raise KdforgeError(
                f"factorization {list(fac)} of the {axis} multiplies to {math.prod(fac)}, but the "
                f"matrix {tuple(shape)} has {dim} {axis}",
                f"use factors whose product is {dim}, e.g. {propose_factorization(dim, len(fac))}",
            )


def bond_dims(
    row_factors: list[int] | tuple[int, ...],
    col_factors: list[int] | tuple[int, ...],
    max_bond: int | None = None,
) -> list[int]:
    """Bond dimensions ``[d_0, ..., d_n]`` of an (optionally bond-capped) MPO.

    ``d_k = min(prod_{m<=k} i_m j_m, prod_{m>k} i_m j_m, max_bond)``, ``d_0 = d_n = 1``.
    """
    loc = [i * j for i, j in zip(row_factors, col_factors, strict=True)]
    n = len(loc)
    dims = [1]
    for k in range(1, n):
        d = min(math.prod(loc[:k]), math.prod(loc[k:]))
        dims.append(min(d, max_bond) if max_bond else d)
    return [*dims, 1]


def mpo_num_params(
    row_factors: list[int] | tuple[int, ...],
    col_factors: list[int] | tuple[int, ...],
    max_bond: int | None = None,
) -> int:
    """Parameter count ``sum_k d_{k-1} i_k j_k d_k`` of the MPO (see :func:`bond_dims`)."""
    d = bond_dims(row_factors, col_factors, max_bond)
    return sum(d[k] * i * j * d[k + 1] for k, (i, j) in enumerate(zip(row_factors, col_factors, strict=True)))


def _rank(s: Tensor, max_bond: int | None, energy: float | None) -> int:
    r = s.numel()
    if energy is not None and r > 0:
        e = s.double() ** 2
        total = e.sum()
        if total > 0:
            cum = torch.cumsum(e, 0) / total
            r = min(r, int(torch.searchsorted(cum, torch.tensor(energy, dtype=cum.dtype) - 1e-12)) + 1)
    if max_bond is not None:
        r = min(r, max_bond)
    return max(r, 1)


def _fix_signs(u: Tensor, vh: Tensor) -> tuple[Tensor, Tensor]:
    """Remove the SVD sign ambiguity: the largest-magnitude entry of each column of ``u`` is positive."""
    idx = u.abs().argmax(dim=0)
    sign = torch.sign(u.gather(0, idx[None]).squeeze(0))
    sign[sign == 0] = 1
    return u * sign, vh * sign[:, None]


def mpo_decompose(
    weight: Tensor,
    row_factors: list[int] | tuple[int, ...],
    col_factors: list[int] | tuple[int, ...],
    max_bond: int | None = None,
    energy: float | None = None,
) -> MPO:
    """Decompose a 2-D ``weight`` into an MPO in mixed canonical form.

    Left of the centre ``c = n // 2`` an SVD sweep runs left to right (left
    factors ``U`` become the cores); right of it a sweep runs right to left
    (right factors ``V^H`` become the cores); the remainder, which carries the
    singular values, is the central tensor. Signs are fixed deterministically,
    so equal inputs give equal tensors (needed to align student and teacher).

    Args:
        weight: ``(I, J)`` matrix, any device, float32 or float64.
        row_factors: ``(i_1..i_n)`` with product ``I``.
        col_factors: ``(j_1..j_n)`` with product ``J``.
        max_bond: keep at most this many singular values per bond (None: untruncated).
        energy: keep the fewest singular values whose squared sum reaches this
            fraction (0 < energy <= 1) of each bond's total (None: untruncated).

    Returns:
        The :class:`MPO`. Untruncated, ``mpo.to_matrix()`` equals ``weight`` to
        round-off; with ``n = 2`` truncation is the optimal (Eckart-Young)
        low-rank approximation of the ``(i_1 j_1, i_2 j_2)`` reshaping.

    Raises:
        KdforgeError: if ``weight`` is not 2-D or the factorizations do not fit it.
    """
    if weight.dim() != 2:
        raise KdforgeError(f"MPO needs a 2-D matrix, got shape {tuple(weight.shape)}", "pass a weight matrix")
    rf, cf = [int(f) for f in row_factors], [int(f) for f in col_factors]
    check_factors(tuple(weight.shape), rf, cf)
    if energy is not None and not 0 < energy <= 1:
        raise KdforgeError(f"energy must be in (0, 1], got {energy}", "e.g. energy=0.99")
    n = len(rf)
    c = n // 2
    w = weight.detach()
    if w.dtype not in (torch.float32, torch.float64):
        w = w.float()
    # (i_1..i_n, j_1..j_n) -> (i_1, j_1, ..., i_n, j_n)
    t = w.reshape(*rf, *cf).permute(*[a for k in range(n) for a in (k, n + k)])
    cores: list[Tensor | None] = [None] * n
    r = t.reshape(1, -1)
    d_prev = 1
    for k in range(c):  # left-orthonormal part
        u, s, vh = torch.linalg.svd(r.reshape(d_prev * rf[k] * cf[k], -1), full_matrices=False)
        u, vh = _fix_signs(u, vh)
        keep = _rank(s, max_bond, energy)
        cores[k] = u[:, :keep].reshape(d_prev, rf[k], cf[k], keep)
        r = s[:keep, None] * vh[:keep]
        d_prev = keep
    d_next = 1
    for k in range(n - 1, c, -1):  # right-orthonormal part
        u, s, vh = torch.linalg.svd(r.reshape(-1, rf[k] * cf[k] * d_next), full_matrices=False)
        u, vh = _fix_signs(u, vh)
        keep = _rank(s, max_bond, energy)
        cores[k] = vh[:keep].reshape(keep, rf[k], cf[k], d_next)
        r = u[:, :keep] * s[:keep]
        d_next = keep
    cores[c] = r.reshape(d_prev, rf[c], cf[c], d_next)
    return MPO([x.contiguous() for x in cores], tuple(rf), tuple(cf))  # type: ignore[misc]


def contraction_plan(shapes: list[tuple[int, int, int, int]]) -> tuple[int, dict[tuple[int, int], int]]:
    """Cheapest order to contract a chain of cores, by dynamic programming over segments.

    Merging segments ``[p..m]`` and ``[m+1..q]`` costs
    ``d_{p-1} * (I J)_{p..m} * d_m * (I J)_{m+1..q} * d_q`` multiply-adds. For the
    reference's ``[a, 1, 1, 1, b]`` factorizations this multiplies the small middle
    ``d x d`` tensors together first instead of sweeping left to right. Plans are
    cached per tuple of shapes (a layer asks for its own plan every forward).

    Args:
        shapes: core shapes ``(d_{k-1}, i_k, j_k, d_k)``.

    Returns:
        ``(total multiply-adds, {(p, q): split m})``.
    """
    cost, split = _plan(tuple(tuple(int(d) for d in s) for s in shapes))
    return cost, dict(split)


@functools.lru_cache(maxsize=256)
def _plan(shapes: tuple[tuple[int, ...], ...]) -> tuple[int, dict[tuple[int, int], int]]:
    n = len(shapes)
    ij = [i * j for _, i, j, _ in shapes]
    cost: dict[tuple[int, int], int] = {(k, k): 0 for k in range(n)}
    split: dict[tuple[int, int], int] = {}
    for length in range(2, n + 1):
        for p in range(n - length + 1):
            q = p + length - 1
            best = None
            for m in range(p, q):
                left, right = math.prod(ij[p : m + 1]), math.prod(ij[m + 1 : q + 1])
                c = cost[p, m] + cost[m + 1, q] + shapes[p][0] * left * shapes[m][3] * right * shapes[q][3]
                if best is None or c < best:
                    best, split[p, q] = c, m
            cost[p, q] = best  # type: ignore[assignment]
    return cost[0, n - 1], split


def _contract_segment(cores: list[Tensor], p: int, q: int, split: dict[tuple[int, int], int]) -> Tensor:
    """Segment ``[p..q]`` as ``(d_{p-1}, (i_p j_p ... i_q j_q), d_q)``, its free indices interleaved.

    In this layout merging two segments is one plain matrix product of free views
    (``(d_{p-1} m_1, d_m) @ (d_m, m_2 d_q)``): no permutation or copy until the end.
    """
    if p == q:
        d0, i, j, d1 = cores[p].shape
        return cores[p].reshape(d0, i * j, d1)
    m = split[p, q]
    a = _contract_segment(cores, p, m, split)
    b = _contract_segment(cores, m + 1, q, split)
    (d0, m1, d1), (_, m2, d2) = a.shape, b.shape
    return (a.reshape(d0 * m1, d1) @ b.reshape(d1, m2 * d2)).view(d0, m1 * m2, d2)


def mpo_contract(cores: list[Tensor]) -> Tensor:
    """Contract local tensors ``(d_{k-1}, i_k, j_k, d_k)`` back to the ``(prod i, prod j)`` matrix.

    Differentiable with respect to every core. Uses the cheapest pairwise order
    (:func:`contraction_plan`), each merge a single matrix product in the
    interleaved ``(i_1, j_1, ..., i_n, j_n)`` layout, and one permutation at the end.
    """
    n = len(cores)
    _, split = _plan(tuple(tuple(c.shape) for c in cores))
    full = _contract_segment(list(cores), 0, n - 1, split)
    rows = [int(c.shape[1]) for c in cores]
    cols = [int(c.shape[2]) for c in cores]
    interleaved = full.view([f for k in range(n) for f in (rows[k], cols[k])])
    w = interleaved.permute([*range(0, 2 * n, 2), *range(1, 2 * n, 2)])
    return w.reshape(math.prod(rows), math.prod(cols))


def _split_two(x: int) -> tuple[int, int]:
    """``x = a * b`` with ``a >= b`` and ``a`` the smallest divisor ``>= sqrt(x)``."""
    a = next(d for d in range(math.isqrt(x), x + 1) if d * d >= x and x % d == 0)
    return max(a, x // a), min(a, x // a)


def _outer_pair(g: int, cap: int) -> tuple[int, int]:
    """``(a, b)``, ``a >= b``, ``a * b`` a divisor of ``g`` as large as possible with ``a, b <= cap``.

    Ties go to the most even split.
    """
    best = (1, 1)
    for a in range(1, min(g, cap) + 1):
        for b in range(1, min(a, cap) + 1):
            if g % (a * b) == 0 and (a * b, b) > (best[0] * best[1], best[1]):
                best = (a, b)
    return best


def propose_factorization(
    dim: int, n: int = 5, common_with: int | None = None, match_bonds: bool | None = None
) -> list[int]:
    """Propose ``n`` factors of ``dim`` in the reference's style (768 -> ``[32, 1, 1, 1, 24]``).

    By default the outermost factors split ``dim`` as evenly as possible (larger
    first) and the others are 1. With ``match_bonds`` (default: ``common_with``
    is given and differs from ``dim``) the outer factors ``a, b`` divide
    ``gcd(dim, common_with)`` and are at most ``sqrt(min(dim, common_with))``;
    the central factor (index ``n // 2``) takes the rest. Two weights whose row
    and column dims are all factorized this way, each with ``common_with`` the
    other weight's matching dim, share their outer factors *and* their bond
    dimensions (an untruncated bond is the ``min`` of the products on its two
    sides, and the cap keeps the outer side the smaller on both), so their
    auxiliary tensors have equal shapes and the central tensor absorbs the
    width difference. A dim equal on both sides still needs ``match_bonds=True``
    when the other dim differs.

    Args:
        dim: the dimension to factorize.
        n: number of factors (>= 1).
        common_with: the other model's corresponding dimension, if any.
        match_bonds: cap the outer factors as above (see default).

    Returns:
        ``n`` positive integers whose product is ``dim``.
    """
    if n < 1 or dim < 1:
        raise KdforgeError(f"cannot factorize dim={dim} into n={n} factors", "use n >= 1 and dim >= 1")
    if n == 1:
        return [dim]
    if match_bonds is None:
        match_bonds = bool(common_with) and common_with != dim
    if match_bonds:
        other = common_with or dim
        a, b = _outer_pair(math.gcd(dim, other), math.isqrt(min(dim, other)))
    else:
        a, b = _split_two(dim)
    out = [1] * n
    out[0], out[-1] = a, b
    out[n // 2] *= dim // (a * b)
    assert math.prod(out) == dim
    return out
