"""The ELBO terms, written once as pure `keras.ops` functions.

Every function here works on all Keras backends and inside traced code. Training,
evaluation and export all call these functions, so the maths lives in one place.

Conventions:
- `images` are in the model's pixel range: [0, 1] for a `sigmoid` output,
  [-1, 1] for a `tanh` output.
- `logits` are the decoder's pre-activation outputs, of the same shape as `images`.
  The model's image is `activate(logits, output_activation)`.
- Likelihoods are densities (or probabilities) of the pixels on the [0, 1] scale,
  whatever the model's range, so numbers are comparable between `sigmoid` and
  `tanh` models. Since tanh(a) = 2 sigmoid(2a) - 1, a `tanh` output with
  pre-activation `a` is, on the [0, 1] scale, a sigmoid of `2a`.
- Per-example values are sums over all pixels and channels: nats per image.
"""

import math

from keras import ops

OUTPUT_ACTIVATIONS = ("sigmoid", "tanh")
LIKELIHOODS = ("bernoulli", "gaussian", "gaussian_learned")


def check_output_activation(output_activation):
    """Raises a `ValueError` unless `output_activation` is supported."""
    if output_activation not in OUTPUT_ACTIVATIONS:
        raise ValueError(
            f"`output_activation` must be one of {list(OUTPUT_ACTIVATIONS)}. "
            f"Received: output_activation={output_activation!r}"
        )


def check_likelihood(likelihood):
    """Raises a `ValueError` unless `likelihood` is supported."""
    if likelihood not in LIKELIHOODS:
        raise ValueError(
            f"`likelihood` must be one of {list(LIKELIHOODS)}. Received: likelihood={likelihood!r}"
        )


def logit_scale(output_activation):
    """How much a pre-activation is scaled on the [0, 1] scale: 1 (sigmoid) or 2 (tanh)."""
    check_output_activation(output_activation)
    return 1.0 if output_activation == "sigmoid" else 2.0


def pixel_range(output_activation="sigmoid"):
    """The model's pixel range: (0.0, 1.0) for sigmoid, (-1.0, 1.0) for tanh.

    Example:
    >>> pixel_range("tanh")
    (-1.0, 1.0)
    """
    return (0.0, 1.0) if logit_scale(output_activation) == 1.0 else (-1.0, 1.0)


def _sum_per_example(values):
    return ops.sum(values, axis=tuple(range(1, len(values.shape))))


def _num_dims(values):
    return math.prod(values.shape[1:])


def activate(logits, output_activation="sigmoid"):
    """Applies the output activation: decoder logits -> images in the model's range.

    Example:
    >>> activate(keras.ops.zeros((1, 2, 2, 1)), "tanh")  # all 0.0
    """
    logit_scale(output_activation)
    logits = ops.cast(logits, "float32")
    return ops.sigmoid(logits) if output_activation == "sigmoid" else ops.tanh(logits)


def to_unit_interval(images, output_activation="sigmoid"):
    """Maps images from the model's pixel range to [0, 1].

    Example:
    >>> to_unit_interval(keras.ops.array([-1.0, 0.0, 1.0]), "tanh")  # [0, 0.5, 1]
    """
    images = ops.cast(images, "float32")
    if logit_scale(output_activation) == 1.0:
        return images
    return (images + 1.0) * 0.5


def from_unit_interval(images, output_activation="sigmoid"):
    """Maps images from [0, 1] to the model's pixel range (inverse of `to_unit_interval`)."""
    images = ops.cast(images, "float32")
    if logit_scale(output_activation) == 1.0:
        return images
    return images * 2.0 - 1.0


def unit_interval_mean(logits, output_activation="sigmoid"):
    """The decoder's mean image on the [0, 1] scale: sigmoid(scale * logits)."""
    return ops.sigmoid(ops.cast(logits, "float32") * logit_scale(output_activation))


def kl_divergence(z_mean, z_log_var):
    """Analytic KL(q(z|x) || N(0, I)) for a diagonal Gaussian posterior.

    KL = 1/2 * sum_j (mu_j^2 + exp(log_var_j) - 1 - log_var_j)

    Args:
        z_mean: `(batch, latent_dim)` posterior means.
        z_log_var: `(batch, latent_dim)` posterior log-variances.

    Returns:
        `(batch,)` KL divergence in nats per example.

    Example:
    >>> kl_divergence(keras.ops.zeros((2, 8)), keras.ops.zeros((2, 8)))  # [0., 0.]
    """
    z_mean = ops.cast(z_mean, "float32")
    z_log_var = ops.cast(z_log_var, "float32")
    return 0.5 * ops.sum(ops.square(z_mean) + ops.exp(z_log_var) - 1.0 - z_log_var, axis=-1)


