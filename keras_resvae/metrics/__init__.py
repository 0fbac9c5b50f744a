"""Metrics for VAEs: reconstruction quality, blur, likelihood bounds, latent use, FID/KID.

Every function states its formula and units. `evaluate_vae` computes them all.

Example:
>>> from keras_resvae.metrics import evaluate_vae
>>> evaluate_vae(vae, x_test[:1000])["blur"]
"""

from keras_resvae.metrics.blur import (
    high_frequency_ratio,
    power_spectrum,
    radial_frequency,
    radial_profile,
)
from keras_resvae.metrics.evaluate import evaluate_vae, image_batches
from keras_resvae.metrics.fid import (
    FeatureWeightsUnavailable,
    InceptionFeatures,
    feature_statistics,
    frechet_distance,
    kernel_inception_distance,
)
from keras_resvae.metrics.image_quality import gaussian_window, per_pixel_mse, psnr, ssim
from keras_resvae.metrics.latent import RunningLatentStatistics, latent_statistics
from keras_resvae.metrics.likelihood import (
    bits_per_dim,
    importance_weighted_nll,
    log_mean_exp,
    negative_elbo,
)

__all__ = [
    "FeatureWeightsUnavailable",
    "InceptionFeatures",
    "RunningLatentStatistics",
    "bits_per_dim",
    "evaluate_vae",
    "feature_statistics",
    "frechet_distance",
    "gaussian_window",
    "high_frequency_ratio",
    "image_batches",
    "importance_weighted_nll",
    "kernel_inception_distance",
    "latent_statistics",
    "log_mean_exp",
    "negative_elbo",
    "per_pixel_mse",
    "power_spectrum",
    "psnr",
    "radial_frequency",
    "radial_profile",
    "ssim",
]
