"""`photos`: CIFAR-like 32x32 colour crops of the photographs that ship with scikit-image.

scikit-image and scikit-learn install a dozen real colour photographs (an
astronaut, a cat, coffee, a rocket launch, the Hubble deep field, a retina, a
stained tissue section, a stereo pair of motorcycles, a Chinese temple, a
flower, ...). They need no download, so natural images can be trained on
offline. Each photograph is turned into a Gaussian image pyramid (each level
sqrt(2) smaller than the last, anti-aliased), and 32x32 crops are cut at random
levels and positions, half of them mirrored: objects appear at many scales, as
in CIFAR-10. Training and test crops come from *different photographs*, so the
test set measures generalisation to unseen images, not to unseen crops of the
same ones. Everything is drawn from a fixed seed: every install gets the same
images.
"""

import math

import numpy as np

PHOTOS_SEED = 0
CROP_SIDE = 32
PHOTOS_TRAIN_SIZE = 6000
PHOTOS_TEST_SIZE = 1000
# A level must be this much larger than a crop, so its crops do not all overlap.
MIN_LEVEL_SIDE = 48
LEVEL_SCALE = math.sqrt(2.0)

# (source, name) of the photographs each split is cut from. The two motorcycle
# views are one stereo pair (almost the same picture), so they share a split.
TRAIN_PHOTOS = (
    ("skimage", "astronaut"),
    ("skimage", "coffee"),
    ("skimage", "rocket"),
    ("skimage", "hubble_deep_field"),
    ("skimage", "immunohistochemistry"),
    ("skimage", "motorcycle_left"),
    ("skimage", "motorcycle_right"),
    ("skimage", "retina"),
    ("skimage", "colorwheel"),
    ("sklearn", "flower.jpg"),
)
TEST_PHOTOS = (
    ("skimage", "chelsea"),
    ("sklearn", "china.jpg"),
)


def _read_photo(source, name):
    """One photograph as `(H, W, 3)` float64 in [0, 1]."""
    if source == "sklearn":
        from sklearn.datasets import load_sample_image

        image = load_sample_image(name)
    else:
        try:
            from skimage import data
        except ImportError as error:
            raise ImportError(
                "The built-in `photos` dataset ships inside scikit-image: "
                "`pip install scikit-image` (it is a dependency of keras-resvae)."
            ) from error
        if name.startswith("motorcycle_"):
            left, right, _ = data.stereo_motorcycle()
            image = left if name == "motorcycle_left" else right
        else:
            image = getattr(data, name)()
    return np.asarray(image, "float64")[..., :3] / 255.0


def _pyramid(image):
    """The Gaussian pyramid levels of `image` whose sides are all >= `MIN_LEVEL_SIDE`."""
    from skimage.transform import pyramid_gaussian

    levels = []
    for level in pyramid_gaussian(image, downscale=LEVEL_SCALE, channel_axis=-1):
        if min(level.shape[:2]) < MIN_LEVEL_SIDE:
            break
        levels.append(level)
    return levels


def _crops(photos, count, rng):
    """`count` crops spread evenly over `photos`, each at a random level, position and flip."""
    pyramids = [_pyramid(_read_photo(*photo)) for photo in photos]
    crops = np.empty((count, CROP_SIDE, CROP_SIDE, 3), "float32")
    for index in range(count):
        levels = pyramids[index % len(pyramids)]
        level = levels[rng.integers(len(levels))]
        top = rng.integers(level.shape[0] - CROP_SIDE + 1)
        left = rng.integers(level.shape[1] - CROP_SIDE + 1)
        crop = level[top : top + CROP_SIDE, left : left + CROP_SIDE]
        crops[index] = crop[:, ::-1] if rng.random() < 0.5 else crop
    return np.clip(crops, 0.0, 1.0)


def load_photos():
    """The built-in photos: 32x32x3 float32 crops in [0, 1], train and test from different photos.

    Returns:
        `(x_train, x_test)` of shapes `(6000, 32, 32, 3)` and `(1000, 32, 32, 3)`:
        the training crops come from `TRAIN_PHOTOS`, the test crops from
        `TEST_PHOTOS`, drawn with the fixed seed `PHOTOS_SEED`.

    Example:
    >>> x_train, x_test = load_photos()
    >>> x_train.shape
    (6000, 32, 32, 3)
    """
    rng = np.random.default_rng(PHOTOS_SEED)
    x_train = _crops(TRAIN_PHOTOS, PHOTOS_TRAIN_SIZE, rng)
    x_test = _crops(TEST_PHOTOS, PHOTOS_TEST_SIZE, rng)
    # Interleaved by photograph above; shuffled so any prefix (`--limit`) mixes them all.
    return x_train[rng.permutation(len(x_train))], x_test[rng.permutation(len(x_test))]
