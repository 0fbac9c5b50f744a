"""Metrics against independent references (NumPy, SciPy, scikit-image) and behaviour."""

import math
import pickle

import keras
import numpy as np
import pytest
import scipy.linalg
import scipy.ndimage
import scipy.special
import scipy.stats
from conftest import blob_images, tiny_vae, to_numpy

from keras_resvae import child_run, metrics
from keras_resvae.metrics import likelihood


def rng_images(shape, seed=0):
    return np.random.default_rng(seed).uniform(size=shape).astype("float32")


def blurred(images, sigma):
    return scipy.ndimage.gaussian_filter(images, sigma=(0, sigma, sigma, 0)).astype("float32")


@pytest.mark.parametrize("activation", ["sigmoid", "tanh"])
def test_mse_and_psnr_match_numpy_on_the_unit_scale(activation):
    x, y = rng_images((4, 8, 8, 3), 0), rng_images((4, 8, 8, 3), 1)
    mse = ((x - y) ** 2).mean(axis=(1, 2, 3))
    if activation == "tanh":
        x, y = 2 * x - 1, 2 * y - 1
    np.testing.assert_allclose(metrics.per_pixel_mse(x, y, activation), mse, rtol=1e-5)
    np.testing.assert_allclose(metrics.psnr(x, y, activation), 10 * np.log10(1 / mse), rtol=1e-5)
    assert float(metrics.psnr(x, x, activation)[0]) == pytest.approx(100.0)


def scipy_ssim(a, b, sigma=1.5, radius=5):
    """Wang et al.'s SSIM with SciPy's Gaussian filter, border of `radius` cropped."""

    def local(x):
        return scipy.ndimage.gaussian_filter(x, sigma, truncate=radius / sigma)

    values = []
    for x, y in zip(
        np.moveaxis(a.astype("float64"), -1, 0), np.moveaxis(b.astype("float64"), -1, 0)
    ):
        mx, my = local(x), local(y)
        vx, vy, cxy = local(x * x) - mx**2, local(y * y) - my**2, local(x * y) - mx * my
        c1, c2 = 0.01**2, 0.03**2
        s = ((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx**2 + my**2 + c1) * (vx + vy + c2))
        values.append(s[radius:-radius, radius:-radius].mean())
    return np.mean(values)


@pytest.mark.parametrize("shape", [(3, 32, 32, 3), (2, 28, 28, 1)])
def test_ssim_matches_a_scipy_reference(shape):
    x = blurred(rng_images(shape, 0), 1.0)
    y = np.clip(x + 0.1 * rng_images(shape, 1) - 0.05, 0, 1)
    ours = keras.ops.convert_to_numpy(metrics.ssim(x, y))
    np.testing.assert_allclose(ours, [scipy_ssim(a, b) for a, b in zip(x, y)], atol=1e-4)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(metrics.ssim(x, x)), 1.0, atol=1e-5)


