"""All the metrics of a trained VAE on a set of test images, in one pass."""

import math

import keras
import numpy as np
from keras import ops

from keras_resvae import losses
from keras_resvae.cycles import collecting_cycles
from keras_resvae.inference import inference
from keras_resvae.inputs import check_count
from keras_resvae.metrics.blur import power_spectrum, spectra_high_frequency_ratio
from keras_resvae.metrics.fid import (
    feature_statistics,
    frechet_distance,
    kernel_inception_distance,
)
from keras_resvae.metrics.image_quality import per_pixel_mse, psnr, ssim
from keras_resvae.metrics.latent import RunningLatentStatistics
from keras_resvae.metrics.likelihood import (
    bits_per_dim,
    importance_weighted_nll,
    iwae_chunk_size,
    negative_elbo,
    posterior_mean_log_sigma,
)


@inference
def evaluate_vae(
    vae,
    images,
    iwae_samples=16,
    features=None,
    batch_size=64,
    seed=0,
    verbose="auto",
    max_images=None,
):
    """Reconstruction quality, blur, likelihood bounds and latent use of a VAE.

    Reconstructions are deterministic (through the posterior mean); the ELBO
    and IWAE terms use seeded posterior samples, so the numbers repeat. The
    images are evaluated a batch at a time and every metric is accumulated as
    it goes (sums, power spectra, running latent moments), without gradients,
    so memory follows `batch_size`, not the number of images or K. Images may
    also come as a stream of batches (a `tf.data.Dataset`, a generator), which
    is never held whole; the stream is re-cut into `batch_size` batches, so the
    numbers are the same as for the array of the same images.

    Args:
        vae: a trained `keras_resvae.VAE`.
        images: `(n, H, W, C)` NumPy test images in the model's pixel range,
            or an iterable of such batches (NumPy arrays or tensors).
        iwae_samples: int. K for the importance-weighted NLL; 0 skips it.
        features: an `InceptionFeatures`, or None to skip FID/KID.
        batch_size: int. Images per forward pass.
        seed: int.
        verbose: `"auto"`, 0 or 1. 1 (and "auto") shows a progress bar with
            an ETA, as Keras's `evaluate` does.
        max_images: int or None. Evaluate at most this many images; for a
            stream it is also the progress bar's length (else it has no ETA).

    Returns:
        A dict of floats: `mse`, `psnr` (dB), `ssim`, `blur` (high-frequency
        ratio, 1 = as sharp as the originals), `negative_elbo` (nats/image),
        `bits_per_dim` ([0, 1] density), `bits_per_dim_8bit`, `iwae_nll` and
        `iwae_bits_per_dim_8bit` (when K > 0), `kl`, `active_units`,
        `latent_dim`, `num_images`; `kl_per_dim` (a list); for a hierarchical
        VAE, `active_units_per_group`, `kl_per_group` and `group_sizes` (lists,
        smallest resolution first); and, with `features`, `fid_samples`,
        `fid_reconstructions`, `kid_samples`.

    Example:
    >>> metrics = evaluate_vae(vae, x_test[:1000], iwae_samples=64)
    >>> metrics["blur"], metrics["ssim"]
    >>> metrics = evaluate_vae(vae, data.test, max_images=10_000)  # streamed
    """
    if max_images is not None:
        max_images = check_count(max_images, "max_images")
    if _is_array(images):
        images = np.asarray(ops.convert_to_numpy(images) if hasattr(images, "shape") else images)
        images = images[:max_images]
        total = len(images)
    else:
        total = max_images
    activation = vae.output_activation
    batch_size = int(batch_size)
    # A hierarchical VAE's samples are one top-down pass each (see importance_weighted_nll).
    chunk_size = iwae_chunk_size(vae, batch_size) if iwae_samples and not vae.hierarchical else None
    sums = dict.fromkeys(("mse", "psnr", "ssim", "elbo", "iwae"), 0.0)
    spectra = {"original": 0.0, "reconstructed": 0.0}
    running_latent = RunningLatentStatistics()
    kept = {"images": [], "reconstructions": []}  # only for FID, which needs the images
    progress = keras.utils.Progbar(
        total, verbose=1 if verbose == "auto" else int(verbose), unit_name="image"
    )
    count = 0
    with collecting_cycles() as collect:
        for index, batch in enumerate(image_batches(images, batch_size, max_images)):
            z_mean, z_log_var = vae.encode(batch)
            # One decoder pass at the posterior mean serves the reconstructions and
            # the learned sigma of both likelihood bounds.
            mean_logits = vae.decoder(z_mean, training=False)
            reconstructions = losses.activate(mean_logits, activation)
            log_sigma = posterior_mean_log_sigma(vae, batch, mean_logits)
            for name, function in (("mse", per_pixel_mse), ("psnr", psnr), ("ssim", ssim)):
                sums[name] += _total(function(batch, reconstructions, activation))
            spectra["original"] = spectra["original"] + power_spectrum(batch, activation)
            spectra["reconstructed"] = spectra["reconstructed"] + power_spectrum(
                reconstructions, activation
            )
            running_latent.add(z_mean, z_log_var)
            posterior = (z_mean, z_log_var)
            sums["elbo"] += _total(negative_elbo(vae, batch, seed + index, posterior, log_sigma))
            if iwae_samples:
                sums["iwae"] += _total(
                    importance_weighted_nll(
                        vae, batch, iwae_samples, seed + index, posterior, log_sigma, chunk_size
                    )
                )
            if features is not None:
                kept["images"].append(batch)
                kept["reconstructions"].append(ops.convert_to_numpy(reconstructions))
            count += len(batch)
            progress.update(count)
            # What the batch left in reference cycles (PyTorch) is freed now, not
            # at a later full collection, so memory does not grow batch by batch.
            collect()
    if count == 0:
        raise ValueError("evaluate_vae: no images to evaluate (the test set is empty).")
    if total is None or count < total:  # a stream of unknown or shorter length
        progress.update(count, finalize=True)
    num_dims = math.prod(vae.image_shape)
    latent = running_latent.result()
    elbo = sums["elbo"] / count
    metrics = {
        "mse": sums["mse"] / count,
        "psnr": sums["psnr"] / count,
        "ssim": sums["ssim"] / count,
        "blur": spectra_high_frequency_ratio(spectra["original"], spectra["reconstructed"]),
        "negative_elbo": elbo,
        "bits_per_dim": bits_per_dim(elbo, num_dims),
        "bits_per_dim_8bit": bits_per_dim(elbo, num_dims, eight_bit=True),
        "kl": latent["kl"],
        "active_units": latent["active_units"],
        "latent_dim": int(vae.latent_dim),
        "kl_per_dim": [float(value) for value in latent["kl_per_dim"]],
        "num_images": count,
    }
    if vae.hierarchical:
        metrics.update(_per_group(latent, running_latent.threshold, vae.kl_group_sizes))
    if iwae_samples:
        iwae = sums["iwae"] / count
        metrics["iwae_nll"] = iwae
        metrics["iwae_samples"] = int(iwae_samples)
        metrics["iwae_bits_per_dim_8bit"] = bits_per_dim(iwae, num_dims, eight_bit=True)
    if features is not None:
        originals, reconstructions = (np.concatenate(kept[key]) for key in kept)
        metrics.update(_inception_metrics(vae, originals, reconstructions, features, seed))
    return metrics


