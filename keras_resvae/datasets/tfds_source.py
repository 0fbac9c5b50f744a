"""Named datasets through tensorflow-datasets, with a clear failure offline."""

import dataclasses
import socket

from keras_resvae.startup import import_tensorflow

# tfds's celeb_a images are 218x178 with no 64x64 config: the faces are centre-
# cropped to 140x140 and resized to 64x64 in the pipeline.
CELEBA_CROP = 140
DOWNLOAD_HOST = ("storage.googleapis.com", 443)


@dataclasses.dataclass(frozen=True)
class TfdsSpec:
    """How to serve one tfds dataset: its splits and image shape."""

    tfds_name: str
    train_split: str
    test_split: str
    image_shape: tuple
    crop: int = None


TFDS_DATASETS = {
    "mnist": TfdsSpec("mnist", "train", "test", (28, 28, 1)),
    "fashion_mnist": TfdsSpec("fashion_mnist", "train", "test", (28, 28, 1)),
    "cifar10": TfdsSpec("cifar10", "train", "test", (32, 32, 3)),
    "celeb_a": TfdsSpec("celeb_a", "train", "test", (64, 64, 3), crop=CELEBA_CROP),
    "imagenet_resized/32x32": TfdsSpec(
        "imagenet_resized/32x32", "train", "validation", (32, 32, 3)
    ),
    "imagenet_resized/64x64": TfdsSpec(
        "imagenet_resized/64x64", "train", "validation", (64, 64, 3)
    ),
}


class DatasetUnavailableError(RuntimeError):
    """A named dataset is not prepared locally and cannot be downloaded."""


def _can_reach_download_host(timeout=3.0):
    try:
        with socket.create_connection(DOWNLOAD_HOST, timeout=timeout):
            return True
    except OSError:
        return False


def _default_data_dir():
    import_tensorflow()  # before tfds imports it, unfiltered
    import tensorflow_datasets as tfds

    return tfds.core.constants.DATA_DIR


def _load_split(tfds, spec, split, data_dir):
    return tfds.load(spec.tfds_name, split=split, data_dir=data_dir, download=False)


def tfds_datasets(name, data_dir=None):
    """Train/test `tf.data` datasets of single images for a named tfds dataset.

    Tries the local tfds data directory first. If the data is not there, downloads
    it when the download host is reachable; offline, raises
    `DatasetUnavailableError` at once, naming the dataset, the folder it looked in
    and how to prepare it on another machine.

    Returns:
        `(train, test, image_shape, num_train, num_test)`; the sizes are None when
        tfds does not know them.
    """
    tf = import_tensorflow()  # before tfds imports it, unfiltered
    import tensorflow_datasets as tfds

    spec = TFDS_DATASETS[name]
    try:
        train = _load_split(tfds, spec, spec.train_split, data_dir)
        test = _load_split(tfds, spec, spec.test_split, data_dir)
        builder = tfds.builder(spec.tfds_name, data_dir=data_dir)
    except AssertionError:  # tfds's "could not find data" when download=False
        folder = data_dir or _default_data_dir()
        if not _can_reach_download_host():
            raise DatasetUnavailableError(
                f"The dataset {name!r} is not in the tfds data directory {folder} and "
                "cannot be downloaded (no network). On a machine with internet access run "
                f"`tfds build {spec.tfds_name} --data_dir DIR`, copy DIR here and pass "
                "--data-dir DIR (or set TFDS_DATA_DIR)."
            ) from None
        builder = tfds.builder(spec.tfds_name, data_dir=data_dir)
        builder.download_and_prepare()
        train = _load_split(tfds, spec, spec.train_split, data_dir)
        test = _load_split(tfds, spec, spec.test_split, data_dir)

    height, width, channels = spec.image_shape

    def image_of(example):
        image = example["image"]
        if spec.crop:
            # Sizes can vary (e.g. under tfds's mock data): crop the largest
            # centred square up to `crop` pixels, then resize.
            shape = tf.shape(image)
            side = tf.minimum(tf.minimum(shape[0], shape[1]), spec.crop)
            top, left = (shape[0] - side) // 2, (shape[1] - side) // 2
            image = image[top : top + side, left : left + side]
            image = tf.image.resize(
                tf.cast(image, tf.float32) / 255.0, (height, width), antialias=True
            )
            return tf.clip_by_value(image, 0.0, 1.0)
        return tf.ensure_shape(image, (height, width, channels))

    autotune = tf.data.AUTOTUNE
    splits = builder.info.splits if builder.info.splits else {}

    def size(split):
        return splits[split].num_examples if split in splits else None

    return (
        train.map(image_of, num_parallel_calls=autotune),
        test.map(image_of, num_parallel_calls=autotune),
        spec.image_shape,
        size(spec.train_split),
        size(spec.test_split),
    )