def numpy_high_frequency_ratio(originals, reconstructions, cutoff):
    def spectrum(images):
        total = 0.0
        for image in images:
            for channel in np.moveaxis(image, -1, 0):
                total = total + np.abs(np.fft.fft2(channel - channel.mean())) ** 2
        return total

    height, width = originals.shape[1:3]
    radius = np.zeros((height, width))
    for i in range(height):
        for j in range(width):
            fy = (i if i <= height // 2 else i - height) / height
            fx = (j if j <= width // 2 else j - width) / width
            radius[i, j] = math.hypot(fy, fx) / 0.5
    high = radius > cutoff
    return spectrum(reconstructions)[high].sum() / spectrum(originals)[high].sum()


def test_blur_measure_matches_numpy_and_falls_with_blur():
    x = blob_images(8, (16, 16, 1)) * 0.5 + 0.5 * rng_images((8, 16, 16, 1))
    y = blurred(x, 1.0)
    assert metrics.high_frequency_ratio(x, y) == pytest.approx(
        numpy_high_frequency_ratio(x, y, 0.25), rel=1e-4
    )
    assert metrics.high_frequency_ratio(x, x) == pytest.approx(1.0, rel=1e-5)
    ratios = [metrics.high_frequency_ratio(x, blurred(x, s)) for s in (0.5, 1.0, 2.0)]
    assert 1.0 > ratios[0] > ratios[1] > ratios[2] > 0.0
    # The centred (tanh) range gives the same number.
    assert metrics.high_frequency_ratio(2 * x - 1, 2 * y - 1, "tanh") == pytest.approx(
        metrics.high_frequency_ratio(x, y), rel=1e-5
    )
    frequencies, power = metrics.radial_profile(metrics.power_spectrum(x))
    assert frequencies.shape == power.shape == (8,) and np.all(power >= 0)


def test_frechet_distance_matches_scipy_sqrtm():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(200, 6)), rng.normal(size=(200, 6)) @ rng.normal(size=(6, 6)) + 1
    (mean_a, cov_a), (mean_b, cov_b) = metrics.feature_statistics(a), metrics.feature_statistics(b)
    root = scipy.linalg.sqrtm(cov_a @ cov_b).real
    reference = np.sum((mean_a - mean_b) ** 2) + np.trace(cov_a + cov_b - 2 * root)
    assert metrics.frechet_distance(mean_a, cov_a, mean_b, cov_b) == pytest.approx(reference)
    assert metrics.frechet_distance(mean_a, cov_a, mean_a, cov_a) == pytest.approx(0, abs=1e-8)


def test_kernel_inception_distance_matches_the_unbiased_mmd():
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(20, 5)), rng.normal(size=(20, 5)) + 0.5

    def kernel(a, b):
        return (a @ b / 5 + 1) ** 3

    n = len(x)
    xx = sum(kernel(x[i], x[j]) for i in range(n) for j in range(n) if i != j) / (n * (n - 1))
    yy = sum(kernel(y[i], y[j]) for i in range(n) for j in range(n) if i != j) / (n * (n - 1))
    xy = sum(kernel(x[i], y[j]) for i in range(n) for j in range(n)) / n**2
    kid, std = metrics.kernel_inception_distance(x, y, num_subsets=3, subset_size=n)
    assert kid == pytest.approx(xx + yy - 2 * xy) and std == pytest.approx(0, abs=1e-9)


def test_log_densities_and_log_mean_exp_match_scipy():
    rng = np.random.default_rng(0)
    z, mean, log_var = (rng.normal(size=(5, 3)).astype("float32") for _ in range(3))
    reference = scipy.stats.norm.logpdf(z, mean, np.exp(0.5 * log_var)).sum(axis=1)
    ours = likelihood.diagonal_gaussian_log_density(z, mean, log_var)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(ours), reference, rtol=1e-5)
    weights = (rng.normal(size=(7, 4)) * 50).astype("float32")
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(metrics.log_mean_exp(weights)),
        scipy.special.logsumexp(weights, axis=0) - np.log(7),
        rtol=1e-5,
    )


def test_bits_per_dim_on_both_scales():
    assert metrics.bits_per_dim(784 * math.log(2), 784) == pytest.approx(1.0)
    assert metrics.bits_per_dim(784 * math.log(2), 784, eight_bit=True) == pytest.approx(9.0)


def test_latent_statistics_count_active_units_and_kl_per_dimension():
    rng = np.random.default_rng(0)
    z_mean = np.stack([rng.normal(size=100), np.full(100, 0.3), 0.05 * rng.normal(size=100)], 1)
    z_log_var = np.full_like(z_mean, -1.0)
    stats = metrics.latent_statistics(z_mean.astype("float32"), z_log_var.astype("float32"))
    assert stats["active_units"] == 1  # only the first unit varies by more than 0.01
    expected = 0.5 * (z_mean**2 + np.exp(-1.0) - 1 + 1.0).mean(axis=0)
    np.testing.assert_allclose(stats["kl_per_dim"], expected, rtol=1e-5)
    assert stats["kl"] == pytest.approx(expected.sum(), rel=1e-5)


@pytest.fixture(scope="module")
def trained():
    keras.utils.set_random_seed(0)
    vae = tiny_vae("basic")
    vae.compile(optimizer=keras.optimizers.Adam(3e-3))
    vae.initialize_output_bias(blob_images(128))
    vae.fit(blob_images(128), epochs=10, batch_size=32, verbose=0)
    return vae


