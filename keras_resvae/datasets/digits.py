"""`digits`: real handwritten digits that ship inside scikit-learn, MNIST-style.

scikit-learn bundles the UCI optical-recognition digits: 1,797 images of 8x8
pixels with 17 grey levels (0-16). They need no download, so the package trains
out of the box and offline. Like MNIST, where each digit is fitted in a 20x20 box
centred in a 28x28 frame, each 8x8 digit is resized bilinearly to 20x20 and
centred in a 28x28 frame, on the [0, 1] scale.
"""

import numpy as np

DIGITS_TEST_SIZE = 297  # 1,500 training and 297 test images
DIGITS_SPLIT_SEED = 0
IMAGE_SIDE = 28
DIGIT_SIDE = 20


def _bilinear_resize(images, side):
    """Resizes `(n, h, w)` images to `(n, side, side)` (pixel-centre aligned)."""
    n, height, width = images.shape
    rows = (np.arange(side) + 0.5) * height / side - 0.5
    cols = (np.arange(side) + 0.5) * width / side - 0.5
    rows, cols = np.clip(rows, 0, height - 1), np.clip(cols, 0, width - 1)
    r0, c0 = np.floor(rows).astype(int), np.floor(cols).astype(int)
    r1, c1 = np.minimum(r0 + 1, height - 1), np.minimum(c0 + 1, width - 1)
    fr, fc = (rows - r0)[None, :, None], (cols - c0)[None, None, :]
    top = images[:, r0][:, :, c0] * (1 - fc) + images[:, r0][:, :, c1] * fc
    bottom = images[:, r1][:, :, c0] * (1 - fc) + images[:, r1][:, :, c1] * fc
    return top * (1 - fr) + bottom * fr


def load_digits(with_labels=False):
    """The built-in digits as 28x28x1 float32 images in [0, 1], with a fixed split.

    Args:
        with_labels: bool. Also return the digit labels.

    Returns:
        `(x_train, x_test)` of shapes `(1500, 28, 28, 1)` and `(297, 28, 28, 1)`,
        or `((x_train, y_train), (x_test, y_test))` with `with_labels=True`.

    Example:
    >>> x_train, x_test = load_digits()
    """
    try:
        from sklearn.datasets import load_digits as sklearn_digits
    except ImportError as error:  # pragma: no cover - scikit-learn is a dependency
        raise ImportError(
            "The built-in `digits` dataset ships inside scikit-learn: `pip install scikit-learn`."
        ) from error
    bunch = sklearn_digits()
    small = bunch.images.astype("float64") / 16.0
    digits = np.clip(_bilinear_resize(small, DIGIT_SIDE), 0.0, 1.0)
    margin = (IMAGE_SIDE - DIGIT_SIDE) // 2
    images = np.zeros((len(digits), IMAGE_SIDE, IMAGE_SIDE, 1), "float32")
    images[:, margin : margin + DIGIT_SIDE, margin : margin + DIGIT_SIDE, 0] = digits
    order = np.random.RandomState(DIGITS_SPLIT_SEED).permutation(len(images))
    train, test = order[DIGITS_TEST_SIZE:], order[:DIGITS_TEST_SIZE]
    if with_labels:
        labels = bunch.target.astype("int64")
        return (images[train], labels[train]), (images[test], labels[test])
    return images[train], images[test]
