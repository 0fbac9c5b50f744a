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

LOG_2PI = math.log(2.0 * math.pi)


def bits_per_dim(nats_per_image, num_dims, eight_bit=False):
    """Nats per image -> bits per dimension, on the [0, 1] scale or the 8-bit scale (+8).

    Example:
    >>> bits_per_dim(1000.0, 28 * 28, eight_bit=True)
    9.84
    """
    value = losses.nats_to_bits_per_dim(nats_per_image, num_dims)
    return value + (8.0 if eight_bit else 0.0)


def _decoder_nll(vae, images, logits, log_sigma):
    if vae.likelihood == "gaussian_learned":
        # One sigma for all samples of the batch, so every sample is scored by
        # the same decoder density (the one at the posterior mean).
        return losses.gaussian_nll(images, logits, vae.output_activation, math.exp(log_sigma))
    return losses.reconstruction_nll(
        vae.likelihood, images, logits, vae.output_activation, vae.sigma
    )


def _posterior_mean_log_sigma(vae, images, z_mean):
    if vae.likelihood != "gaussian_learned":
        return None
    logits = vae.decoder(z_mean, training=False)
    # Through NumPy: on torch, float() of a tensor that tracks gradients warns.
    return float(
        ops.convert_to_numpy(losses.optimal_log_sigma(images, logits, vae.output_activation))
    )


def diagonal_gaussian_log_density(z, mean, log_var):
    """log N(z; mean, diag(exp(log_var))) summed over the last axis, in nats."""
    z, mean, log_var = (ops.convert_to_tensor(value, "float32") for value in (z, mean, log_var))
    return -0.5 * ops.sum(LOG_2PI + log_var + ops.square(z - mean) / ops.exp(log_var), axis=-1)


def log_mean_exp(log_weights, axis=0):
    """log(mean(exp(w))) along `axis`, computed stably."""
    log_weights = ops.convert_to_tensor(log_weights, "float32")
    peak = ops.max(log_weights, axis=axis, keepdims=True)
    mean = ops.mean(ops.exp(log_weights - peak), axis=axis)
    return ops.squeeze(peak, axis=axis) + ops.log(mean)


def _posterior(vae, images, posterior):
    """`(z_mean, z_log_var)` of `images`: encoded here, or the caller's when given."""
    return vae.encode(images) if posterior is None else posterior


def negative_elbo(vae, images, seed=0, posterior=None):
    """-ELBO per image with one posterior sample: -log p(x|z) + KL(q(z|x) || p(z)), nats.

    Args:
        vae: a `keras_resvae.VAE`.
        images: `(batch, H, W, C)` in the model's pixel range.
        seed: int. The same seed gives the same value.
        posterior: optional `(z_mean, z_log_var)` of `images` from `vae.encode`,
            to save encoding them again.

    Returns:
        `(batch,)` float32 NumPy array.

    Example:
    >>> negative_elbo(vae, x_test[:64]).mean()
    """
    images = vae.check_images(images)
    z_mean, z_log_var = _posterior(vae, images, posterior)
    z = z_mean + ops.exp(0.5 * z_log_var) * random.normal(ops.shape(z_mean), seed=seed)
    log_sigma = _posterior_mean_log_sigma(vae, images, z_mean)
    reconstruction = _decoder_nll(vae, images, vae.decoder(z, training=False), log_sigma)
    return ops.convert_to_numpy(reconstruction + losses.kl_divergence(z_mean, z_log_var))


def importance_weighted_nll(vae, images, num_samples=16, seed=0, posterior=None):
    """Importance-weighted estimate of -log p(x) with K posterior samples, nats per image.

        -log p(x) ~= -log (1/K) sum_k p(x|z_k) p(z_k) / q(z_k|x),  z_k ~ q(z|x)

    An upper bound on the true NLL that tightens as K grows; K = 1 is the
    one-sample negative ELBO.

    Reference: Burda, Grosse, Salakhutdinov (2016), "Importance Weighted
    Autoencoders", ICLR.

    Args:
        vae: a `keras_resvae.VAE`.
        images: `(batch, H, W, C)` in the model's pixel range.
        num_samples: int >= 1. K.
        seed: int. The same seed gives the same estimate.
        posterior: optional `(z_mean, z_log_var)` of `images` from `vae.encode`.

    Returns:
        `(batch,)` float32 NumPy array.

    Example:
    >>> importance_weighted_nll(vae, x_test[:64], num_samples=64).mean()
    """
    if int(num_samples) < 1:
        raise ValueError(f"`num_samples` must be at least 1. Received: {num_samples!r}")
    images = vae.check_images(images)
    z_mean, z_log_var = _posterior(vae, images, posterior)
    log_sigma = _posterior_mean_log_sigma(vae, images, z_mean)
    generator = random.SeedGenerator(seed)
    log_weights = []
    for _ in range(int(num_samples)):
        noise = random.normal(ops.shape(z_mean), seed=generator)
        z = z_mean + ops.exp(0.5 * z_log_var) * noise
        log_px_z = -_decoder_nll(vae, images, vae.decoder(z, training=False), log_sigma)
        log_pz = diagonal_gaussian_log_density(z, ops.zeros_like(z), ops.zeros_like(z))
        log_qz = diagonal_gaussian_log_density(z, z_mean, z_log_var)
        log_weights.append(log_px_z + log_pz - log_qz)
    return -np.asarray(ops.convert_to_numpy(log_mean_exp(ops.stack(log_weights), axis=0)))