def test_importance_weighting_tightens_the_bound(trained):
    images = blob_images(16, seed=5)
    elbo = np.mean([metrics.negative_elbo(trained, images, seed=s).mean() for s in range(8)])
    iwae = metrics.importance_weighted_nll(trained, images, num_samples=32, seed=0)
    assert iwae.shape == (16,) and np.all(np.isfinite(iwae))
    assert iwae.mean() <= elbo + 1e-3
    again = metrics.importance_weighted_nll(trained, images, num_samples=32, seed=0)
    np.testing.assert_array_equal(iwae, again)
    # A posterior the caller already has gives the same numbers as encoding again.
    posterior = trained.encode(images)
    given = metrics.importance_weighted_nll(trained, images, 32, seed=0, posterior=posterior)
    np.testing.assert_allclose(given, iwae, rtol=1e-6)
    np.testing.assert_allclose(
        metrics.negative_elbo(trained, images, seed=3, posterior=posterior),
        metrics.negative_elbo(trained, images, seed=3),
        rtol=1e-6,
    )
    with pytest.raises(ValueError, match="num_samples"):
        metrics.importance_weighted_nll(trained, images, num_samples=0)


def test_evaluate_vae_reports_every_metric(trained):
    images = blob_images(40, seed=7)
    result = metrics.evaluate_vae(trained, images, iwae_samples=4, batch_size=16)
    for name in ["mse", "psnr", "ssim", "blur", "negative_elbo", "bits_per_dim_8bit", "iwae_nll"]:
        assert np.isfinite(result[name]), name
    assert 0 < result["ssim"] <= 1 and 0 < result["mse"] < 0.1 and result["num_images"] == 40
    assert 0 <= result["active_units"] <= 4 and len(result["kl_per_dim"]) == 4
    reconstructions = keras.ops.convert_to_numpy(trained.reconstruct(images))
    assert result["mse"] == pytest.approx(float(((images - reconstructions) ** 2).mean()), 1e-4)
    assert result["bits_per_dim_8bit"] == pytest.approx(result["bits_per_dim"] + 8)


def test_fid_without_weights_offline_says_what_to_do(monkeypatch):
    def offline(*args, **kwargs):
        raise OSError("URL fetch failure: no network")

    monkeypatch.setattr(keras.utils, "get_file", offline)
    with pytest.raises(metrics.FeatureWeightsUnavailable, match="--inception-weights"):
        metrics.InceptionFeatures()


@pytest.mark.slow
def test_fid_from_a_local_weights_file(trained, tmp_path):
    inception = keras.applications.InceptionV3(
        include_top=False, weights=None, pooling="avg", input_shape=(299, 299, 3)
    )
    path = tmp_path / "inception.weights.h5"
    inception.save_weights(path)
    features = metrics.InceptionFeatures(weights=str(path), batch_size=4)
    result = metrics.evaluate_vae(trained, blob_images(6), iwae_samples=0, features=features)
    assert all(np.isfinite(result[k]) for k in ("fid_samples", "fid_reconstructions"))
    assert "iwae_nll" not in result
    # What a `resvae compare` run's own process rebuilds them from gives the same features.
    spec = pickle.loads(pickle.dumps(child_run._FeaturesSpec(str(path), 4)))
    images = blob_images(3)
    np.testing.assert_allclose(spec.build()(images), features(images), rtol=1e-5, atol=1e-6)


def numpy_importance_weighted_nll(vae, images, num_samples, seed):
    """The unchunked IWAE estimate, one sample at a time, log-weights summed by SciPy."""
    z_mean, z_log_var = (np.asarray(to_numpy(v), "float64") for v in vae.encode(images))
    mean_logits = vae.decoder(z_mean.astype("float32"))
    log_sigma = likelihood.posterior_mean_log_sigma(vae, images, mean_logits)
    generator = keras.random.SeedGenerator(seed)
    log_weights = []
    for _ in range(num_samples):
        noise = np.asarray(to_numpy(keras.random.normal(z_mean.shape, seed=generator)))
        z = z_mean + np.exp(0.5 * z_log_var) * noise
        decoded = to_numpy(vae.decode(z.astype("float32"))).astype("float64")
        log_px = scipy.stats.norm.logpdf(images, decoded, math.exp(log_sigma)).sum(axis=(1, 2, 3))
        log_pz = scipy.stats.norm.logpdf(z).sum(axis=1)
        log_qz = scipy.stats.norm.logpdf(z, z_mean, np.exp(0.5 * z_log_var)).sum(axis=1)
        log_weights.append(log_px + log_pz - log_qz)
    return -(scipy.special.logsumexp(np.stack(log_weights), axis=0) - math.log(num_samples))


