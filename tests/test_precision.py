"""Mixed precision trains to a finite loss comparable with float32, on every backend."""

import keras
import numpy as np
import pytest
from conftest import blob_images, tiny_vae, to_numpy

from keras_resvae.precision import precision_scope


def train(precision, epochs=4):
    keras.utils.set_random_seed(0)
    with precision_scope(precision):
        vae = tiny_vae("resnet18", use_batch_norm=False)
        vae.compile(optimizer=keras.optimizers.Adam(3e-3))
    images = blob_images(64)
    vae.initialize_output_bias(images)
    history = vae.fit(images, epochs=epochs, batch_size=16, verbose=0, shuffle=False)
    return vae, history.history


@pytest.mark.slow
@pytest.mark.parametrize("precision", ["mixed_bfloat16", "mixed_float16"])
def test_mixed_precision_trains_like_float32(precision):
    reference, reference_history = train("float32")
    vae, history = train(precision)
    assert keras.config.dtype_policy().name == "float32"  # the scope restored it
    assert vae.encoder.get_layer("stem_conv").compute_dtype == precision.removeprefix("mixed_")
    assert vae.encoder.get_layer("latent_head").compute_dtype == "float32"
    assert vae.decoder.get_layer("logits").compute_dtype == "float32"
    scaled = isinstance(vae.optimizer, keras.optimizers.LossScaleOptimizer)
    assert scaled == (precision == "mixed_float16")
    losses = history["loss"]
    assert np.all(np.isfinite(losses))
    if precision == "mixed_bfloat16":
        # It learns: some later epoch is well below the first. (Whole trajectories
        # are not compared: on 16 steps of a tiny model they diverge chaotically,
        # and on TensorFlow bfloat16 ended at -58 where float32 reached -81.)
        assert min(losses[1:]) < losses[0] - 0.1 * abs(losses[0])
        # And it computes what float32 computes: the float32 model's weights give
        # the same deterministic reconstructions within bfloat16's ~3 digits.
        with precision_scope(precision):
            twin = tiny_vae("resnet18", use_batch_norm=False)
        twin.set_weights(reference.get_weights())
        images = blob_images(16)
        np.testing.assert_allclose(
            twin.predict(images, verbose=0), reference.predict(images, verbose=0), atol=0.02
        )
    else:
        # float16's loss scale starts high: the first steps overflow and are skipped
        # while the scale comes down; by the last epoch none is, and it has learned.
        assert history["skipped_steps"][-1] == 0
        assert losses[-1] < reference_history["loss"][0]
    samples = vae.sample(4, seed=0)
    assert keras.backend.standardize_dtype(samples.dtype) == "float32"
    assert np.all(np.isfinite(to_numpy(samples)))


def test_unknown_precision_is_a_clear_error():
    with pytest.raises(ValueError, match="mixed_bfloat16"):
        with precision_scope("float8"):
            pass
