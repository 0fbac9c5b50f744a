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
    kl = ops.convert_to_numpy(losses.kl_per_dimension(z_mean, z_log_var)).astype("float64")
    means = ops.convert_to_numpy(ops.cast(z_mean, "float32")).astype("float64")
    if means.ndim != 2 or len(means) < 2:
        raise ValueError(f"Need at least 2 encodings (n, latent_dim). Received: {means.shape}")
    activity = means.var(axis=0)
    return {
        "kl_per_dim": kl.mean(axis=0),
        "activity": activity,
        "active_units": int(np.sum(activity > threshold)),
        "kl": float(kl.sum(axis=1).mean()),
    }