@pytest.mark.parametrize("chunk_size", [1, 3, 8])
def test_chunked_iwae_equals_the_unchunked_estimate(trained, chunk_size):
    images = blob_images(12, seed=3)
    reference = numpy_importance_weighted_nll(trained, images, 8, seed=2)
    chunked = metrics.importance_weighted_nll(trained, images, 8, seed=2, chunk_size=chunk_size)
    np.testing.assert_allclose(chunked, reference, rtol=1e-5)


def test_evaluation_accumulated_batch_by_batch_equals_one_batch(trained):
    images = blob_images(40, seed=7)
    whole = metrics.evaluate_vae(trained, images, iwae_samples=0, batch_size=40, verbose=0)
    batched = metrics.evaluate_vae(trained, images, iwae_samples=0, batch_size=7, verbose=0)
    for name in ["mse", "psnr", "ssim", "blur", "kl", "active_units", "num_images"]:
        assert batched[name] == pytest.approx(whole[name], rel=1e-5), name
    np.testing.assert_allclose(batched["kl_per_dim"], whole["kl_per_dim"], rtol=1e-5)


def test_a_stream_of_uneven_batches_gives_the_numbers_of_the_array(trained):
    images = blob_images(30, seed=5)
    array = metrics.evaluate_vae(trained, images[:25], iwae_samples=3, batch_size=8, verbose=0)

    def stream():
        for start, stop in [(0, 5), (5, 18), (18, 19), (19, 30)]:
            yield images[start:stop]
        raise AssertionError("the stream was read past max_images")

    streamed = metrics.evaluate_vae(
        trained, stream(), iwae_samples=3, batch_size=8, verbose=0, max_images=25
    )
    assert streamed["num_images"] == 25
    for name in ["mse", "psnr", "ssim", "blur", "negative_elbo", "iwae_nll", "kl"]:
        assert streamed[name] == pytest.approx(array[name], rel=1e-6), name


def test_image_batches_cut_a_stream_into_equal_batches():
    chunks = [np.full((n, 2, 2, 1), n, "float32") for n in (3, 1, 6, 2)]
    sizes = [len(batch) for batch in metrics.image_batches(iter(chunks), 4)]
    assert sizes == [4, 4, 4]
    assert [len(b) for b in metrics.image_batches(iter(chunks), 5, max_images=7)] == [5, 2]
    tensor = keras.ops.ones((10, 2, 2, 1))
    assert [len(b) for b in metrics.image_batches(tensor, 4)] == [4, 4, 2]


def test_evaluating_an_empty_stream_is_refused(trained):
    with pytest.raises(ValueError, match="no images"):
        metrics.evaluate_vae(trained, iter([]), iwae_samples=0, verbose=0)


def test_running_latent_statistics_equal_the_two_pass_ones():
    rng = np.random.default_rng(0)
    z_mean = (rng.normal(size=(50, 3)) * [0.01, 1.0, 5.0] + 100.0).astype("float32")
    z_log_var = rng.normal(size=(50, 3)).astype("float32")
    running = metrics.RunningLatentStatistics()
    for start in range(0, 50, 13):
        running.add(z_mean[start : start + 13], z_log_var[start : start + 13])
    expected = metrics.latent_statistics(z_mean, z_log_var)
    result = running.result()
    np.testing.assert_allclose(result["activity"], z_mean.astype("float64").var(axis=0), 1e-6)
    np.testing.assert_allclose(result["kl_per_dim"], expected["kl_per_dim"], rtol=1e-10)
    assert result["active_units"] == 2
