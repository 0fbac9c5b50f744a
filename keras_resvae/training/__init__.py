"""Per-backend training steps for the VAE.

Each backend module only differentiates, checks that the update is finite and
applies it; the objective comes from `VAE.compute_elbo` on every backend.
"""

import importlib

import keras

_MODULES = {
    "tensorflow": "keras_resvae.training.tensorflow_step",
    "jax": "keras_resvae.training.jax_step",
    "torch": "keras_resvae.training.torch_step",
}


def backend_steps():
    """Returns the module holding `train_step`/`test_step` for Keras's backend."""
    backend = keras.backend.backend()
    if backend not in _MODULES:
        raise ValueError(
            f"keras-resvae trains on the backends {sorted(_MODULES)}. "
            f"Received: KERAS_BACKEND={backend!r}"
        )
    return importlib.import_module(_MODULES[backend])
