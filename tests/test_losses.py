"""The ELBO terms against NumPy references."""

import math

import numpy as np
import pytest
from conftest import to_numpy

from keras_resvae import losses

RNG = np.random.default_rng(0)
IMAGES = RNG.uniform(0, 1, size=(5, 6, 7, 3)).astype("float32")
LOGITS = RNG.normal(0, 2, size=(5, 6, 7, 3)).astype("float32")


def np_sigmoid(x):
    return 1 / (1 + np.exp(-x))


def np_gaussian_nll(t, m, sigma):
    log_pdf = -0.5 * ((t - m) / sigma) ** 2 - np.log(sigma) - 0.5 * np.log(2 * np.pi)
    return -log_pdf.reshape(len(t), -1).sum(axis=1)


def test_kl_matches_numpy():
    mean = RNG.normal(size=(4, 8)).astype("float32")
    log_var = RNG.normal(size=(4, 8)).astype("float32")
    expected = 0.5 * np.sum(mean**2 + np.exp(log_var) - 1 - log_var, axis=1)
    np.testing.assert_allclose(to_numpy(losses.kl_divergence(mean, log_var)), expected, rtol=1e-5)
    per_dim = to_numpy(losses.kl_per_dimension(mean, log_var))
    np.testing.assert_allclose(per_dim.sum(axis=1), expected, rtol=1e-5)


def test_gaussian_kl_matches_numpy_and_the_standard_normal_case():
    q_mean, q_log_var, p_mean, p_log_var = RNG.normal(size=(4, 2, 3, 3, 5)).astype("float32")
    expected = 0.5 * (
        p_log_var - q_log_var + (np.exp(q_log_var) + (q_mean - p_mean) ** 2) / np.exp(p_log_var) - 1
    )
    got = to_numpy(losses.gaussian_kl(q_mean, q_log_var, p_mean, p_log_var))
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)
    # A group's KL sums every position and channel: nats per image.
    per_image = to_numpy(losses.group_kl(q_mean, q_log_var, p_mean, p_log_var))
    np.testing.assert_allclose(per_image, expected.reshape(2, -1).sum(axis=1), rtol=1e-5)
    zeros = np.zeros_like(q_mean)
    np.testing.assert_allclose(
        to_numpy(losses.gaussian_kl(q_mean, q_log_var, zeros, zeros)),
        to_numpy(losses.kl_per_dimension(q_mean, q_log_var)),
        rtol=1e-5,
    )


def test_kl_is_zero_at_the_prior():
    zeros = np.zeros((3, 5), "float32")
    np.testing.assert_allclose(to_numpy(losses.kl_divergence(zeros, zeros)), 0.0, atol=1e-7)


def test_bernoulli_matches_cross_entropy():
    p = np_sigmoid(LOGITS.astype("float64"))
    expected = -(IMAGES * np.log(p) + (1 - IMAGES) * np.log(1 - p)).reshape(5, -1).sum(1)
    got = to_numpy(losses.bernoulli_nll(IMAGES, LOGITS, "sigmoid"))
    np.testing.assert_allclose(got, expected, rtol=1e-4)


def test_bernoulli_is_stable_for_saturated_logits():
    images = np.array([[[[0.0]], [[1.0]]]], "float32").reshape(1, 2, 1, 1)
    logits = np.array([[[[200.0]], [[-200.0]]]], "float32").reshape(1, 2, 1, 1)
    np.testing.assert_allclose(to_numpy(losses.bernoulli_nll(images, logits)), [400.0], rtol=1e-6)


@pytest.mark.parametrize("likelihood", ["bernoulli", "gaussian", "gaussian_learned"])
def test_tanh_model_on_centred_data_equals_sigmoid_model(likelihood):
    # tanh(a) = 2 sigmoid(2a) - 1: a tanh model with logits a/2 on data 2x-1 is the
    # same distribution over [0, 1] pixels as a sigmoid model with logits a on x.
    sigmoid = losses.reconstruction_nll(likelihood, IMAGES, LOGITS, "sigmoid", 0.2)
    tanh = losses.reconstruction_nll(likelihood, 2 * IMAGES - 1, LOGITS / 2, "tanh", 0.2)
    np.testing.assert_allclose(to_numpy(tanh), to_numpy(sigmoid), rtol=1e-5)


@pytest.mark.parametrize("sigma", [0.05, 0.3, 1.0])
def test_gaussian_is_a_true_log_density(sigma):
    expected = np_gaussian_nll(IMAGES, np_sigmoid(LOGITS), sigma)
    got = to_numpy(losses.gaussian_nll(IMAGES, LOGITS, "sigmoid", sigma=sigma))
    np.testing.assert_allclose(got, expected, rtol=1e-5)


