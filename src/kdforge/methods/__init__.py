"""Distillation methods, one file each; importing this package registers them all."""

from kdforge.methods import embedding_compression, fitnet, kd, supervised  # noqa: F401
from kdforge.methods._base import Batch, Method, model_inputs

__all__ = ["Batch", "Method", "model_inputs"]
