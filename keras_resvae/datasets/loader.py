"""`load_dataset`: one entry point for named, built-in and user datasets."""

import functools
import os

from keras_resvae.datasets.arrays import first_unreadable_image, image_folder_datasets, load_npz
from keras_resvae.datasets.digits import load_digits
from keras_resvae.datasets.photos import load_photos
from keras_resvae.datasets.pipeline import make_array_splits, make_splits, uses_tf_data
from keras_resvae.datasets.tfds_source import TFDS_DATASETS, tfds_datasets
from keras_resvae.startup import import_tensorflow

# Built in: real images that ship inside installed packages, so no download.
BUILTIN_DATASETS = {"digits": load_digits, "photos": load_photos}
NAMED_DATASETS = tuple(BUILTIN_DATASETS) + tuple(TFDS_DATASETS)


def _array_datasets(x_train, x_test):
    tf = import_tensorflow()
    return (
        tf.data.Dataset.from_tensor_slices(x_train),
        tf.data.Dataset.from_tensor_slices(x_test),
        x_train.shape[1:],
        len(x_train),
        len(x_test),
    )


def load_dataset(
    dataset="digits",
    *,
    batch_size=128,
    center=False,
    data_dir=None,
    image_size=64,
    channels=3,
    test_fraction=0.1,
    limit=None,
    seed=0,
    pipeline="auto",
):
    """Batched train/test pipelines for a named dataset, a `.npz` file or an image folder.

    Args:
        dataset: `"digits"` or `"photos"` (built in, offline: 28x28 handwritten
            digits, 32x32 colour crops of photographs), a tfds name (`mnist`,
            `fashion_mnist`, `cifar10`, `celeb_a` at 64x64,
            `imagenet_resized/32x32`, `imagenet_resized/64x64`), a path to a `.npz`
            file, or a path to a folder of PNG/JPEG images.
        batch_size: int. Training batches are full (the last partial one dropped).
        center: bool. Pixels in [-1, 1] (pair with a `tanh` output) instead of [0, 1].
        data_dir: tfds data directory, for data prepared elsewhere.
        image_size, channels: image folders only: images are resized to
            `image_size` x `image_size` with `channels` channels.
        test_fraction: `.npz` with one array, and image folders: the fixed share of
            images held out for testing.
        limit: int or None. Use at most this many training images.
        seed: int. Shuffling and splitting seed.
        pipeline: `"auto"`, `"tf.data"` or `"numpy"`. What in-memory datasets
            (`digits`, `photos`, `.npz`) become: `tf.data` pipelines, or
            `ArrayBatches` (a `keras.utils.PyDataset` of NumPy batches, which
            needs no TensorFlow). `"auto"`: `tf.data` on the TensorFlow backend,
            NumPy batches on JAX and PyTorch. tfds datasets and image folders
            are always `tf.data`.

    Returns:
        `DatasetSplits` with `train`, `test`, `image_shape`, `center`.

    Example:
    >>> data = load_dataset("digits", batch_size=64)
    >>> vae = build_vae("basic", data.image_shape, output_activation=data.output_activation)
    >>> vae.fit(data.train, validation_data=data.test, epochs=10)
    """
    tf_data = uses_tf_data(pipeline)
    find_unreadable = None
    arrays = None
    if dataset in BUILTIN_DATASETS:
        arrays = BUILTIN_DATASETS[dataset]()
    elif dataset in TFDS_DATASETS:
        parts = tfds_datasets(dataset, data_dir=data_dir)
    elif os.path.isdir(dataset):
        parts = image_folder_datasets(dataset, image_size, channels, test_fraction, seed)
        find_unreadable = functools.partial(first_unreadable_image, dataset, channels)
    elif os.path.isfile(dataset):
        if not dataset.endswith(".npz"):
            raise ValueError(f"{dataset}: a dataset file must be a .npz archive of image arrays.")
        arrays = load_npz(dataset, test_fraction, seed)
    else:
        raise ValueError(
            f"Unknown dataset {dataset!r}: expected one of {list(NAMED_DATASETS)}, a path "
            "to a .npz file or a path to a folder of images."
        )
    if arrays is not None and not tf_data:
        return make_array_splits(
            *arrays, dataset, batch_size=batch_size, center=center, seed=seed, limit=limit
        )
    if arrays is not None:
        parts = _array_datasets(*arrays)
    train, test, image_shape, num_train, num_test = parts
    return make_splits(
        train,
        test,
        image_shape,
        dataset,
        batch_size=batch_size,
        center=center,
        num_train=num_train,
        num_test=num_test,
        seed=seed,
        limit=limit,
        find_unreadable=find_unreadable,
    )
