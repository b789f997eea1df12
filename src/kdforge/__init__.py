"""kdforge: compress neural networks by transferring knowledge from a teacher to a student."""

from kdforge.config import RunConfig, load_recipe
from kdforge.errors import KdforgeError
from kdforge.registry import (
    list_datasets,
    list_methods,
    list_models,
    register_dataset,
    register_method,
    register_model,
)

__version__ = "0.1.0"

__all__ = [
    "KdforgeError",
    "RunConfig",
    "list_datasets",
    "list_methods",
    "list_models",
    "load_recipe",
    "register_dataset",
    "register_method",
    "register_model",
]
