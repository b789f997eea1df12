"""Data sets (registered by name) and batching utilities."""

from kdforge.data import (  # noqa: F401  (registers datasets)
    audio_folder,
    few_labels,
    hf_disk,
    image_folder,
    tabular_text,
    text,
    vision,
)
from kdforge.data._batches import TensorData, iter_batches
from kdforge.data.vision import Splits

__all__ = ["Splits", "TensorData", "iter_batches", "load_dataset"]


def load_dataset(name: str, **kwargs) -> Splits:
    """Load a registered dataset by name (see ``kdforge list``)."""
    from kdforge.registry import DATASETS

    return DATASETS.get(name)(**kwargs)


def _register_embedded() -> None:
    from kdforge.data import embeddings_dataset  # noqa: F401


_register_embedded()
