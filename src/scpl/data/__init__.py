"""Datasets: importing this package registers every built-in loader."""

from scpl.data import vision  # noqa: F401  (registers the image datasets)
from scpl.data.base import DATASETS, DataBundle, Split, load_dataset

__all__ = ["DATASETS", "DataBundle", "Split", "load_dataset"]