def kl_per_dimension(z_mean, z_log_var):
    """KL(q(z_j|x) || N(0, 1)) for every latent dimension: `(batch, latent_dim)` nats."""
    z_mean = ops.cast(z_mean, "float32")
    z_log_var = ops.cast(z_log_var, "float32")
    return 0.5 * (ops.square(z_mean) + ops.exp(z_log_var) - 1.0 - z_log_var)


def gaussian_kl(q_mean, q_log_var, p_mean, p_log_var):
    """Analytic KL(q || p) between two diagonal Gaussians, per element, in nats.

        KL = 1/2 * (p_log_var - q_log_var
                    + (exp(q_log_var) + (q_mean - p_mean)^2) / exp(p_log_var) - 1)

    With p = N(0, 1) this is `kl_per_dimension`. A hierarchical VAE sums it over
    a latent group's positions and channels for that group's KL term.

    Returns:
        A tensor of the inputs' shape, float32.

    Example:
    >>> gaussian_kl(*(keras.ops.zeros((2, 4, 4, 8)),) * 4)  # all zeros: q == p
    """
    q_mean, q_log_var, p_mean, p_log_var = (
        ops.cast(value, "float32") for value in (q_mean, q_log_var, p_mean, p_log_var)
    )
    return 0.5 * (
        p_log_var
        - q_log_var
        + (ops.exp(q_log_var) + ops.square(q_mean - p_mean)) * ops.exp(-p_log_var)
        - 1.0
    )


def gaussian_log_density(values, mean, log_var):
    """log N(values; mean, exp(log_var)) per element, in nats.

        log N = -1/2 * (log(2 pi) + log_var + (values - mean)^2 / exp(log_var))

    Example:
    >>> gaussian_log_density(keras.ops.zeros(3), keras.ops.zeros(3), keras.ops.zeros(3))  # -0.919
    """
    values, mean, log_var = (ops.cast(v, "float32") for v in (values, mean, log_var))
    return -0.5 * (
        math.log(2.0 * math.pi) + log_var + ops.square(values - mean) * ops.exp(-log_var)
    )


def group_log_ratio(z, q_mean, q_log_var, p_mean, p_log_var):
    """log p(z_l | z_<l) - log q(z_l | x, z_<l) of one group's sample: `(batch,)` nats.

    The group's share of an importance weight; its mean over samples of q is
    minus the group's KL.

    Example:
    >>> group_log_ratio(z, q_mean, q_log_var, p_mean, p_log_var)  # (batch,)
    """
    return _sum_per_example(
        gaussian_log_density(z, p_mean, p_log_var) - gaussian_log_density(z, q_mean, q_log_var)
    )


def group_kl(q_mean, q_log_var, p_mean, p_log_var):
    """KL(q(z_l | x, z_<l) || p(z_l | z_<l)) of one latent group: `(batch,)` nats per image.

    The sum of `gaussian_kl` over every axis but the batch (positions and
    channels of a spatial latent group).

    Example:
    >>> group_kl(q_mean, q_log_var, p_mean, p_log_var)  # (batch,)
    """
    return _sum_per_example(gaussian_kl(q_mean, q_log_var, p_mean, p_log_var))


def bernoulli_nll(images, logits, output_activation="sigmoid"):
    """Bernoulli negative log-likelihood (binary cross-entropy from logits).

    With targets t = to_unit_interval(x) in [0, 1] and logits l on the [0, 1]
    scale (l = a for sigmoid, l = 2a for tanh):

        -log p(x|z) = sum_pixels softplus(l) - t * l

    which is the numerically stable form of -t log s(l) - (1 - t) log(1 - s(l)).
    For non-binary t this is the usual "continuous" cross-entropy; it is exact
    for binary images.

    Returns:
        `(batch,)` nats per image.

    Example:
    >>> bernoulli_nll(images, decoder(z), "sigmoid")
    """
    targets = to_unit_interval(images, output_activation)
    scaled = ops.cast(logits, "float32") * logit_scale(output_activation)
    return _sum_per_example(ops.softplus(scaled) - targets * scaled)


