"""Datasets and batching: image datasets by name, seeded splits, on-device augmentation.

Language-model corpora live in :mod:`nasp.data.text`.
"""

from nasp.data.augment import (
    crop,
    cutout,
    hflip,
    random_crop,
    random_cutout,
    random_hflip,
)
from nasp.data.images import IMAGE_DATASETS, ImageDataset, load_image_dataset
from nasp.data.loader import DeviceLoader
from nasp.data.splits import limit_per_class, split_indices, stratified_sample, subset

__all__ = [
    "IMAGE_DATASETS",
    "DeviceLoader",
    "ImageDataset",
    "crop",
    "cutout",
    "hflip",
    "limit_per_class",
    "load_image_dataset",
    "random_crop",
    "random_cutout",
    "random_hflip",
    "split_indices",
    "stratified_sample",
    "subset",
]
