"""Datasets: importing this package registers every built-in loader."""

from scpl.data import text, vision  # noqa: F401  (registers the text and image datasets)
from scpl.data.base import DATASETS, DataBundle, LoadOptions, Split, dataset_spec, load_dataset

__all__ = ["DATASETS", "DataBundle", "LoadOptions", "Split", "dataset_spec", "load_dataset"]
