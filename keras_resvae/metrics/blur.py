"""How much fine detail reconstructions keep: the study's question as one number.

A blurred image has lost power at high spatial frequencies. We compare the
power spectra of originals and reconstructions above a cut-off frequency:

    high_frequency_ratio = sum_{|f| > f_c} P_rec(f) / sum_{|f| > f_c} P_orig(f)

where P is the 2-D power spectrum |FFT(x - mean(x))|^2 summed over images and
channels, |f| is the radial frequency as a fraction of the Nyquist frequency
(1 = Nyquist along an axis), and f_c defaults to 0.25. A ratio of 1 keeps all
the originals' fine detail; a blurry VAE gives much less than 1; noise or
ringing can give more than 1.
"""

import numpy as np
from keras import ops

from keras_resvae.losses import to_unit_interval


def radial_frequency(height, width):
    """`(height, width)` radial frequency of each FFT bin, in units of the Nyquist frequency."""
    fy = np.fft.fftfreq(height)[:, None]
    fx = np.fft.fftfreq(width)[None, :]
    return np.sqrt(fy**2 + fx**2) / 0.5


def power_spectrum(images, output_activation="sigmoid"):
    """Summed 2-D power spectrum of a batch, `(height, width)` NumPy, DC removed.

    Example:
    >>> power_spectrum(x_test[:64]).shape  # (28, 28) for MNIST
    """
    unit = to_unit_interval(images, output_activation)
    if len(unit.shape) != 4:
        raise ValueError(f"Expected images (batch, H, W, C). Received: {tuple(unit.shape)}")
    planes = ops.transpose(unit, (0, 3, 1, 2))  # FFT over the last two axes
    planes = planes - ops.mean(planes, axis=(2, 3), keepdims=True)
    real, imag = ops.fft2((planes, ops.zeros_like(planes)))
    return ops.convert_to_numpy(ops.sum(real * real + imag * imag, axis=(0, 1))).astype("float64")


def radial_profile(spectrum, num_bins=None):
    """Mean power per radial frequency bin: `(frequencies, power)` from 0 to Nyquist.

    Example:
    >>> frequencies, power = radial_profile(power_spectrum(x_test[:64]))
    """
    height, width = spectrum.shape
    radius = radial_frequency(height, width)
    num_bins = num_bins or max(height, width) // 2
    edges = np.linspace(0.0, 1.0, num_bins + 1)
    index = np.clip(np.digitize(radius, edges) - 1, 0, num_bins - 1)
    inside = radius <= 1.0
    totals = np.bincount(index[inside], weights=spectrum[inside], minlength=num_bins)
    counts = np.bincount(index[inside], minlength=num_bins)
    return (edges[:-1] + edges[1:]) / 2, totals / np.maximum(counts, 1)


def high_frequency_ratio(originals, reconstructions, output_activation="sigmoid", cutoff=0.25):
    """The blur measure: reconstructions' share of the originals' high-frequency power.

    Args:
        originals, reconstructions: `(batch, H, W, C)` in the model's pixel range.
        output_activation: "sigmoid" ([0, 1] pixels) or "tanh" ([-1, 1]).
        cutoff: float in (0, 1). Radial frequency, as a fraction of Nyquist,
            above which power counts as fine detail.

    Returns:
        A float: 1.0 keeps all the fine detail, 0.0 keeps none.

    Example:
    >>> high_frequency_ratio(x_test[:256], vae.reconstruct(x_test[:256]))
    0.41
    """
    original = power_spectrum(originals, output_activation)
    reconstructed = power_spectrum(reconstructions, output_activation)
    return spectra_high_frequency_ratio(original, reconstructed, cutoff)


def spectra_high_frequency_ratio(original, reconstructed, cutoff=0.25):
    """`high_frequency_ratio` from summed power spectra, which add up over batches.

    Example:
    >>> original = sum(power_spectrum(batch) for batch in batches)
    """
    if not 0.0 < cutoff < 1.0:
        raise ValueError(f"`cutoff` must be in (0, 1). Received: cutoff={cutoff!r}")
    if original.shape != reconstructed.shape:
        raise ValueError(f"Image sizes differ: {original.shape} and {reconstructed.shape}")
    high = radial_frequency(*original.shape) > cutoff
    reference = original[high].sum()
    if reference <= 0:
        raise ValueError("The originals have no power above the cut-off: lower `cutoff`.")
    return float(reconstructed[high].sum() / reference)
