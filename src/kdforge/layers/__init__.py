"""Over-parameterized linear layers (MPO, SVD) and the swap-in / collapse-out utilities."""

from kdforge.layers._factorized import FactorizedLinear
from kdforge.layers.mpo_linear import MPOLinear
from kdforge.layers.overparam import (
    BERT_PATTERNS,
    collapse,
    factorized_layers,
    load_plain_state_dict,
    match_linear,
    overparameterize,
)
from kdforge.layers.svd_linear import SVDLinear

__all__ = [
    "BERT_PATTERNS",
    "FactorizedLinear",
    "MPOLinear",
    "SVDLinear",
    "collapse",
    "factorized_layers",
    "load_plain_state_dict",
    "match_linear",
    "overparameterize",
]
