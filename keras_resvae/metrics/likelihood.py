"""Likelihood bounds: the negative ELBO and an importance-weighted NLL estimate.

Units: nats per image, and bits per dimension. A VAE's Gaussian likelihood is
a density on the [0, 1] pixel scale, whose bits/dim can be negative. For 8-bit
data the standard figure (Theis et al. 2016) treats a pixel value k in
{0..255} as the interval [k/256, (k+1)/256) (uniform dequantisation), whose
probability is at least the density times 1/256 per dimension to first order,
so

    bits/dim (8-bit) = nats per image / (D ln 2) + log2(256) = bits/dim ([0, 1]) + 8.

Our models are trained without dequantisation noise, so the 8-bit figure is an
optimistic estimate; it is reported because it is the scale papers use. For
the Bernoulli likelihood these are cross-entropies, not likelihoods of 8-bit data.
"""

import math

import numpy as np
from keras import ops, random

from keras_resvae import losses
from keras_resvae.inference import inference
from keras_resvae.inputs import check_count
from keras_resvae.memory import activation_bytes_per_image

LOG_2PI = math.log(2.0 * math.pi)


def bits_per_dim(nats_per_image, num_dims, eight_bit=False):
    """Nats per image -> bits per dimension, on the [0, 1] scale or the 8-bit scale (+8).

    Example:
    >>> bits_per_dim(1000.0, 28 * 28, eight_bit=True)
    9.84
    """
    value = losses.nats_to_bits_per_dim(nats_per_image, num_dims)
    return value + (8.0 if eight_bit else 0.0)


# The decoder passes of one IWAE chunk may hold about this much activation memory.
IWAE_MEMORY_BUDGET = 256 * 2**20


def _decoder_nll(vae, images, logits, log_sigma):
    if vae.likelihood == "gaussian_learned":
        # One sigma for all samples of the batch, so every sample is scored by
        # the same decoder density (the one at the posterior mean).
        return losses.gaussian_nll(images, logits, vae.output_activation, math.exp(log_sigma))
    return losses.reconstruction_nll(
        vae.likelihood, images, logits, vae.output_activation, vae.sigma
    )


def posterior_mean_log_sigma(vae, images, mean_logits):
    """The learned sigma-VAE's log sigma for a batch, or None for other likelihoods.

    The decoder density at the posterior mean fixes sigma for every posterior
    sample of the batch, so the ELBO and IWAE terms score samples alike.

    Args:
        vae: a `keras_resvae.VAE`.
        images: the batch, in the model's pixel range.
        mean_logits: `vae.decoder(z_mean)` for the batch.
    """
    if vae.likelihood != "gaussian_learned":
        return None
    log_sigma = losses.optimal_log_sigma(images, mean_logits, vae.output_activation)
    return float(ops.convert_to_numpy(log_sigma))


def diagonal_gaussian_log_density(z, mean, log_var):
    """log N(z; mean, diag(exp(log_var))) summed over the last axis, in nats."""
    return ops.sum(losses.gaussian_log_density(z, mean, log_var), axis=-1)


def log_mean_exp(log_weights, axis=0):
    """log(mean(exp(w))) along `axis`, computed stably."""
    log_weights = ops.convert_to_tensor(log_weights, "float32")
    peak = ops.max(log_weights, axis=axis, keepdims=True)
    mean = ops.mean(ops.exp(log_weights - peak), axis=axis)
    return ops.squeeze(peak, axis=axis) + ops.log(mean)


def _posterior(vae, images, posterior):
    """`(z_mean, z_log_var)` of `images`: encoded here, or the caller's when given."""
    return vae.encode(images) if posterior is None else posterior


def _log_sigma(vae, images, z_mean, log_sigma):
    if log_sigma is not None or vae.likelihood != "gaussian_learned":
        return log_sigma
    return posterior_mean_log_sigma(vae, images, vae.decoder(z_mean, training=False))


@inference
def negative_elbo(vae, images, seed=0, posterior=None, log_sigma=None):
    """-ELBO per image with one posterior sample: -log p(x|z) + KL(q(z|x) || p(z)), nats.

    For a `HierarchicalVAE` the sample is of its own posterior, each latent
    group drawn given the sampled groups above it, and the KL is the sum of the
    groups' KLs: the bound it trains on.

    Args:
        vae: a `keras_resvae.VAE`.
        images: `(batch, H, W, C)` in the model's pixel range.
        seed: int. The same seed gives the same value.
        posterior: optional `(z_mean, z_log_var)` of `images` from `vae.encode`,
            to save encoding them again.
        log_sigma: optional `posterior_mean_log_sigma` of the batch, to save
            decoding the posterior mean again (learned-sigma likelihood only).

    Returns:
        `(batch,)` float32 NumPy array.

    Example:
    >>> negative_elbo(vae, x_test[:64]).mean()
    """
    images = vae.check_images(images)
    z_mean, z_log_var = _posterior(vae, images, posterior)
    log_sigma = _log_sigma(vae, images, z_mean, log_sigma)
    if vae.hierarchical:
        logits, group_kls, _ = vae.sample_posterior(images, seed)
        kl = sum(group_kls[1:], group_kls[0])
    else:
        z = z_mean + ops.exp(0.5 * z_log_var) * random.normal(ops.shape(z_mean), seed=seed)
        logits = vae.decoder(z, training=False)
        kl = losses.kl_divergence(z_mean, z_log_var)
    reconstruction = _decoder_nll(vae, images, logits, log_sigma)
    return ops.convert_to_numpy(reconstruction + kl)


