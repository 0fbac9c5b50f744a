"""The user's own images: `.npz` files and folders of image files."""

import os
import zipfile

import numpy as np

from keras_resvae.startup import import_tensorflow

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif")
_MAGIC = {b"\x89PNG": "png", b"\xff\xd8": "jpeg", b"BM": "bmp", b"GIF8": "gif"}


def split_indices(count, test_fraction, seed=0):
    """A fixed random split of `range(count)` into (train, test) index arrays."""
    if not 0 < test_fraction < 1:
        raise ValueError(f"`test_fraction` must be between 0 and 1. Received: {test_fraction!r}")
    order = np.random.RandomState(seed).permutation(count)
    num_test = max(1, int(round(count * test_fraction)))
    return order[num_test:], order[:num_test]


def standardize_images(images, source):
    """Checks an array of images and returns float32 `(n, H, W, C)` in [0, 1].

    Accepts uint8 (0-255), bool, or float in [0, 1]; `(n, H, W)` gains a channel
    axis.
    """
    images = np.asarray(images)
    if images.ndim == 3:
        images = images[..., None]
    if images.ndim != 4 or images.shape[-1] not in (1, 3, 4) or len(images) == 0:
        raise ValueError(
            f"{source}: expected images of shape (n, height, width[, channels]) with 1, 3 "
            f"or 4 channels. Received an array of shape {images.shape}."
        )
    if images.dtype == np.uint8:
        return images.astype("float32") / 255.0
    if images.dtype == bool:
        return images.astype("float32")
    if not np.issubdtype(images.dtype, np.floating) and not np.issubdtype(images.dtype, np.integer):
        raise ValueError(f"{source}: expected numeric pixels. Received dtype {images.dtype}.")
    images = images.astype("float32")
    if not np.all(np.isfinite(images)):
        raise ValueError(f"{source}: the images contain NaN or infinite values.")
    low, high = float(images.min()), float(images.max())
    if low < 0 or high > 1:
        raise ValueError(
            f"{source}: pixels must be uint8 (0-255) or floats in [0, 1]. Received values in "
            f"[{low:g}, {high:g}]; divide by 255 or rescale them first."
        )
    return images


def load_npz(path, test_fraction=0.1, seed=0):
    """Images from a `.npz` file: arrays `x_train`/`x_test`, or one array split.

    Returns:
        `(x_train, x_test)` float32 arrays in [0, 1].

    Example:
    >>> x_train, x_test = load_npz("faces.npz")
    """
    if os.path.isfile(path) and not zipfile.is_zipfile(path):
        # np.load would advise allow_pickle=True: never right for a dataset file.
        raise ValueError(f"{path}: not a .npz archive (a zip of arrays saved by numpy.savez).")
    try:
        archive = np.load(path, allow_pickle=False)
    except FileNotFoundError:
        raise
    except Exception as error:
        raise ValueError(f"{path}: not a readable .npz file ({error}).") from error
    with archive:
        keys = list(archive.keys())
        if "x_train" in keys:
            x_train = standardize_images(archive["x_train"], f"{path}[x_train]")
            if "x_test" in keys:
                return x_train, standardize_images(archive["x_test"], f"{path}[x_test]")
            images = x_train
        elif len(keys) == 1:
            images = standardize_images(archive[keys[0]], f"{path}[{keys[0]}]")
        else:
            raise ValueError(
                f"{path}: expected arrays 'x_train' (and optionally 'x_test'), or a single "
                f"array of images. Found arrays {keys}."
            )
    if len(images) < 2:
        raise ValueError(f"{path}: at least 2 images are needed to split off a test set.")
    train, test = split_indices(len(images), test_fraction, seed)
    return images[train], images[test]


def _image_kind(path):
    with open(path, "rb") as file:
        head = file.read(4)
    return next((kind for magic, kind in _MAGIC.items() if head.startswith(magic)), None)


def list_image_files(folder):
    """Sorted image files under `folder` (recursively); checks each file's signature."""
    files = sorted(
        os.path.join(root, name)
        for root, _, names in os.walk(folder)
        for name in names
        if name.lower().endswith(IMAGE_EXTENSIONS)
    )
    if not files:
        raise ValueError(
            f"{folder}: no image files ({', '.join(IMAGE_EXTENSIONS)}) found in this folder."
        )
    corrupt = [path for path in files if _image_kind(path) is None]
    if corrupt:
        raise ValueError(
            f"{folder}: {len(corrupt)} file(s) are not valid images, e.g. {corrupt[0]}. "
            "Remove or replace them."
        )
    return files


def _decode(tf, path, channels):
    return tf.io.decode_image(tf.io.read_file(path), channels=channels, expand_animations=False)


def first_unreadable_image(folder, channels=3):
    """`(path, reason)` of the first image file in `folder` that cannot be decoded, or None.

    Decodes every file, so it is meant for after a pipeline has failed, to name
    the file that broke it.

    Example:
    >>> first_unreadable_image("photos/")
    ('photos/cat.jpg', 'jpeg::Uncompress failed. Invalid JPEG data or size.')
    """
    tf = import_tensorflow()
    for path in list_image_files(folder):
        try:
            _decode(tf, path, channels)
        except tf.errors.OpError as error:
            return path, error.message.strip().splitlines()[0]
    return None


def image_folder_datasets(folder, image_size=64, channels=3, test_fraction=0.1, seed=0):
    """Train/test `tf.data` datasets of the images in a folder, resized to a square.

    Images are decoded with `channels` channels and resized (bilinear, aspect ratio
    not kept) to `image_size` x `image_size`.

    Returns:
        `(train, test, image_shape, num_train, num_test)`.
    """
    tf = import_tensorflow()
    files = np.array(list_image_files(folder))
    if len(files) < 2:
        raise ValueError(f"{folder}: at least 2 images are needed to split off a test set.")
    train_index, test_index = split_indices(len(files), test_fraction, seed)

    def decode(path):
        image = _decode(tf, path, channels)
        image = tf.image.resize(image, (image_size, image_size), antialias=True)
        return tf.clip_by_value(image / 255.0, 0.0, 1.0)

    try:
        decode(files[0])
    except tf.errors.OpError as error:
        raise ValueError(f"{files[0]}: cannot decode this image ({error.message}).") from error

    def dataset(paths):
        return tf.data.Dataset.from_tensor_slices(paths).map(
            decode, num_parallel_calls=tf.data.AUTOTUNE
        )

    shape = (image_size, image_size, channels)
    return (
        dataset(files[train_index]),
        dataset(files[test_index]),
        shape,
        len(train_index),
        len(test_index),
    )