def test_gaussian_learned_uses_the_batch_optimum():
    mean = np_sigmoid(LOGITS)
    sigma_star = math.sqrt(np.mean((IMAGES - mean) ** 2))
    np.testing.assert_allclose(
        math.exp(float(to_numpy(losses.optimal_log_sigma(IMAGES, LOGITS)))), sigma_star, rtol=1e-5
    )
    got = to_numpy(losses.gaussian_learned_nll(IMAGES, LOGITS))
    np.testing.assert_allclose(got, np_gaussian_nll(IMAGES, mean, sigma_star), rtol=1e-5)
    # sigma* maximises the batch likelihood among shared sigmas.
    for factor in (0.9, 0.99, 1.01, 1.1):
        assert got.sum() < np_gaussian_nll(IMAGES, mean, sigma_star * factor).sum()
    # At the optimum the NLL per image is D/2 * (1 + log(2 pi sigma*^2)).
    dims = IMAGES[0].size
    np.testing.assert_allclose(
        got.sum(), len(IMAGES) * dims / 2 * (1 + math.log(2 * math.pi * sigma_star**2)), rtol=1e-5
    )


def test_gaussian_learned_is_bounded_for_perfect_reconstructions():
    logits = np.full((2, 4, 4, 1), 3.0, "float32")
    images = np_sigmoid(logits).astype("float32")
    value = to_numpy(losses.gaussian_learned_nll(images, logits))
    assert np.all(np.isfinite(value))
    # sigma is floored at exp(-6): the NLL cannot go below D * (-6 + log(2 pi)/2).
    assert np.all(value >= 16 * (-6 + 0.5 * math.log(2 * math.pi)) - 1e-3)


def test_pixel_mse_is_on_the_unit_scale_for_both_ranges():
    expected = ((IMAGES - np_sigmoid(LOGITS)) ** 2).reshape(5, -1).mean(1)
    np.testing.assert_allclose(to_numpy(losses.pixel_mse(IMAGES, LOGITS)), expected, rtol=1e-5)
    centred = to_numpy(losses.pixel_mse(2 * IMAGES - 1, LOGITS / 2, "tanh"))
    np.testing.assert_allclose(centred, expected, rtol=1e-5)


def test_range_maps_are_inverse():
    x = np.linspace(-1, 1, 7).astype("float32")
    unit = losses.to_unit_interval(x, "tanh")
    np.testing.assert_allclose(to_numpy(unit), (x + 1) / 2, atol=1e-7)
    np.testing.assert_allclose(to_numpy(losses.from_unit_interval(unit, "tanh")), x, atol=1e-6)


def test_kl_warmup_is_linear_then_flat():
    weights = [float(to_numpy(losses.kl_warmup_weight(s, 10))) for s in (0, 5, 10, 50)]
    assert weights == [0.0, 0.5, 1.0, 1.0]
    assert float(to_numpy(losses.kl_warmup_weight(3, 0))) == 1.0


def test_bits_per_dim():
    assert losses.nats_to_bits_per_dim(math.log(2) * 3072, 3072) == pytest.approx(1.0)


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: losses.reconstruction_nll("laplace", IMAGES, LOGITS), "bernoulli"),
        (lambda: losses.activate(LOGITS, "relu"), "sigmoid"),
        (lambda: losses.gaussian_nll(IMAGES, LOGITS, sigma=0.0), "positive"),
    ],
)
def test_bad_arguments_name_the_allowed_values(call, message):
    with pytest.raises(ValueError, match=message):
        call()


def test_weighted_mean_is_keras_sum_over_batch_size():
    values = np.array([1.0, 2.0, 3.0, 4.0], "float32")
    weights = np.array([1.0, 0.0, 2.0, 0.5], "float32")
    np.testing.assert_allclose(to_numpy(losses.weighted_mean(values)), 2.5, rtol=1e-6)
    expected = (1 * 1 + 0 * 2 + 2 * 3 + 0.5 * 4) / 4  # divided by the batch size
    np.testing.assert_allclose(to_numpy(losses.weighted_mean(values, weights)), expected, rtol=1e-6)


def test_learned_sigma_is_the_weighted_root_mse():
    weights = np.array([1.0, 0.0, 3.0, 0.5, 2.0], "float32")
    mean = np_sigmoid(LOGITS)
    per_image = ((IMAGES - mean) ** 2).reshape(5, -1).mean(axis=1)
    expected = 0.5 * np.log((weights * per_image).sum() / weights.sum())
    got = losses.optimal_log_sigma(IMAGES, LOGITS, "sigmoid", sample_weight=weights)
    np.testing.assert_allclose(to_numpy(got), expected, rtol=1e-5)
    # Weight 0 for an image is the same as leaving it out of the batch.
    kept = weights > 0
    nll = losses.gaussian_learned_nll(IMAGES, LOGITS, sample_weight=weights)
    alone = losses.gaussian_learned_nll(IMAGES[kept], LOGITS[kept], sample_weight=weights[kept])
    np.testing.assert_allclose(to_numpy(nll)[kept], to_numpy(alone), rtol=1e-5)
    # All-zero weights reach the sigma floor instead of 0/0.
    zero = losses.optimal_log_sigma(IMAGES, LOGITS, sample_weight=np.zeros(5, "float32"))
    assert to_numpy(zero) == -6.0
