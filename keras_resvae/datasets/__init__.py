"""Datasets as batched float32 pipelines, usable by `fit` on every backend.

`tf.data` pipelines, or on JAX and PyTorch for in-memory datasets `ArrayBatches`.
"""

from keras_resvae.datasets.array_batches import ArrayBatches
from keras_resvae.datasets.arrays import load_npz
from keras_resvae.datasets.digits import load_digits
from keras_resvae.datasets.loader import NAMED_DATASETS, load_dataset
from keras_resvae.datasets.photos import load_photos
from keras_resvae.datasets.pipeline import DatasetSplits
from keras_resvae.datasets.tfds_source import TFDS_DATASETS, DatasetUnavailableError

__all__ = [
    "ArrayBatches",
    "NAMED_DATASETS",
    "TFDS_DATASETS",
    "DatasetSplits",
    "DatasetUnavailableError",
    "load_dataset",
    "load_digits",
    "load_npz",
    "load_photos",
]