def _gaussian_nll_with_log_sigma(images, logits, output_activation, log_sigma):
    targets = to_unit_interval(images, output_activation)
    mean = unit_interval_mean(logits, output_activation)
    squared_error = _sum_per_example(ops.square(targets - mean))
    dims = _num_dims(targets)
    inv_var = ops.exp(-2.0 * log_sigma)
    return 0.5 * squared_error * inv_var + dims * (log_sigma + 0.5 * math.log(2.0 * math.pi))


def gaussian_nll(images, logits, output_activation="sigmoid", sigma=0.1):
    """Gaussian negative log-likelihood with a fixed standard deviation.

    With targets t and decoder means m, both on the [0, 1] scale, and D pixels:

        -log p(x|z) = sum_pixels (t - m)^2 / (2 sigma^2) + D * (log sigma + log(2 pi) / 2)

    A true log-density (the constant included), so values for different sigma can
    be compared. `sigma` is in [0, 1]-scale pixel units.

    Returns:
        `(batch,)` nats per image.

    Example:
    >>> gaussian_nll(images, decoder(z), "tanh", sigma=0.1)
    """
    if not sigma > 0:
        raise ValueError(f"`sigma` must be positive. Received: sigma={sigma!r}")
    return _gaussian_nll_with_log_sigma(images, logits, output_activation, math.log(float(sigma)))


def optimal_log_sigma(
    images, logits, output_activation="sigmoid", min_log_sigma=-6.0, sample_weight=None
):
    """The log of the batch's maximum-likelihood shared sigma: log sqrt(MSE).

    For one sigma shared by every pixel of the batch, the Gaussian likelihood is
    maximised at sigma^2 = mean squared error over the batch (Rybkin et al. 2021).
    With per-image weights w_i the weighted likelihood is maximised at the
    weighted MSE, sum_i w_i SE_i / (D sum_i w_i), where SE_i is image i's sum of
    squared errors over its D pixels. The result is floored at `min_log_sigma`
    so a perfect reconstruction cannot drive the loss to -inf; above the floor
    it is exact.

    Returns:
        A scalar tensor (log of [0, 1]-scale pixel units).
    """
    targets = to_unit_interval(images, output_activation)
    mean = unit_interval_mean(logits, output_activation)
    per_image = ops.mean(ops.square(targets - mean), axis=tuple(range(1, len(targets.shape))))
    if sample_weight is None:
        mse = ops.mean(per_image)
    else:
        weights = ops.cast(sample_weight, "float32")
        # All-zero weights give MSE 0 (the floor), not 0/0.
        mse = ops.sum(weights * per_image) / ops.maximum(ops.sum(weights), 1e-12)
    log_sigma = 0.5 * ops.log(mse + 1e-12)
    return ops.maximum(log_sigma, min_log_sigma)


def gaussian_learned_nll(
    images, logits, output_activation="sigmoid", min_log_sigma=-6.0, sample_weight=None
):
    """Calibrated-decoder Gaussian negative log-likelihood (sigma-VAE).

    One sigma shared by all pixels is set analytically to the batch's root mean
    squared error (`optimal_log_sigma`; weighted by `sample_weight` when given),
    then the Gaussian NLL of `gaussian_nll` is evaluated with it. At that sigma,
    the NLL per image is D/2 * (1 + log(2 pi MSE)), so the balance between
    reconstruction and KL is learned rather than tuned with beta.

    Reference: Rybkin, Daniilidis, Levine (2021), "Simple and Effective VAE
    Training with Calibrated Decoders", ICML.

    Returns:
        `(batch,)` nats per image.

    Example:
    >>> gaussian_learned_nll(images, decoder(z), "sigmoid")
    """
    log_sigma = optimal_log_sigma(
        images, logits, output_activation, min_log_sigma, sample_weight=sample_weight
    )
    return _gaussian_nll_with_log_sigma(images, logits, output_activation, log_sigma)


