"""The reparameterisation layer."""

import keras
import numpy as np
from conftest import to_numpy

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


def test_config_round_trip_keeps_the_seed():
    layer = Sampling(seed=11, name="s")
    clone = Sampling.from_config(layer.get_config())
    assert clone.seed == 11 and clone.name == "s"
    restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(layer))
    assert isinstance(restored, Sampling) and restored.seed == 11
