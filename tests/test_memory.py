"""Memory estimates and out-of-memory recognition."""

import keras
import numpy as np
import pytest
from conftest import tiny_vae

from keras_resvae import memory


def test_activation_bytes_add_up_every_layer_output():
    inputs = keras.Input((8, 8, 3))
    hidden = keras.layers.Conv2D(4, 3, padding="same")(inputs)
    outputs = keras.layers.Conv2D(2, 3, strides=2, padding="same")(hidden)
    network = keras.Model(inputs, outputs)
    # The input layer, 8x8x4 and 4x4x2 float32 values.
    assert memory.activation_bytes_per_image(network) == 4 * (8 * 8 * 3 + 8 * 8 * 4 + 4 * 4 * 2)
    wide, narrow = tiny_vae(width=0.25), tiny_vae(width=0.125)
    assert memory.activation_bytes_per_image(wide.decoder) > memory.activation_bytes_per_image(
        narrow.decoder
    )


def test_a_batch_that_fits_passes_and_one_that_cannot_names_a_size(monkeypatch):
    vae = tiny_vae()
    memory.check_batch_fits(vae, 64)
    monkeypatch.setattr(memory, "uses_accelerator", lambda: False)
    monkeypatch.setattr(memory, "available_bytes", lambda: 2**20)
    per_image = memory.activation_bytes_per_image(vae.encoder) + (
        memory.activation_bytes_per_image(vae.decoder)
    )
    fits = 2**20 // (2 * per_image)
    with pytest.raises(ValueError, match=f"lower --batch-size \\(for example --batch-size {fits}"):
        memory.check_batch_fits(vae, 10_000)
    memory.check_batch_fits(vae, fits)


def test_available_memory_is_known_on_linux():
    available = memory.available_bytes()
    assert available is None or available > 0


@pytest.mark.parametrize(
    "error, expected",
    [
        (MemoryError("Unable to allocate 4.0 GiB"), True),
        (type("OutOfMemoryError", (RuntimeError,), {})("CUDA out of memory"), True),
        (RuntimeError("RESOURCE_EXHAUSTED: Out of memory while trying to allocate"), True),
        (RuntimeError("shapes do not match"), False),
        (ValueError(np.float32(1)), False),
    ],
)
def test_out_of_memory_errors_of_every_backend_are_recognised(error, expected):
    assert memory.is_out_of_memory(error) is expected
