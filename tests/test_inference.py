"""Inference records no gradients on any backend; training and the model call still do."""

import math

import keras
import numpy as np
import pytest
from conftest import blob_images, tiny_vae
from keras.src.models.functional import Functional

from keras_resvae import metrics
from keras_resvae.metrics.likelihood import iwae_chunk_size


def input_gradient(function, x):
    """d sum(function(x)) / dx as NumPy, or None when nothing was recorded."""
    x = np.asarray(x, "float32")
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        x = tf.convert_to_tensor(x)
        with tf.GradientTape() as tape:
            tape.watch(x)
            total = keras.ops.sum(function(x))
        gradient = tape.gradient(total, x)
        return None if gradient is None else gradient.numpy()
    if backend == "jax":
        import jax

        return np.asarray(jax.grad(lambda value: keras.ops.sum(function(value)))(x))
    import torch

    x = torch.tensor(x, requires_grad=True)
    output = function(x)
    if not output.requires_grad:
        return None
    output.sum().backward()
    return x.grad.numpy()


def records_nothing(gradient):
    return gradient is None or not np.any(gradient)


def carries_gradient_state(value):
    """On torch, whether a tensor holds an autograd graph (elsewhere tensors never do)."""
    return bool(getattr(value, "requires_grad", False) or getattr(value, "grad_fn", None))


def test_inference_methods_record_and_return_no_gradients():
    vae = tiny_vae()
    images = blob_images(4)
    z = np.random.default_rng(0).normal(size=(3, vae.latent_dim)).astype("float32")
    assert records_nothing(input_gradient(vae.decode, z))
    assert records_nothing(input_gradient(lambda x: vae.encode(x)[0], images))
    assert records_nothing(input_gradient(vae.reconstruct, images))
    outputs = [
        *vae.encode(images),
        vae.decode(z),
        vae.reconstruct(images),
        vae.sample(2, seed=0),
        vae.interpolate(images[0], images[1], steps=3),
    ]
    assert not any(carries_gradient_state(output) for output in outputs)


def test_the_model_call_and_its_networks_still_differentiate():
    vae = tiny_vae()
    images = blob_images(4)
    z = np.random.default_rng(0).normal(size=(3, vae.latent_dim)).astype("float32")
    assert not records_nothing(input_gradient(lambda x: vae(x, training=True), images))
    assert not records_nothing(input_gradient(vae.decoder, z))


def test_evaluation_decodes_without_gradients_and_each_batch_once_per_term(monkeypatch):
    vae = tiny_vae()
    calls = []
    original = Functional.__call__

    def recording(network, *args, **kwargs):
        if network is vae.decoder:
            grad_enabled = None
            if keras.backend.backend() == "torch":
                import torch

                grad_enabled = torch.is_grad_enabled()
            calls.append(grad_enabled)
        return original(network, *args, **kwargs)

    monkeypatch.setattr(Functional, "__call__", recording)
    samples, batch_size, num_images = 5, 8, 16
    metrics.evaluate_vae(
        vae, blob_images(num_images), iwae_samples=samples, batch_size=batch_size, verbose=0
    )
    chunk = iwae_chunk_size(vae, batch_size)
    batches = num_images // batch_size
    # Per batch: the posterior mean (reconstructions and sigma), one ELBO sample, the IWAE chunks.
    assert len(calls) == batches * (2 + math.ceil(samples / chunk))
    assert not any(calls)  # on torch, every decoder pass ran with gradients off


def test_iwae_chunks_follow_the_memory_budget():
    vae = tiny_vae()
    assert iwae_chunk_size(vae, 64, memory_budget=1) == 1
    small, large = (iwae_chunk_size(vae, 64, memory_budget=b) for b in (2**22, 2**24))
    assert large >= 4 * small - 4 and large > small
    with pytest.raises(ValueError, match="chunk_size"):
        metrics.importance_weighted_nll(vae, blob_images(2), 4, chunk_size=0)
