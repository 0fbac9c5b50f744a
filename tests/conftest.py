"""Shared fixtures: tiny models and structured tiny data, on whatever backend is set."""

import atexit
import os
import shutil
import tempfile

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
if os.environ.get("KERAS_BACKEND") == "jax" and "JAX_COMPILATION_CACHE_DIR" not in os.environ:
    # Many tests build the same tiny models, and XLA:CPU spends tens of seconds
    # compiling each train step. JAX's compilation cache, keyed on the compiled program,
    # lets a test reuse another's executable; it is this session's own (a new folder,
    # removed at exit), and the processes the tests start inherit it.
    _cache = tempfile.mkdtemp(prefix="resvae-tests-jax-cache-")
    atexit.register(shutil.rmtree, _cache, ignore_errors=True)
    os.environ["JAX_COMPILATION_CACHE_DIR"] = _cache
    os.environ["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"] = "0"

import keras  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

import keras_resvae  # noqa: E402

TINY = dict(width=0.125, latent_dim=4)


def blob_images(n, shape=(16, 16, 1), seed=0):
    """Images of one bright Gaussian blob at a random place: learnable, in [0, 1]."""
    rng = np.random.default_rng(seed)
    height, width, channels = shape
    rows, cols = np.mgrid[0:height, 0:width]
    centres = rng.uniform(0.25, 0.75, size=(n, 2)) * (height, width)
    images = np.exp(
        -((rows - centres[:, 0, None, None]) ** 2 + (cols - centres[:, 1, None, None]) ** 2)
        / (2 * (0.12 * height) ** 2)
    )
    return np.repeat(images[..., None], channels, axis=-1).astype("float32")


@pytest.fixture(autouse=True)
def _clear_session():
    keras.utils.set_random_seed(0)
    yield
    keras.backend.clear_session()


@pytest.fixture
def blobs():
    return blob_images(64)


def tiny_vae(arch="basic", image_shape=(16, 16, 1), **kwargs):
    options = {**TINY, "seed": 1, **kwargs}
    return keras_resvae.build_vae(arch, image_shape, **options)


def to_numpy(x):
    return keras.ops.convert_to_numpy(x)
