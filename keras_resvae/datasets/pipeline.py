"""Turning image datasets into batched float32 pipelines for `fit`.

Datasets read from files (tfds, image folders) become `tf.data` pipelines.
In-memory arrays become `tf.data` pipelines on the TensorFlow backend and
`ArrayBatches` on JAX and PyTorch, which then never import TensorFlow.
"""

import contextlib
import dataclasses
import math
import sys

import numpy as np

from keras_resvae.datasets.array_batches import ArrayBatches
from keras_resvae.startup import import_tensorflow, keras_backend

PIPELINES = ("auto", "tf.data", "numpy")

# Datasets up to this many bytes of float32 pixels are cached in memory.
CACHE_LIMIT_BYTES = 2 * 1024**3


@dataclasses.dataclass
class DatasetSplits:
    """Batched train and test pipelines of float32 images, and what they hold.

    Attributes:
        train: `tf.data.Dataset` or `ArrayBatches` of image batches, shuffled,
            full batches only (a ragged last batch would make JAX recompile).
        test: `tf.data.Dataset` or `ArrayBatches` of image batches, in a fixed order.
        image_shape: `(height, width, channels)`.
        center: bool. Pixels are in [-1, 1] if True (pair with `output_activation=
            "tanh"`), else in [0, 1].
        name: the dataset's name or path.
        num_train, num_test: numbers of images, or None where unknown.
        find_unreadable: for datasets read from files, a function that returns
            `(path, reason)` of the first file that cannot be decoded, or None.
        test_cached: bool. `test` keeps its images in memory after a first
            complete pass.
    """

    train: object
    test: object
    image_shape: tuple
    center: bool
    name: str
    num_train: int = None
    num_test: int = None
    find_unreadable: object = None
    test_cached: bool = False

    def first_test_images(self, count):
        """The first `count` test images, as a NumPy array.

        A cached test split is read to its end: tf.data throws away a cache
        whose first pass stops early, and says so in a warning on every run.
        That pass is free where the split is read again (`fit`'s validation);
        a one-off read (`runs.test_images`, the CLI's previews) stops early.

        Example:
        >>> preview = data.first_test_images(16)
        """
        return _first_images(self.test, count, read_to_end=self.test_cached)

    def first_train_images(self, count):
        """Up to `count` training images of the first epoch's first batches, as a NumPy array.

        Example:
        >>> vae.initialize_output_bias(data.first_train_images(1024))
        """
        return _first_images(self.train, count)

    def test_split_over(self, num_devices):
        """The test split, each batch cut to a multiple of `num_devices` images.

        Data-parallel validation needs batches that split evenly over the
        devices. Only a last, partial batch can lose images, fewer than
        `num_devices` of them (none when its size is already a multiple).

        Example:
        >>> validation = data.test_split_over(2)  # 297 images: 128, 128, 40
        """
        if isinstance(self.test, ArrayBatches):
            return self.test.split_over(num_devices)
        tf = import_tensorflow()
        return self.test.map(
            lambda batch: batch[: tf.shape(batch)[0] // num_devices * num_devices]
        ).filter(lambda batch: tf.shape(batch)[0] > 0)

    @contextlib.contextmanager
    def reading_files(self):
        """Turns a failure to decode one of the dataset's files into a ValueError naming it.

        A `tf.data` pipeline reports an undecodable file (a truncated JPEG) only
        by the decoder's message, deep inside `fit`. Here that failure is
        traced to the file, by decoding each file again, only when it happens.

        Example:
        >>> with data.reading_files():
        ...     vae.fit(data.train, epochs=10)
        """
        try:
            yield
        except Exception as error:
            if self.find_unreadable is None or not _is_decoding_error(error):
                raise
            found = self.find_unreadable()
            if found is None:
                raise
            path, reason = found
            raise ValueError(
                f"{path}: cannot decode this image ({reason}). Remove or replace it."
            ) from None

    @property
    def output_activation(self):
        """The output activation that matches the pixel range."""
        return "tanh" if self.center else "sigmoid"


def _first_images(batches, count, read_to_end=False):
    """The first `count` images of `batches` as one NumPy array; reads on to the end if asked."""
    images, taken = [], 0
    for batch in batches:
        if taken < count:
            images.append(np.asarray(batch)[: count - taken])
            taken += len(images[-1])
        elif not read_to_end:
            break
    return np.concatenate(images)


def _check_enough_training_images(num_train, batch_size, name):
    """Refuses a training split with fewer images than one (full) batch."""
    if num_train is not None and num_train < batch_size:
        raise ValueError(
            f"The dataset {name!r} has {num_train} training images, fewer than "
            f"batch_size={batch_size}. Use a smaller --batch-size."
        )


def _is_decoding_error(error):
    if "tensorflow" not in sys.modules:  # no tf.data pipeline has run
        return False
    tf = import_tensorflow()
    return isinstance(error, tf.errors.OpError)


def uses_tf_data(pipeline):
    """Whether in-memory arrays become `tf.data` pipelines (`"auto"`: on the TensorFlow backend)."""
    if pipeline not in PIPELINES:
        raise ValueError(f"Unknown pipeline {pipeline!r}: expected one of {list(PIPELINES)}.")
    if pipeline == "auto":
        return keras_backend() == "tensorflow"
    return pipeline == "tf.data"


def make_array_splits(x_train, x_test, name, *, batch_size=128, center=False, seed=0, limit=None):
    """Batches two in-memory image arrays into `DatasetSplits` of `ArrayBatches`.

    The same images, order of the test split, pixel scale and full training
    batches as `make_splits`, without TensorFlow. Arguments as `make_splits`'s;
    `x_train` and `x_test` are arrays `(N, H, W, C)`, uint8 or float in [0, 1].

    Example:
    >>> data = make_array_splits(x_train, x_test, "mine", batch_size=64)
    """
    if limit is not None:
        x_train = x_train[:limit]
    _check_enough_training_images(len(x_train), batch_size, name)
    return DatasetSplits(
        train=ArrayBatches(x_train, batch_size, center=center, seed=seed),
        test=ArrayBatches(x_test, batch_size, center=center),
        image_shape=tuple(int(s) for s in x_train.shape[1:]),
        center=bool(center),
        name=name,
        num_train=len(x_train),
        num_test=len(x_test),
    )


def make_splits(
    train,
    test,
    image_shape,
    name,
    *,
    batch_size=128,
    center=False,
    num_train=None,
    num_test=None,
    seed=0,
    limit=None,
    find_unreadable=None,
):
    """Batches two datasets of uint8 or [0, 1] float images into `DatasetSplits`.

    Args:
        train, test: `tf.data.Dataset`s of single images `(H, W, C)`.
        image_shape: their shape.
        name: the dataset's name, for messages.
        batch_size: int.
        center: bool. Map pixels to [-1, 1].
        num_train, num_test: sizes if known (for caching and checks).
        seed: shuffle seed.
        limit: int or None. Use at most this many training images.
        find_unreadable: see `DatasetSplits`.
    """
    tf = import_tensorflow()
    if limit is not None:
        train = train.take(limit)
        num_train = limit if num_train is None else min(num_train, limit)
    _check_enough_training_images(num_train, batch_size, name)

    def to_float(image):
        if image.dtype == tf.uint8:
            image = tf.cast(image, tf.float32) / 255.0
        image = tf.cast(image, tf.float32)
        return image * 2.0 - 1.0 if center else image

    def cache(dataset, count):
        return dataset.cache() if _is_cached(count, image_shape) else dataset

    autotune = tf.data.AUTOTUNE
    train = cache(train.map(to_float, num_parallel_calls=autotune), num_train)
    shuffle_buffer = min(num_train or 10_000, 10_000)
    train = (
        train.shuffle(shuffle_buffer, seed=seed, reshuffle_each_iteration=True)
        .batch(batch_size, drop_remainder=True)
        .prefetch(autotune)
    )
    test = cache(test.map(to_float, num_parallel_calls=autotune), num_test)
    test = test.batch(batch_size).prefetch(autotune)
    return DatasetSplits(
        train=train,
        test=test,
        image_shape=tuple(int(s) for s in image_shape),
        center=bool(center),
        name=name,
        num_train=num_train,
        num_test=num_test,
        find_unreadable=find_unreadable,
        test_cached=_is_cached(num_test, image_shape),
    )


def _is_cached(count, image_shape):
    """Whether `make_splits` caches a split of `count` float32 images in memory."""
    return count is not None and count * 4 * math.prod(image_shape) <= CACHE_LIMIT_BYTES