def _per_group(latent, threshold, group_sizes):
    """Active units and KL (nats per image, along the posterior-mean path) of each latent group."""
    bounds = np.cumsum([0, *group_sizes])
    groups = [slice(start, stop) for start, stop in zip(bounds[:-1], bounds[1:])]
    active = latent["activity"] > threshold
    return {
        "active_units_per_group": [int(active[group].sum()) for group in groups],
        "kl_per_group": [float(latent["kl_per_dim"][group].sum()) for group in groups],
        "group_sizes": [int(size) for size in group_sizes],
    }


def image_batches(images, batch_size, max_images=None):
    """Float32 NumPy batches of exactly `batch_size` images (the last may be short).

    `images` is an array (or tensor, or list of images) or an iterable of
    batches of any sizes, such as a `tf.data.Dataset`; a stream is read only
    as batches are needed, and no further than `max_images` images.

    Example:
    >>> [len(b) for b in image_batches(np.zeros((10, 8, 8, 1)), 4)]
    [4, 4, 2]
    """
    chunks = [images] if _is_array(images) else images
    pending, pending_count, emitted = [], 0, 0
    for chunk in chunks:
        chunk = np.asarray(ops.convert_to_numpy(chunk), "float32")
        if max_images is not None:
            chunk = chunk[: max_images - emitted - pending_count]
        pending.append(chunk)
        pending_count += len(chunk)
        if pending_count >= batch_size:
            joined = pending[0] if len(pending) == 1 else np.concatenate(pending)
            cut = pending_count - pending_count % batch_size
            for start in range(0, cut, batch_size):
                yield joined[start : start + batch_size]
            emitted += cut
            pending, pending_count = [joined[cut:]], pending_count - cut
        if max_images is not None and emitted + pending_count >= max_images:
            break
    if pending_count:
        yield pending[0] if len(pending) == 1 else np.concatenate(pending)


def _is_array(images):
    """True for one array of images (NumPy, a backend tensor, a list of images)."""
    return hasattr(images, "shape") or isinstance(images, (list, tuple))


def _total(values):
    """The float64 sum of a batch's per-image values."""
    return float(np.sum(np.asarray(ops.convert_to_numpy(values), "float64")))


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
