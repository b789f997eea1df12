"""Distillation methods, one file each; importing this package registers them all."""

from kdforge.methods import (  # noqa: F401
    adkd,
    embedding_compression,
    fitnet,
    kd,
    opdf,
    supervised,
    theseus,
)
from kdforge.methods._base import Batch, Method, model_inputs

__all__ = ["Batch", "Method", "model_inputs"]
