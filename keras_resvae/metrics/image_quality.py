"""Pixel-space reconstruction quality: MSE, PSNR and SSIM, on the [0, 1] scale.

Every function takes images in the model's pixel range (`output_activation`
says which) and maps them to [0, 1] first, so numbers from sigmoid and tanh
models compare directly. Each returns one value per image, `(batch,)`.
"""

import math

import numpy as np
from keras import ops

from keras_resvae.losses import to_unit_interval

SSIM_K1, SSIM_K2 = 0.01, 0.03


def _unit_pair(originals, reconstructions, output_activation):
    x = to_unit_interval(originals, output_activation)
    y = to_unit_interval(reconstructions, output_activation)
    if tuple(x.shape) != tuple(y.shape) or len(x.shape) != 4:
        raise ValueError(
            "Expected two batches of images of the same shape (batch, H, W, C). "
            f"Received: {tuple(x.shape)} and {tuple(y.shape)}"
        )
    return x, y


def per_pixel_mse(originals, reconstructions, output_activation="sigmoid"):
    """Mean squared error per pixel on the [0, 1] scale: mean((x - y)^2), `(batch,)`.

    Example:
    >>> per_pixel_mse(x_test[:8], vae.reconstruct(x_test[:8]))
    """
    x, y = _unit_pair(originals, reconstructions, output_activation)
    return ops.mean(ops.square(x - y), axis=(1, 2, 3))


def psnr(originals, reconstructions, output_activation="sigmoid", min_mse=1e-10):
    """Peak signal-to-noise ratio in dB with peak 1: 10 * log10(1 / MSE), `(batch,)`.

    The MSE is floored at `min_mse` (100 dB) so identical images stay finite.

    Example:
    >>> psnr(x_test[:8], vae.reconstruct(x_test[:8]))
    """
    mse = ops.maximum(per_pixel_mse(originals, reconstructions, output_activation), min_mse)
    return -10.0 * ops.log(mse) / math.log(10.0)


def gaussian_window(size=11, sigma=1.5):
    """The normalised `(size, size)` Gaussian window of SSIM (Wang et al. 2004)."""
    offsets = np.arange(size, dtype="float64") - (size - 1) / 2
    line = np.exp(-(offsets**2) / (2 * sigma**2))
    window = np.outer(line, line)
    return (window / window.sum()).astype("float32")


def ssim(originals, reconstructions, output_activation="sigmoid", window_size=11, sigma=1.5):
    """Structural similarity per image (mean SSIM over pixels and channels), `(batch,)`.

    Local statistics come from an 11x11 Gaussian window (sigma 1.5) over the
    valid region, data range 1, K1 = 0.01, K2 = 0.03, population covariances:

        SSIM = (2 mu_x mu_y + C1)(2 cov_xy + C2) / ((mu_x^2 + mu_y^2 + C1)(var_x + var_y + C2))

    with C1 = K1^2 and C2 = K2^2. Images smaller than the window use the
    largest odd window that fits. 1 means identical; blur lowers it.

    Reference: Wang, Bovik, Sheikh, Simoncelli (2004), "Image quality
    assessment: from error visibility to structural similarity", IEEE TIP.

    Example:
    >>> ssim(x_test[:8], vae.reconstruct(x_test[:8]))
    """
    x, y = _unit_pair(originals, reconstructions, output_activation)
    batch, height, width, channels = x.shape
    size = min(window_size, height - (height + 1) % 2, width - (width + 1) % 2)
    kernel = ops.convert_to_tensor(gaussian_window(size, sigma)[:, :, None, None])

    def local_mean(values):
        # Channels become batch entries so one single-channel filter serves all.
        values = ops.reshape(ops.transpose(values, (0, 3, 1, 2)), (-1, height, width, 1))
        return ops.conv(values, kernel, padding="valid")

    mu_x, mu_y = local_mean(x), local_mean(y)
    var_x = local_mean(x * x) - mu_x * mu_x
    var_y = local_mean(y * y) - mu_y * mu_y
    cov_xy = local_mean(x * y) - mu_x * mu_y
    c1, c2 = SSIM_K1**2, SSIM_K2**2
    ssim_map = ((2 * mu_x * mu_y + c1) * (2 * cov_xy + c2)) / (
        (mu_x * mu_x + mu_y * mu_y + c1) * (var_x + var_y + c2)
    )
    return ops.mean(ops.reshape(ssim_map, (batch, -1)), axis=1)
