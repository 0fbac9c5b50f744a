"""The reparameterisation layer."""

import warnings

import keras
import numpy as np
from conftest import to_numpy
from keras.src import testing

from keras_resvae import Sampling
from keras_resvae.sampling import LOG_VAR_RANGE


def test_samples_have_the_posterior_moments():
    n, dim = 20000, 3
    mean = np.tile(np.array([[1.0, -2.0, 0.5]], "float32"), (n, 1))
    log_var = np.tile(np.log(np.array([[4.0, 0.25, 1.0]], "float32")), (n, 1))
    z = to_numpy(Sampling(seed=3)([mean, log_var]))
    assert z.shape == (n, dim)
    # Standard error of the mean is std / sqrt(n) < 0.015 here; 5 of them is safe.
    np.testing.assert_allclose(z.mean(0), [1.0, -2.0, 0.5], atol=0.075)
    np.testing.assert_allclose(z.std(0), [2.0, 0.5, 1.0], rtol=0.03)


def test_deterministic_returns_the_mean():
    mean = np.arange(6, dtype="float32").reshape(2, 3)
    z = Sampling(seed=0)([mean, np.zeros_like(mean)], deterministic=True)
    np.testing.assert_array_equal(to_numpy(z), mean)


def test_seeded_layers_are_reproducible_and_advance():
    mean = np.zeros((4, 5), "float32")
    first, second = Sampling(seed=7), Sampling(seed=7)
    a1, a2 = to_numpy(first([mean, mean])), to_numpy(first([mean, mean]))
    b1 = to_numpy(second([mean, mean]))
    np.testing.assert_array_equal(a1, b1)
    assert not np.allclose(a1, a2)


def test_extreme_log_variances_stay_finite():
    mean = np.zeros((2, 2), "float32")
    log_var = np.array([[1e4, -1e4], [500.0, -500.0]], "float32")
    z = to_numpy(Sampling(seed=0)([mean, log_var]))
    assert np.all(np.isfinite(z))
    assert np.abs(z).max() < 50 * np.exp(0.5 * LOG_VAR_RANGE[1])


def test_a_saved_model_goes_on_with_the_noise_where_it_stopped(tmp_path):
    # A checkpoint must carry the noise generator's state, or a resumed run
    # would draw its first epoch's noise again.
    from conftest import tiny_vae

    vae = tiny_vae()
    mean, log_var = np.zeros((4, 2), "float32"), np.zeros((4, 2), "float32")
    for _ in range(3):
        vae.sampling([mean, log_var])  # the generator moves on with each draw
    vae.save(tmp_path / "vae.keras")
    loaded = keras.models.load_model(tmp_path / "vae.keras")
    np.testing.assert_array_equal(
        to_numpy(loaded.sampling.seed_generator.state), to_numpy(vae.sampling.seed_generator.state)
    )
    np.testing.assert_array_equal(
        to_numpy(loaded.sampling([mean, log_var])), to_numpy(vae.sampling([mean, log_var]))
    )


def test_config_round_trip_keeps_the_seed():
    layer = Sampling(seed=11, name="s")
    clone = Sampling.from_config(layer.get_config())
    assert clone.seed == 11 and clone.name == "s"
    restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(layer))
    assert isinstance(restored, Sampling) and restored.seed == 11


class SamplingConformanceTest(testing.TestCase):
    """Keras's own layer checks: config, serialisation, symbolic vs eager, training, dtypes."""

    def test_keras_layer_conformance(self):
        with warnings.catch_warnings():
            # Keras's own training check fits a generator with shuffle=True.
            warnings.filterwarnings("ignore", "`shuffle=True` was passed")
            warnings.filterwarnings("ignore", "The model does not have any trainable weights")
            self._run_layer_test()

    def _run_layer_test(self):
        self.run_layer_test(
            Sampling,
            init_kwargs={"seed": 3},
            # A tuple: Keras's training check feeds a generator, whose TensorFlow
            # signature cannot hold a list.
            input_data=(np.zeros((2, 5), "float32"), np.zeros((2, 5), "float32")),
            expected_output_shape=(2, 5),
            expected_output_dtype="float32",
            expected_num_trainable_weights=0,
            expected_num_non_trainable_weights=0,
            expected_num_seed_generators=1,
            expected_num_losses=0,
            supports_masking=False,
        )

    def test_mixed_precision_output_is_float32_symbolically_and_eagerly(self):
        # run_layer_test skips its mixed-precision check on torch without CUDA; this
        # is that check, on every backend.
        for policy in ("mixed_float16", "mixed_bfloat16"):
            layer = Sampling(seed=0, dtype=policy)
            half = [keras.ops.zeros((2, 5), layer.compute_dtype)] * 2
            eager = layer(half)
            spec = layer.compute_output_spec([keras.KerasTensor((2, 5), layer.compute_dtype)] * 2)
            assert keras.backend.standardize_dtype(eager.dtype) == "float32"
            assert spec.dtype == "float32"
            symbolic = layer([keras.Input((5,), dtype=layer.compute_dtype)] * 2)
            assert symbolic.dtype == "float32"
