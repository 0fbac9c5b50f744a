"""All the metrics of a trained VAE on a set of test images, in one pass."""

import math

import numpy as np
from keras import ops

from keras_resvae.metrics.blur import high_frequency_ratio
from keras_resvae.metrics.fid import (
    feature_statistics,
    frechet_distance,
    kernel_inception_distance,
)
from keras_resvae.metrics.image_quality import per_pixel_mse, psnr, ssim
from keras_resvae.metrics.latent import latent_statistics
from keras_resvae.metrics.likelihood import bits_per_dim, importance_weighted_nll, negative_elbo


def evaluate_vae(vae, images, iwae_samples=16, features=None, batch_size=64, seed=0):
    """Reconstruction quality, blur, likelihood bounds and latent use of a VAE.

    Reconstructions are deterministic (through the posterior mean); the ELBO
    and IWAE terms use seeded posterior samples, so the numbers repeat.

    Args:
        vae: a trained `keras_resvae.VAE`.
        images: `(n, H, W, C)` NumPy test images in the model's pixel range.
        iwae_samples: int. K for the importance-weighted NLL; 0 skips it.
        features: an `InceptionFeatures`, or None to skip FID/KID.
        batch_size: int. Images per forward pass.
        seed: int.

    Returns:
        A dict of floats: `mse`, `psnr` (dB), `ssim`, `blur` (high-frequency
        ratio, 1 = as sharp as the originals), `negative_elbo` (nats/image),
        `bits_per_dim` ([0, 1] density), `bits_per_dim_8bit`, `iwae_nll` and
        `iwae_bits_per_dim_8bit` (when K > 0), `kl`, `active_units`,
        `latent_dim`, `num_images`; `kl_per_dim` (a list); and, with
        `features`, `fid_samples`, `fid_reconstructions`, `kid_samples`.

    Example:
    >>> metrics = evaluate_vae(vae, x_test[:1000], iwae_samples=64)
    >>> metrics["blur"], metrics["ssim"]
    """
    images = np.asarray(images, "float32")
    vae.check_images(images[:1])
    activation = vae.output_activation
    parts = {name: [] for name in ("recon", "mse", "psnr", "ssim", "elbo", "iwae", "mu", "lv")}
    for index, start in enumerate(range(0, len(images), batch_size)):
        batch = images[start : start + batch_size]
        z_mean, z_log_var = vae.encode(batch)
        reconstructions = vae.decode(z_mean)
        parts["recon"].append(ops.convert_to_numpy(reconstructions))
        parts["mu"].append(ops.convert_to_numpy(z_mean))
        parts["lv"].append(ops.convert_to_numpy(z_log_var))
        for name, function in (("mse", per_pixel_mse), ("psnr", psnr), ("ssim", ssim)):
            parts[name].append(ops.convert_to_numpy(function(batch, reconstructions, activation)))
        posterior = (z_mean, z_log_var)
        parts["elbo"].append(negative_elbo(vae, batch, seed + index, posterior))
        if iwae_samples:
            parts["iwae"].append(
                importance_weighted_nll(vae, batch, iwae_samples, seed + index, posterior)
            )
    joined = {name: np.concatenate(values) for name, values in parts.items() if values}
    num_dims = math.prod(vae.image_shape)
    latent = latent_statistics(joined["mu"], joined["lv"])
    elbo = float(joined["elbo"].mean())
    metrics = {
        "mse": float(joined["mse"].mean()),
        "psnr": float(joined["psnr"].mean()),
        "ssim": float(joined["ssim"].mean()),
        "blur": high_frequency_ratio(images, joined["recon"], activation),
        "negative_elbo": elbo,
        "bits_per_dim": bits_per_dim(elbo, num_dims),
        "bits_per_dim_8bit": bits_per_dim(elbo, num_dims, eight_bit=True),
        "kl": latent["kl"],
        "active_units": latent["active_units"],
        "latent_dim": int(vae.latent_dim),
        "kl_per_dim": [float(value) for value in latent["kl_per_dim"]],
        "num_images": len(images),
    }
    if iwae_samples:
        iwae = float(joined["iwae"].mean())
        metrics["iwae_nll"] = iwae
        metrics["iwae_samples"] = int(iwae_samples)
        metrics["iwae_bits_per_dim_8bit"] = bits_per_dim(iwae, num_dims, eight_bit=True)
    if features is not None:
        metrics.update(_inception_metrics(vae, images, joined["recon"], features, seed))
    return metrics


def _inception_metrics(vae, images, reconstructions, features, seed):
    activation = vae.output_activation
    samples = np.concatenate(
        [
            ops.convert_to_numpy(vae.sample(min(256, len(images) - start), seed=seed + start))
            for start in range(0, len(images), 256)
        ]
    )
    real = features(images, activation)
    fake = features(samples, activation)
    recon = features(reconstructions, activation)
    real_stats = feature_statistics(real)
    kid, _ = kernel_inception_distance(real, fake, seed=seed)
    return {
        "fid_samples": frechet_distance(*real_stats, *feature_statistics(fake)),
        "fid_reconstructions": frechet_distance(*real_stats, *feature_statistics(recon)),
        "kid_samples": kid,
    }
