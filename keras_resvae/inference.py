"""Inference without gradient bookkeeping, the same on every backend.

PyTorch records every operation on a tensor that requires gradients, whoever
calls it: an evaluation that decodes K posterior samples would keep K whole
decoder graphs alive (26 GB at the study's width). TensorFlow and JAX record
only inside a tape or a transformation. `inference` makes the VAE's inference
API and the metrics free of that state on every backend, and detaches what
they return, so the outputs behave alike everywhere.
"""

import contextlib
import functools

import keras
from keras import ops


def no_gradients():
    """A context in which the backend records nothing for differentiation.

    Example:
    >>> with no_gradients():
    ...     logits = vae.decoder(z)
    """
    if keras.backend.backend() == "torch":
        import torch

        return torch.no_grad()
    return contextlib.nullcontext()


def inference(function):
    """Decorator: runs `function` under `no_gradients()` and detaches its tensor outputs.

    For gradients through the networks, call the model (`vae(images)`) or
    `vae.encoder` / `vae.decoder` inside your own tape instead.

    Example:
    >>> @inference
    ... def reconstruct(vae, images):
    ...     return vae.decode(vae.encode(images)[0])
    """

    @functools.wraps(function)
    def wrapper(*args, **kwargs):
        with no_gradients():
            outputs = function(*args, **kwargs)
        return keras.tree.map_structure(_detached, outputs)

    return wrapper


def _detached(value):
    return ops.stop_gradient(value) if ops.is_tensor(value) else value
