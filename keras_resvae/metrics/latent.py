"""Posterior-collapse diagnostics: KL per latent dimension and active units."""

import numpy as np
from keras import ops

from keras_resvae import losses

ACTIVITY_THRESHOLD = 0.01


def latent_statistics(z_mean, z_log_var, threshold=ACTIVITY_THRESHOLD):
    """KL per latent dimension and the number of active units over a data set.

    A unit u is active when its posterior mean varies with the input:

        A_u = Var_x( E_{q(z|x)}[z_u] ) > threshold   (0.01 by default)

    A collapsed unit has A_u ~ 0 and KL_u ~ 0: it encodes nothing.

    Reference: Burda, Grosse, Salakhutdinov (2016), "Importance Weighted
    Autoencoders", ICLR (section 5.2).

    Args:
        z_mean, z_log_var: `(num_images, latent_dim)` posterior parameters.
        threshold: float. Activity above which a unit counts as active.

    Returns:
        A dict: `kl_per_dim` (latent_dim,) mean KL in nats, `activity`
        (latent_dim,), `active_units` int, `kl` mean total KL in nats per image.

    Example:
    >>> stats = latent_statistics(*vae.encode(x_test))
    >>> stats["active_units"]
    12
    """
    running = RunningLatentStatistics(threshold)
    running.add(z_mean, z_log_var)
    return running.result()


class RunningLatentStatistics:
    """`latent_statistics` over batches added one at a time, in constant memory.

    The activity (variance of the posterior means) is merged batch by batch
    with Chan et al.'s pairwise update, as exact as the two-pass variance.

    Example:
    >>> running = RunningLatentStatistics()
    >>> for batch in batches:
    ...     running.add(*vae.encode(batch))
    >>> running.result()["active_units"]
    """

    def __init__(self, threshold=ACTIVITY_THRESHOLD):
        self.threshold = threshold
        self.count = 0
        self.kl_sum = self.mean = self.squares = None

    def add(self, z_mean, z_log_var):
        kl = ops.convert_to_numpy(losses.kl_per_dimension(z_mean, z_log_var)).astype("float64")
        means = ops.convert_to_numpy(ops.cast(z_mean, "float32")).astype("float64")
        if means.ndim != 2:
            raise ValueError(f"Expected encodings (n, latent_dim). Received: {means.shape}")
        count, batch_mean = len(means), means.mean(axis=0)
        batch_squares = ((means - batch_mean) ** 2).sum(axis=0)
        if self.count == 0:
            self.kl_sum, self.mean, self.squares = kl.sum(axis=0), batch_mean, batch_squares
        else:
            total = self.count + count
            delta = batch_mean - self.mean
            self.squares = self.squares + batch_squares + delta**2 * self.count * count / total
            self.mean = self.mean + delta * count / total
            self.kl_sum = self.kl_sum + kl.sum(axis=0)
        self.count += count

    def result(self):
        if self.count < 2:
            raise ValueError(
                f"Need at least 2 encodings (n, latent_dim). Received: {self.count} image(s)"
            )
        activity = self.squares / self.count
        kl_per_dim = self.kl_sum / self.count
        return {
            "kl_per_dim": kl_per_dim,
            "activity": activity,
            "active_units": int(np.sum(activity > self.threshold)),
            "kl": float(kl_per_dim.sum()),
        }
