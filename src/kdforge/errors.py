"""One exception type for every user-facing failure.

A :class:`KdforgeError` carries a *cause* and a *fix*; the CLI prints both as a
single message (never a bare traceback). Library users can catch it directly.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class KdforgeError(Exception):
    """A failure caused by input the user can correct.

    Args:
        cause: What went wrong, naming the offending file/key/value.
        fix: What the user should do about it.
    """

    def __init__(self, cause: str, fix: str = "") -> None:
        self.cause = cause
        self.fix = fix
        super().__init__(f"{cause}" + (f"\n  fix: {fix}" if fix else ""))


def nearest(name: str, candidates: Iterable[str], n: int = 5) -> list[str]:
    """Return up to ``n`` candidates closest to ``name`` (difflib ratio), best first."""
    cands = list(candidates)
    close = difflib.get_close_matches(name, cands, n=n, cutoff=0.4)
    if not close:  # fall back to substring matches, then the first few names
        close = [c for c in cands if name.split(".")[-1] in c][:n] or cands[:n]
    return close


def unknown(kind: str, name: str, candidates: Iterable[str], fix: str = "") -> KdforgeError:
    """Build the standard "unknown X 'name'; did you mean ..." error."""
    cands = sorted(candidates)
    near = nearest(name, cands)
    hint = f"did you mean: {', '.join(near)}" if near else "none are available"
    return KdforgeError(f"unknown {kind} '{name}' ({hint})", fix or f"use one of the valid {kind}s")
