"""Inference records no gradients on any backend; training and the model call still do."""

import gc
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


def live_batch_tensors(batch_size):
    """Tensors alive in Python that hold a batch of activations (torch only)."""
    import torch

    return sum(
        1
        for value in gc.get_objects()
        if isinstance(value, torch.Tensor)
        and not isinstance(value, torch.nn.Parameter)
        and value.ndim == 4
        and value.shape[0] == batch_size
    )


def test_evaluation_frees_each_batchs_tensors_before_the_next():
    # On torch, Keras's tree utilities leave every layer call's tensors in reference
    # cycles (see keras_resvae.cycles). With the automatic collector off, so that
    # nothing depends on when it happens to run, each batch's activations must still
    # be gone when the next batch is read: memory does not grow with the test set.
    if keras.backend.backend() != "torch":
        pytest.skip("the cycles are the torch backend's (keras.tree over torch's pytree)")
    vae = tiny_vae("resnet18", image_shape=(16, 16, 1))
    images = blob_images(16 * 6)
    alive = []

    def stream():
        for start in range(0, len(images), 16):
            alive.append(live_batch_tensors(16))
            yield images[start : start + 16]

    gc.disable()
    try:
        metrics.evaluate_vae(vae, stream(), iwae_samples=4, batch_size=16, verbose=0)
    finally:
        gc.enable()
    assert len(alive) == 6 and alive[2:] == [alive[1]] * 4, alive


def test_collecting_cycles_frees_cyclic_garbage_and_unfreezes():
    from keras_resvae.cycles import collecting_cycles

    assert gc.get_freeze_count() == 0  # nothing froze objects in this process
    with collecting_cycles() as collect:
        cycle = []
        cycle.append(cycle)
        del cycle
        freed = collect()
    assert gc.get_freeze_count() == 0  # all handed back
    if keras.backend.backend() == "torch":
        assert freed >= 1
    else:
        assert freed is None  # nothing to do without torch's pytree cycles
    # What the process froze itself stays frozen (a few frozen objects may die meanwhile).
    gc.freeze()
    try:
        frozen = gc.get_freeze_count()
        with collecting_cycles() as collect:
            collect()
        assert gc.get_freeze_count() > frozen // 2
    finally:
        gc.unfreeze()
