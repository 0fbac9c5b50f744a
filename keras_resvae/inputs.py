"""Checking the images a VAE is given: their container, shape, dtype and pixel range.

A VAE silently learns the wrong thing from data on the wrong scale (0-255
pixels gave an MSE of about 6,200 and no message), so `fit`, `evaluate`,
`predict` and the inference methods check what they are given before any
work starts:

- NumPy arrays (and anything array-like) are checked whole: shape, dtype and
  pixel range.
- A `tf.data.Dataset` is checked from its element spec (rank, shape, dtype),
  and every batch's pixel range is checked inside the pipeline, where it costs
  a min and a max per batch; a failure there surfaces as the same one-line
  `ValueError` (see `translate_pipeline_error`).
- `ArrayBatches` (the package's own NumPy batches) are checked whole from
  the array they hold: shape and pixel range.
- Other iterables (generators, other `PyDataset`s, torch `DataLoader`) are
  passed through unchecked; the training step still checks their shapes.

NaN pixels are allowed through: the training step skips non-finite updates.
"""

import math
import numbers
import re
import warnings

import numpy as np

from keras_resvae import losses

# Pixels may stray this fraction of the range outside it (interpolation overshoot).
RANGE_TOLERANCE = 0.01
_RANGE_MARKER = "keras-resvae: pixels out of range"
_SHAPE_OP = "keras_resvae_image_shape"


def _rescaling(output_activation):
    """The expression that maps 0-255 pixels to the model's range."""
    return "x / 255" if output_activation == "sigmoid" else "x / 127.5 - 1"


def describe_shape_error(image_shape, received):
    """The message for images of the wrong shape."""
    expected = ", ".join(map(str, image_shape))
    hint = (
        f"Resize the data, or build the model with image_shape={tuple(received[1:])}."
        if len(received) == 4
        else "Images must be a batch of shape (batch, height, width, channels); add the "
        "channel axis to grey images (x[..., None])."
    )
    return (
        f"This VAE takes images of shape (batch, {expected}). "
        f"Received: shape {tuple(received)}. {hint}"
    )


def check_shape(shape, image_shape):
    """Raises a `ValueError` unless `shape` is `(batch, *image_shape)`; None matches any size."""
    shape = tuple(shape)
    if len(shape) != 4 or any(
        got is not None and got != want for got, want in zip(shape[1:], image_shape)
    ):
        raise ValueError(describe_shape_error(image_shape, shape))


def describe_range_error(low_seen, high_seen, output_activation, what="The images"):
    """The message for pixels outside the model's range, with the likely fix."""
    low, high = losses.pixel_range(output_activation)
    if high_seen > 2.0:
        fix = f"The data looks like 0-255 pixels: scale it with {_rescaling(output_activation)}."
    elif output_activation == "sigmoid" and low_seen < -0.5:
        fix = (
            "The data looks centred to [-1, 1]: build the model with output_activation="
            "'tanh' (resvae fit --center), or map it back with (x + 1) / 2."
        )
    else:
        fix = "Rescale the data to that range, or clip the overshoot (np.clip)."
    return (
        f"{what} have pixel values in [{round(low_seen, 4):.4g}, {round(high_seen, 4):.4g}], "
        "but this VAE "
        f"(output_activation={output_activation!r}) models pixels in [{low:g}, {high:g}]. "
        f"{fix}"
    )


def _range_with_tolerance(output_activation):
    low, high = losses.pixel_range(output_activation)
    slack = RANGE_TOLERANCE * (high - low)
    return low - slack, high + slack


def check_array(images, image_shape, output_activation, what="The images"):
    """Checks a NumPy array of images: shape, dtype and pixel range (NaNs are allowed).

    Raises:
        ValueError: naming what is wrong and how to fix it.

    Example:
    >>> check_array(x_train, (28, 28, 1), "sigmoid")
    """
    images = np.asarray(images)
    check_shape(images.shape, image_shape)
    if images.dtype == bool or not np.issubdtype(images.dtype, np.number):
        raise ValueError(f"{what} must be numbers. Received: dtype {images.dtype}.")
    if np.issubdtype(images.dtype, np.integer):
        low, high = losses.pixel_range(output_activation)
        raise ValueError(
            f"{what} are {images.dtype} integers, but this VAE takes float pixels in "
            f"[{low:g}, {high:g}]. Convert them: x.astype('float32'), then "
            f"{_rescaling(output_activation)} for 0-255 pixels."
        )
    if images.size == 0:
        return
    with warnings.catch_warnings():
        # All-NaN gives NaN with a RuntimeWarning; no temporary mask of the whole array.
        warnings.simplefilter("ignore", RuntimeWarning)
        low_seen, high_seen = float(np.nanmin(images)), float(np.nanmax(images))
    _check_range(low_seen, high_seen, output_activation, what)


def _check_range(low_seen, high_seen, output_activation, what="The images"):
    """Raises the range error unless [low_seen, high_seen] is in range (NaN bounds pass)."""
    if np.isnan(low_seen):
        return
    low, high = _range_with_tolerance(output_activation)
    if low_seen < low or high_seen > high:
        raise ValueError(describe_range_error(low_seen, high_seen, output_activation, what))


