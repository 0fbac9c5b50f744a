"""Batches of images held in memory, for `fit` on JAX and PyTorch without TensorFlow.

`tf.data` is TensorFlow's input pipeline: feeding it to the JAX or PyTorch
backend costs TensorFlow's import, about 0.45 GB resident for the life of the
process, for datasets that are one NumPy array anyway (the built-in `digits`
and `photos`, `.npz` files). `ArrayBatches` is a `keras.utils.PyDataset` over
such an array: Keras's `fit`, `evaluate` and `predict` take it on every
backend, and it does what the `tf.data` pipeline does for them (pixels to
float32, optional centring, shuffling per epoch, full training batches).
"""

import math
import warnings

import keras
import numpy as np


class ArrayBatches(keras.utils.PyDataset):
    """Float32 batches of an in-memory image array, in order or shuffled per epoch.

    The array is kept as given (uint8 stays uint8, a quarter of float32's size);
    each batch is converted when it is read: uint8 pixels are divided by 255,
    and with `center=True` mapped to [-1, 1].

    Shuffled batches are full and follow from `(seed, epoch)` alone, so a run
    resumed at epoch N (`start_epoch(N)`) reads the batches an uninterrupted run
    would have. Keras calls `on_epoch_end` after each epoch of `fit`.

    Args:
        images: array `(N, H, W, C)`, uint8 or float in [0, 1].
        batch_size: int.
        center: bool. Map pixels to [-1, 1].
        seed: int or None. Shuffle with this seed, a new order each epoch, and
            drop the last partial batch; None keeps the order and every image.
        drop_remainder: bool. Drop the last partial batch even in order.
        shard: `(rank, world_size)`: keep the images `rank, rank + world_size,
            ...` of every batch (one process's share in data-parallel training).

    Example:
    >>> train = ArrayBatches(x_train, batch_size=64, seed=0)
    >>> vae.fit(train, validation_data=ArrayBatches(x_test, 64), epochs=10)
    """

    def __init__(
        self, images, batch_size, *, center=False, seed=None, drop_remainder=False, shard=(0, 1)
    ):
        super().__init__()
        images = np.asarray(images)
        if images.ndim != 4:
            raise ValueError(
                f"ArrayBatches takes images of shape (N, height, width, channels). "
                f"Received: shape {images.shape}."
            )
        self.images = images
        self.batch_size = int(batch_size)
        self.center = bool(center)
        self.seed = seed
        self.drop_remainder = bool(drop_remainder or seed is not None)
        self.shard = tuple(shard)
        self.start_epoch(0)

    @property
    def image_shape(self):
        """`(height, width, channels)`."""
        return tuple(int(size) for size in self.images.shape[1:])

    def __len__(self):
        if self.drop_remainder:
            return len(self.images) // self.batch_size
        return math.ceil(len(self.images) / self.batch_size)

    def __getitem__(self, index):
        # Keras's fit reads batches by index; those reads make up its epoch.
        batch = self._batch(index)
        self._read.add(index)
        return batch

    def __iter__(self):
        # A look at the batches (a preview, the first images) is not an epoch of fit.
        for index in range(len(self)):
            yield self._batch(index)

    def _batch(self, index):
        if not 0 <= index < len(self):
            raise IndexError(f"batch {index} of {len(self)}")
        picked = self._order[index * self.batch_size : (index + 1) * self.batch_size]
        rank, world_size = self.shard
        return self.to_float(self.images[picked[rank::world_size]])

    def to_float(self, images):
        """Images of the array's kind as the float32 pixels the batches hold."""
        if images.dtype == np.uint8:
            images = images.astype("float32") / 255.0
        images = np.asarray(images, "float32")
        return images * 2.0 - 1.0 if self.center else images

    def pixel_range(self):
        """`(lowest, highest)` pixel over the whole array as the batches hold it (NaNs ignored)."""
        if self.images.size == 0:
            return 0.0, 0.0
        with warnings.catch_warnings():  # all-NaN: NaN, with a RuntimeWarning
            warnings.simplefilter("ignore", RuntimeWarning)
            low, high = np.nanmin(self.images), np.nanmax(self.images)
        low, high = self.to_float(np.array([low, high], self.images.dtype))
        return float(low), float(high)

    def start_epoch(self, epoch):
        """Reads the batches of epoch `epoch` (0-based) next: where a resumed run starts."""
        self.epoch = int(epoch)
        self._order = self._epoch_order()
        self._read = set()

    def on_epoch_end(self):
        # Keras also calls this when it resets its iterator, and may have read a
        # batch to build the model: only a complete pass is an epoch.
        if len(self._read) == len(self):
            self.start_epoch(self.epoch + 1)

    def sharded(self, rank, world_size):
        """The same batches, each cut to process `rank`'s share of `world_size`."""
        if self.batch_size % world_size:
            raise ValueError(
                f"A batch of {self.batch_size} images does not split evenly over "
                f"{world_size} processes. Use a --batch-size divisible by {world_size}."
            )
        return self._copy(shard=(rank, world_size))

    def split_over(self, num_devices):
        """The same batches, in order, with the last one cut to a multiple of `num_devices`.

        Fewer than `num_devices` images are left out, and only from the end.
        """
        if self.seed is not None:
            raise ValueError("split_over keeps the order: it is for unshuffled batches.")
        left_out = (len(self.images) % self.batch_size) % int(num_devices)
        return self._copy(images=self.images[: len(self.images) - left_out])

    def _copy(self, **changes):
        options = {
            "images": self.images,
            "batch_size": self.batch_size,
            "center": self.center,
            "seed": self.seed,
            "drop_remainder": self.drop_remainder,
            "shard": self.shard,
            **changes,
        }
        copy = ArrayBatches(options.pop("images"), options.pop("batch_size"), **options)
        copy.start_epoch(self.epoch)
        return copy

    def _epoch_order(self):
        if self.seed is None:
            return np.arange(len(self.images))
        return np.random.default_rng([self.seed, self.epoch]).permutation(len(self.images))
