"""Swap chosen ``nn.Linear`` layers for over-parameterized ones, and collapse them back.

``overparameterize(model, ["blocks.*.0"], method="mpo")`` replaces every
matching linear layer in place by an :class:`MPOLinear` (or :class:`SVDLinear`)
computing exactly the same map; ``collapse(model)`` returns a copy with plain
``nn.Linear`` layers again: the same module types, parameter count and outputs.

Patterns match module names (``model.named_modules()``): shell globs
(``encoder.layer.*.attention.self.query``) or, prefixed with ``re:``, Python
regular expressions matched against the whole name.
"""

from __future__ import annotations

import copy
import fnmatch
import re
from collections.abc import Collection, Mapping, Sequence

from torch import Tensor, nn

from kdforge.errors import KdforgeError
from kdforge.io import load_state, register_state_check
from kdforge.layers._factorized import FactorizedLinear
from kdforge.layers.mpo_linear import MPOLinear
from kdforge.layers.svd_linear import SVDLinear
from kdforge.tensor.mpo import propose_factorization

#: Linear layers of a HF BERT encoder that OPDF over-parameterizes (attention Q/K/V/output, FFN in/out).
BERT_PATTERNS = (
    "re:.*encoder\\.layer\\.\\d+\\.attention\\.self\\.(query|key|value)",
    "re:.*encoder\\.layer\\.\\d+\\.attention\\.output\\.dense",
    "re:.*encoder\\.layer\\.\\d+\\.(intermediate|output)\\.dense",
)


def name_matches(name: str, pattern: str) -> bool:
    """Whether module ``name`` matches a glob or ``re:``-prefixed regex ``pattern``."""
    if pattern.startswith("re:"):
        return re.fullmatch(pattern[3:], name) is not None
    return fnmatch.fnmatchcase(name, pattern)


def match_linear(model: nn.Module, patterns: Sequence[str]) -> list[str]:
    """Names of the ``nn.Linear`` modules of ``model`` matching any pattern (in model order).

    Raises:
        KdforgeError: naming each pattern that matches no linear layer, with the valid names.
    """
    if isinstance(patterns, str):
        patterns = [patterns]
    linear = [n for n, m in model.named_modules() if type(m) is nn.Linear]
    for p in patterns:
        if not any(name_matches(n, p) for n in linear):
            raise KdforgeError(
                f"layer pattern '{p}' matches no nn.Linear module of the model",
                f"linear layers are: {', '.join(linear[:12])}{' ...' if len(linear) > 12 else ''} "
                "(globs like 'blocks.*.0', or 're:<regex>')",
            )
    return [n for n in linear if any(name_matches(n, p) for p in patterns)]


def _set_module(model: nn.Module, name: str, module: nn.Module) -> None:
    parent_name, _, leaf = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, leaf, module)


def overparameterize(
    model: nn.Module,
    patterns: Sequence[str],
    method: str = "mpo",
    n: int = 5,
    factors: Mapping[str, tuple[Sequence[int], Sequence[int]]] | None = None,
    max_bond: int | None = None,
    energy: float | None = None,
    forward_mode: str = "auto",
) -> dict[str, FactorizedLinear]:
    """Replace matching linear layers of ``model`` in place by MPO or SVD layers.

    Args:
        model: the model to modify.
        patterns: module-name globs or ``re:`` regexes (see module docstring).
        method: ``"mpo"`` or ``"svd"``.
        n: number of MPO tensors when ``factors`` does not name a layer.
        factors: per layer name, ``(row_factors, col_factors)`` of its ``(out, in)`` weight;
            other layers use :func:`propose_factorization`.
        max_bond, energy: optional MPO truncation (default: exact).
        forward_mode: ``auto`` | ``contract`` | ``sequential``.

    Returns:
        ``{layer name: new layer}``.

    Raises:
        KdforgeError: unknown method, a pattern matching nothing, or factors not fitting a layer.
    """
    if method not in ("mpo", "svd"):
        raise KdforgeError(f"unknown over-parameterization method '{method}'", "use 'mpo' or 'svd'")
    factors = dict(factors or {})
    names = match_linear(model, patterns)
    unknown = sorted(set(factors) - set(names))
    if unknown:
        raise KdforgeError(
            f"factors given for {unknown}, which are not among the matched layers {names}",
            "key 'factors' by full module name of a matched nn.Linear",
        )
    out: dict[str, FactorizedLinear] = {}
    for name in names:
        lin = model.get_submodule(name)
        if method == "svd":
            new: FactorizedLinear = SVDLinear.from_linear(lin, forward_mode=forward_mode)
        else:
            rf, cf = factors.get(name, (None, None))
            new = MPOLinear.from_linear(lin, rf, cf, n, max_bond, energy, forward_mode)
        _set_module(model, name, new)
        out[name] = new
    return out


def factorized_layers(model: nn.Module) -> dict[str, FactorizedLinear]:
    """Every over-parameterized layer of ``model`` by name."""
    return {n: m for n, m in model.named_modules() if isinstance(m, FactorizedLinear)}


def collapse(model: nn.Module) -> nn.Module:
    """A copy of ``model`` with every MPO/SVD layer contracted back to a plain ``nn.Linear``.

    Raises:
        KdforgeError: if the model has no over-parameterized layer.
    """
    layers = factorized_layers(model)
    if not layers:
        raise KdforgeError(
            f"nothing to collapse: {type(model).__name__} has no MPO or SVD layer",
            "collapse only models returned by overparameterize(); a plain model is already deployable",
        )
    plain = copy.deepcopy(model)
    for name in layers:
        _set_module(plain, name, plain.get_submodule(name).to_linear())
    return plain


_OVERPARAM_KEY = re.compile(r"(^|\.)(cores\.\d+|U|V|s)$")


def refuse_overparameterized(
    own: Collection[str], state: Collection[str], source: str = "checkpoint"
) -> None:
    """Fail clearly if ``state`` holds MPO/SVD tensors where the model (keys ``own``) has plain layers.

    Args:
        own: the model's state-dict keys.
        state: the checkpoint's keys.
        source: how to name the checkpoint in the message.

    Raises:
        KdforgeError: naming the over-parameterized layers and how to get a loadable file.
    """
    foreign = sorted(k for k in state if k not in own and _OVERPARAM_KEY.search(k))
    if foreign:
        layers = sorted({_OVERPARAM_KEY.sub("", k) for k in foreign})
        raise KdforgeError(
            f"{source} is over-parameterized (MPO/SVD tensors for {', '.join(layers[:6])}: "
            f"{', '.join(foreign[:4])} ...) but the model has plain nn.Linear layers there",
            "load the exported (collapsed) student, or call collapse(model) before saving; to resume "
            "training, overparameterize the model with the same patterns first",
        )


def load_plain_state_dict(model: nn.Module, state: Mapping[str, Tensor]) -> None:
    """Load ``state`` into ``model`` strictly (:func:`kdforge.io.load_state`).

    Raises:
        KdforgeError: if ``state`` holds MPO/SVD tensors the model lacks (collapse first),
            or does not fit the model otherwise.
    """
    load_state(model, state)


# every strict load (kdforge.io) explains an over-parameterized file meeting a plain model
register_state_check(refuse_overparameterized)


__all__ = [
    "BERT_PATTERNS",
    "collapse",
    "factorized_layers",
    "load_plain_state_dict",
    "match_linear",
    "overparameterize",
    "propose_factorization",
    "refuse_overparameterized",
]