def unwrap_images(x, input_names):
    """The images of `x`: `x` itself, or the one value of a dict keyed by the encoder's input.

    Example:
    >>> unwrap_images({"images": x_train}, ["images"]) is x_train
    True
    """
    if not isinstance(x, dict):
        return x
    if len(x) == 1 and next(iter(x)) in input_names:
        return next(iter(x.values()))
    raise ValueError(
        f"A VAE takes one input, the images: an array, or a dict with the single key "
        f"{input_names[0]!r} (the encoder's input name). Received a dict with the keys "
        f"{sorted(map(str, x))}."
    )


def is_array_like(x):
    """True for NumPy arrays, nested lists of numbers and backend tensors with a shape."""
    if isinstance(x, (np.ndarray, list)):
        return True
    return hasattr(x, "shape") and hasattr(x, "dtype") and not _is_tf_dataset(x)


def _is_tf_dataset(x):
    return any(
        parent.__name__ == "DatasetV2" and "tensorflow" in parent.__module__
        for parent in type(x).__mro__
    )


def checked_dataset(dataset, image_shape, output_activation, input_names):
    """A `tf.data.Dataset` whose batches are checked as they are read.

    The element spec's rank, sizes and dtype are checked now. Each batch's
    shape (where the spec leaves it open) and pixel range are asserted in the
    pipeline; a failure raises TensorFlow's `InvalidArgumentError`, which
    `translate_pipeline_error` turns into this module's `ValueError`.
    `ArrayBatches` are checked at once, from the array they hold.
    """
    from keras_resvae.datasets.array_batches import ArrayBatches

    if isinstance(dataset, ArrayBatches):
        check_shape((None, *dataset.image_shape), image_shape)
        _check_range(*dataset.pixel_range(), output_activation)
        return dataset
    if not _is_tf_dataset(dataset):
        return dataset
    from keras_resvae.startup import import_tensorflow

    tf = import_tensorflow()
    spec = _images_of(dataset.element_spec, input_names)
    if spec.shape.rank is not None:
        check_shape(spec.shape.as_list(), image_shape)
    if not spec.dtype.is_floating:
        raise ValueError(
            f"The dataset's images are {spec.dtype.name}, but this VAE takes float pixels. "
            f"Map them: dataset.map(lambda x: tf.cast(x, 'float32')), then "
            f"{_rescaling(output_activation)} for 0-255 pixels."
        )
    low, high = _range_with_tolerance(output_activation)

    def check(images):
        images = tf.ensure_shape(images, (None, *image_shape), name=_SHAPE_OP)
        real = tf.where(tf.math.is_nan(images), tf.zeros_like(images) + low, images)
        low_seen, high_seen = tf.reduce_min(real), tf.reduce_max(real)
        in_range = tf.logical_and(low_seen >= low, high_seen <= high)
        with tf.control_dependencies(
            [tf.debugging.Assert(in_range, [_RANGE_MARKER, low_seen, high_seen])]
        ):
            return tf.identity(images)

    def check_element(*element):
        if len(element) == 1:
            return _replace_images(element[0], check)
        return (_replace_images(element[0], check), *element[1:])

    return dataset.map(check_element)


def _images_of(element, input_names):
    if isinstance(element, tuple):
        element = element[0]
    return unwrap_images(element, input_names)


def _replace_images(x, check):
    # A dict was checked against the encoder's input name with the element spec.
    if isinstance(x, dict):
        ((key, images),) = x.items()
        return {key: check(images)}
    return check(x)


def translate_pipeline_error(error, image_shape, output_activation):
    """This module's `ValueError` for a failed pipeline check, or None for other errors."""
    text = str(error)
    match = re.search(re.escape(_RANGE_MARKER) + r"\]\s*\[([^\]]+)\]\s*\[([^\]]+)\]", text)
    if match:
        low_seen, high_seen = (float(value) for value in match.groups())
        return ValueError(
            describe_range_error(low_seen, high_seen, output_activation, "The dataset's images")
        )
    if _SHAPE_OP in text:
        shape = re.search(r"Shape of tensor \S* \[([^\]]*)\]", text)
        received = tuple(int(s) for s in shape.group(1).split(",") if s) if shape else ()
        return ValueError(describe_shape_error(image_shape, received))
    return None


def check_count(value, name, minimum=1):
    """`value` as an int, if it is a whole number >= `minimum`; else a ValueError.

    Example:
    >>> check_count(16, "num_samples")
    16
    """
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise ValueError(f"`{name}` must be an integer. Received: {name}={value!r}")
    if value < minimum:
        raise ValueError(f"`{name}` must be at least {minimum}. Received: {name}={value!r}")
    return int(value)


def _is_real(value):
    return not isinstance(value, (bool, np.bool_)) and isinstance(value, numbers.Real)


def check_non_negative(value, name, meaning):
    """`value` as a float, if it is a finite number >= 0; else a ValueError saying what it means.

    Example:
    >>> check_non_negative(0.7, "temperature", "1 samples the prior itself")
    0.7
    """
    if not _is_real(value) or not 0 <= value < math.inf:
        raise ValueError(
            f"`{name}` must be a finite number >= 0 ({meaning}). Received: {name}={value!r}"
        )
    return float(value)


def check_positive_or_none(value, name, meaning):
    """None, or `value` as a float if it is a finite number > 0; else a ValueError.

    Example:
    >>> check_positive_or_none(None, "grad_skip", "a gradient norm")  # None: off
    """
    if value is None:
        return None
    if not _is_real(value) or not 0 < value < math.inf:
        raise ValueError(
            f"`{name}` must be None (off) or {meaning} > 0. Received: {name}={value!r}"
        )
    return float(value)