def reconstruction_nll(
    likelihood, images, logits, output_activation="sigmoid", sigma=0.1, sample_weight=None
):
    """Dispatches to the named likelihood; returns `(batch,)` nats per image.

    `sample_weight` only matters to `gaussian_learned`, whose shared sigma is
    fitted to the (weighted) batch; the others score each image on its own.

    Example:
    >>> reconstruction_nll("gaussian_learned", images, decoder(z), "sigmoid")
    """
    check_likelihood(likelihood)
    if likelihood == "bernoulli":
        return bernoulli_nll(images, logits, output_activation)
    if likelihood == "gaussian":
        return gaussian_nll(images, logits, output_activation, sigma)
    return gaussian_learned_nll(images, logits, output_activation, sample_weight=sample_weight)


def weighted_mean(values, sample_weight=None):
    """The batch mean of per-example `values`, weighted as Keras weights a loss.

        mean_i(w_i * v_i)    (the mean of v when `sample_weight` is None)

    That is Keras's "sum_over_batch_size" reduction: weights scale each
    example's contribution, and the divisor is the batch size, not the sum of
    the weights. Units are those of `values`.

    Example:
    >>> weighted_mean(keras.ops.array([1.0, 3.0]), keras.ops.array([1.0, 0.0]))  # 0.5
    """
    values = ops.cast(values, "float32")
    if sample_weight is None:
        return ops.mean(values)
    return ops.mean(ops.cast(sample_weight, "float32") * values)


def pixel_mse(images, logits, output_activation="sigmoid"):
    """Mean squared error per pixel on the [0, 1] scale, the study's metric.

    Returns:
        `(batch,)` mean over pixels and channels of (t - m)^2, in squared
        [0, 1]-scale pixel units.
    """
    targets = to_unit_interval(images, output_activation)
    mean = unit_interval_mean(logits, output_activation)
    return ops.mean(ops.square(targets - mean), axis=tuple(range(1, len(targets.shape))))


def kl_warmup_weight(step, warmup_steps):
    """Linear KL warm-up: min(1, step / warmup_steps); 1 when `warmup_steps` is 0.

    `step` counts completed optimizer updates, so the first update has weight 0.

    Example:
    >>> kl_warmup_weight(step=50, warmup_steps=100)  # 0.5
    """
    if warmup_steps <= 0:
        return ops.convert_to_tensor(1.0, "float32")
    return ops.minimum(1.0, ops.cast(step, "float32") / float(warmup_steps))


def negative_elbo(reconstruction, kl, kl_weight=1.0):
    """The (beta-weighted) negative ELBO per example: reconstruction + kl_weight * KL.

    With `kl_weight` = 1 this is -ELBO in nats per image, an upper bound on
    -log p(x).
    """
    return reconstruction + kl_weight * kl


def free_bits_kl(group_kls, group_sizes, free_bits, sample_weight=None):
    """The KL term of the free-bits objective: sum_g max(E[KL_g], free_bits * d_g).

    Each latent group g (a unit of a flat VAE, a resolution of a hierarchical
    one) of d_g dimensions is charged at least `free_bits` nats per dimension,
    on average over the batch, so the optimiser gains nothing by pushing a
    group's KL below that floor and collapsing it onto the prior (Kingma et
    al. 2016). Above the floor it is the usual KL. It only shapes training:
    the reported `kl_loss` and the bounds stay the true KL.

    Args:
        group_kls: `(batch, groups)` KL of every group, nats per image.
        group_sizes: the groups' numbers of latent dimensions.
        free_bits: float >= 0, nats per latent dimension.
        sample_weight: optional `(batch,)` weights; the batch mean is then
            `weighted_mean`'s.

    Returns:
        A scalar, nats per image.

    Example:
    >>> free_bits_kl(keras.ops.zeros((8, 3)), [16, 64, 256], 0.01)  # 3.36
    """
    group_kls = ops.cast(group_kls, "float32")
    if sample_weight is None:
        means = ops.mean(group_kls, axis=0)
    else:
        means = ops.mean(ops.cast(sample_weight, "float32")[:, None] * group_kls, axis=0)
    floors = ops.convert_to_tensor([float(free_bits) * size for size in group_sizes], "float32")
    return ops.sum(ops.maximum(means, floors))


def nats_to_bits_per_dim(nats_per_image, num_dims):
    """Converts nats per image to bits per dimension: nats / (D * ln 2)."""
    return nats_per_image / (num_dims * math.log(2.0))
