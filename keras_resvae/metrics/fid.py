"""FID and KID on Inception-v3 pool features.

Features are the 2048-d average-pool output of Keras's Inception-v3 with
ImageNet weights, on images resized to 299x299 (grey images repeated to RGB).
The weights come from Keras's usual download (cached in ~/.keras/models) or
from a local `.h5`/`.weights.h5` file. Keras's weights are not the 2015
TensorFlow graph that published FIDs use, so our FIDs compare our models with
each other, not with papers.
"""

import numpy as np

from keras_resvae.losses import to_unit_interval

INCEPTION_URL = (
    "https://storage.googleapis.com/tensorflow/keras-applications/"
    "inception_v3/inception_v3_weights_tf_dim_ordering_tf_kernels_notop.h5"
)
INCEPTION_FILE = "inception_v3_weights_tf_dim_ordering_tf_kernels_notop.h5"
INCEPTION_SIZE = 299


class FeatureWeightsUnavailable(RuntimeError):
    """The Inception-v3 weights could not be had (offline, no local file)."""


def frechet_distance(mean_a, cov_a, mean_b, cov_b):
    """Fréchet distance between two Gaussians (the FID of their features).

        d^2 = |mu_a - mu_b|^2 + Tr(S_a + S_b - 2 (S_a S_b)^(1/2))

    Tr((S_a S_b)^(1/2)) is the sum of the square roots of the eigenvalues of
    S_a S_b, which are real and non-negative for covariance matrices (tiny
    negative or complex parts from rounding are dropped).

    Reference: Heusel et al. (2017), "GANs Trained by a Two Time-Scale Update
    Rule Converge to a Local Nash Equilibrium", NeurIPS.

    Example:
    >>> frechet_distance(*feature_statistics(real), *feature_statistics(fake))
    """
    mean_a, mean_b = np.asarray(mean_a, "float64"), np.asarray(mean_b, "float64")
    cov_a, cov_b = np.asarray(cov_a, "float64"), np.asarray(cov_b, "float64")
    eigenvalues = np.linalg.eigvals(cov_a @ cov_b)
    trace_sqrt = np.sqrt(np.clip(eigenvalues.real, 0.0, None)).sum()
    distance = np.sum((mean_a - mean_b) ** 2) + np.trace(cov_a) + np.trace(cov_b) - 2 * trace_sqrt
    return float(max(distance, 0.0))


def feature_statistics(features):
    """Mean and covariance (unbiased) of `(n, d)` features."""
    features = np.asarray(features, "float64")
    return features.mean(axis=0), np.cov(features, rowvar=False)


def kernel_inception_distance(features_a, features_b, num_subsets=10, subset_size=1000, seed=0):
    """KID: unbiased MMD^2 with the kernel k(x, y) = (x.y / d + 1)^3, over random subsets.

    Reference: Binkowski et al. (2018), "Demystifying MMD GANs", ICLR.

    Returns:
        `(mean, std)` over the subsets.

    Example:
    >>> kid, kid_std = kernel_inception_distance(real_features, fake_features)
    """
    a, b = np.asarray(features_a, "float64"), np.asarray(features_b, "float64")
    size = min(subset_size, len(a), len(b))
    if size < 2:
        raise ValueError("KID needs at least 2 images in each set.")
    dims = a.shape[1]
    rng = np.random.default_rng(seed)
    values = []
    for _ in range(num_subsets):
        x = a[rng.choice(len(a), size, replace=False)]
        y = b[rng.choice(len(b), size, replace=False)]
        k_xx = (x @ x.T / dims + 1) ** 3
        k_yy = (y @ y.T / dims + 1) ** 3
        k_xy = (x @ y.T / dims + 1) ** 3
        off_diagonal = size * (size - 1)
        values.append(
            (k_xx.sum() - np.trace(k_xx)) / off_diagonal
            + (k_yy.sum() - np.trace(k_yy)) / off_diagonal
            - 2 * k_xy.mean()
        )
    return float(np.mean(values)), float(np.std(values))


class InceptionFeatures:
    """Inception-v3 pool features of images, for FID and KID.

    Args:
        weights: None for Keras's ImageNet weights (downloaded once, then
            cached), or the path of a local weights file.
        batch_size: int. Images per forward pass.

    Raises:
        FeatureWeightsUnavailable: the weights cannot be downloaded or read.

    Example:
    >>> features = InceptionFeatures()(x_test[:1000], "sigmoid")  # (1000, 2048)
    """

    def __init__(self, weights=None, batch_size=50):
        import keras

        try:
            path = weights or keras.utils.get_file(
                INCEPTION_FILE, INCEPTION_URL, cache_subdir="models"
            )
            self.model = keras.applications.InceptionV3(
                include_top=False,
                weights=path,
                pooling="avg",
                input_shape=(INCEPTION_SIZE, INCEPTION_SIZE, 3),
            )
        except Exception as error:
            source = f"the file {weights}" if weights else INCEPTION_URL
            raise FeatureWeightsUnavailable(
                f"Inception-v3 weights could not be loaded from {source} "
                f"({type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}). "
                f"FID/KID need them: download {INCEPTION_URL} where there is a network and "
                "pass the file with --inception-weights."
            ) from error
        self.weights_path = path
        self.batch_size = int(batch_size)

    def __call__(self, images, output_activation="sigmoid"):
        from keras import ops

        features = []
        for start in range(0, len(images), self.batch_size):
            batch = to_unit_interval(images[start : start + self.batch_size], output_activation)
            batch = ops.image.resize(batch, (INCEPTION_SIZE, INCEPTION_SIZE))
            if batch.shape[-1] == 1:
                batch = ops.repeat(batch, 3, axis=-1)
            features.append(ops.convert_to_numpy(self.model(batch * 2.0 - 1.0, training=False)))
        return np.concatenate(features).astype("float64")
