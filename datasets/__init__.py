"""Datasets: one file per dataset, the imbalance protocols and downloads."""

from bench.datasets.base import ImageSet
from bench.datasets.registry import (
    DatasetInfo,
    dataset_folder,
    dataset_names,
    default_data_dir,
    get_dataset_info,
    load_dataset,
)

__all__ = [
    "DatasetInfo",
    "ImageSet",
    "dataset_folder",
    "dataset_names",
    "default_data_dir",
    "get_dataset_info",
    "load_dataset",
]
