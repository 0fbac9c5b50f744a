"""Keeping TensorFlow out of a process that runs Keras on JAX or PyTorch.

Keras imports TensorFlow by itself, whenever it is installed, in two places a
run goes through: `keras.utils.set_random_seed` (to seed `tf.data`'s
shuffling) and `model.save` (to ask whether a value in the model's config is a
`tf.TensorShape` or a `tf.DType`). On JAX and PyTorch that import costs about
0.45 GB resident for the rest of the process, and its start-up lines reach
the terminal. While TensorFlow is not imported, no object can be one of its
types and no `tf.data` pipeline exists to seed, so both questions have the
answer "no" without the import.
"""

import contextlib
import sys

import keras


@contextlib.contextmanager
def keras_without_tensorflow():
    """Within this block, Keras treats TensorFlow as absent unless it is already imported.

    A no-op on the TensorFlow backend, once TensorFlow is imported, and on a
    Keras whose lazy TensorFlow module this does not recognise (then Keras
    imports TensorFlow as it would anyway).

    Example:
    >>> with keras_without_tensorflow():
    ...     vae.save("model.keras")  # on JAX or PyTorch, TensorFlow stays unimported
    """
    lazy_tensorflow = _keras_lazy_tensorflow()
    if lazy_tensorflow is None or "tensorflow" in sys.modules:
        yield
        return
    saved = lazy_tensorflow._available
    lazy_tensorflow._available = False
    try:
        yield
    finally:
        lazy_tensorflow._available = saved


def set_random_seed(seed):
    """`keras.utils.set_random_seed`, without importing TensorFlow on JAX or PyTorch.

    Seeds Python, NumPy, Keras's global seed generator and the backend.
    TensorFlow is seeded too where it is imported; if it is imported later
    (a tfds dataset on JAX), `startup.import_tensorflow` seeds it from Keras's
    global seed then, so its pipelines shuffle as they would have.

    Example:
    >>> set_random_seed(0)
    """
    with keras_without_tensorflow():
        keras.utils.set_random_seed(seed)


def _keras_lazy_tensorflow():
    if keras.backend.backend() == "tensorflow":
        return None
    try:
        from keras.src.utils.module_utils import tensorflow
    except ImportError:
        return None
    return tensorflow if hasattr(tensorflow, "_available") else None