def iwae_chunk_size(vae, batch_size, memory_budget=IWAE_MEMORY_BUDGET):
    """Posterior samples per decoder pass so that one pass stays within `memory_budget` bytes.

    Example:
    >>> iwae_chunk_size(vae, batch_size=64)  # 1 for ResNet-18 at width 1, 32x32x3
    """
    per_pass = activation_bytes_per_image(vae.decoder) * max(int(batch_size), 1)
    return max(1, int(memory_budget // max(per_pass, 1)))


@inference
def importance_weighted_nll(
    vae, images, num_samples=16, seed=0, posterior=None, log_sigma=None, chunk_size=None
):
    """Importance-weighted estimate of -log p(x) with K posterior samples, nats per image.

        -log p(x) ~= -log (1/K) sum_k p(x|z_k) p(z_k) / q(z_k|x),  z_k ~ q(z|x)

    An upper bound on the true NLL that tightens as K grows; K = 1 is the
    one-sample negative ELBO. The K samples are decoded `chunk_size` at a time
    and their weights combined as they come (a running log-sum-exp), so memory
    follows the chunk, not K; the noise is drawn sample by sample in the same
    order whatever the chunk, so every chunk size gives the same estimate.
    A `HierarchicalVAE` proposes from its own posterior, the groups drawn in
    sequence, one top-down pass per sample (`chunk_size` 1).

    Reference: Burda, Grosse, Salakhutdinov (2016), "Importance Weighted
    Autoencoders", ICLR.

    Args:
        vae: a `keras_resvae.VAE`.
        images: `(batch, H, W, C)` in the model's pixel range.
        num_samples: int >= 1. K.
        seed: int. The same seed gives the same estimate.
        posterior: optional `(z_mean, z_log_var)` of `images` from `vae.encode`.
        log_sigma: optional `posterior_mean_log_sigma` of the batch.
        chunk_size: int >= 1, samples per decoder pass; None sizes it to
            `IWAE_MEMORY_BUDGET` with `iwae_chunk_size`.

    Returns:
        `(batch,)` float32 NumPy array.

    Example:
    >>> importance_weighted_nll(vae, x_test[:64], num_samples=64).mean()
    """
    num_samples = check_count(num_samples, "num_samples")
    images = vae.check_images(images)
    z_mean, z_log_var = _posterior(vae, images, posterior)
    batch = int(ops.shape(z_mean)[0])
    if vae.hierarchical:
        return _hierarchical_iwae(vae, images, num_samples, seed, z_mean, log_sigma, chunk_size)
    if chunk_size is None:
        chunk_size = iwae_chunk_size(vae, batch)
    chunk_size = min(check_count(chunk_size, "chunk_size"), num_samples)
    log_sigma = _log_sigma(vae, images, z_mean, log_sigma)
    generator = random.SeedGenerator(seed)
    running = _RunningLogSumExp()
    for start in range(0, num_samples, chunk_size):
        count = min(chunk_size, num_samples - start)
        noise = ops.concatenate(
            [random.normal(ops.shape(z_mean), seed=generator) for _ in range(count)]
        )
        mean, log_var = ops.tile(z_mean, (count, 1)), ops.tile(z_log_var, (count, 1))
        z = mean + ops.exp(0.5 * log_var) * noise
        tiled = ops.tile(images, (count, 1, 1, 1))
        log_px_z = -_decoder_nll(vae, tiled, vae.decoder(z, training=False), log_sigma)
        log_pz = diagonal_gaussian_log_density(z, ops.zeros_like(z), ops.zeros_like(z))
        log_qz = diagonal_gaussian_log_density(z, mean, log_var)
        log_weights = ops.convert_to_numpy(log_px_z + log_pz - log_qz)
        running.add(np.reshape(log_weights, (count, batch)))
    return (-(running.result() - math.log(num_samples))).astype("float32")


def _hierarchical_iwae(vae, images, num_samples, seed, z_mean, log_sigma, chunk_size):
    """The IWAE estimate with a hierarchical VAE's own posterior as the proposal.

    Its groups are drawn in sequence, each given the sampled ones above, so
    each sample is one top-down pass over the batch (memory as one forward
    pass); `chunk_size` can only be 1.
    """
    if chunk_size not in (None, 1):
        raise ValueError(
            "A hierarchical VAE draws each importance sample in its own top-down pass, so "
            f"`chunk_size` must be 1 or None. Received: chunk_size={chunk_size!r}"
        )
    log_sigma = _log_sigma(vae, images, z_mean, log_sigma)
    generator = random.SeedGenerator(seed)
    running = _RunningLogSumExp()
    for _ in range(num_samples):
        logits, _, log_ratio = vae.sample_posterior(images, generator)
        log_weights = -_decoder_nll(vae, images, logits, log_sigma) + log_ratio
        running.add(ops.convert_to_numpy(log_weights)[None])
    return (-(running.result() - math.log(num_samples))).astype("float32")


class _RunningLogSumExp:
    """log(sum(exp(w))) over rows of weights added a block at a time, in float64."""

    def __init__(self):
        self.peak = None
        self.total = None

    def add(self, block):
        block = np.asarray(block, "float64")
        peak = block.max(axis=0)
        if self.peak is None:
            self.peak, self.total = peak, np.zeros_like(peak)
        peak = np.maximum(self.peak, peak)
        self.total = self.total * np.exp(self.peak - peak) + np.exp(block - peak).sum(axis=0)
        self.peak = peak

    def result(self):
        return self.peak + np.log(self.total)
