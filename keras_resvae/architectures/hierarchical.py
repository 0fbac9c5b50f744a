"""The networks of the hierarchical residual VAE: a bottom-up ResNet and top-down cells.

The bottom-up network keeps its feature map at every latent resolution: these
are the skip connections of the inference network. The top-down network starts
from a learned constant at the smallest resolution and, for each latent group,
runs one cell: a prior p(z_l | z_<l) from the top-down state h, a posterior
q(z_l | x, z_<l) from h and the bottom-up features at that resolution, and a
merge of z_l back into h, followed by residual blocks and, between
resolutions, upsampling. Each piece is a small functional `keras.Model`, so the
model can run the same cells along three paths (posterior samples in training,
posterior means to encode, prior noise to sample) with one set of weights.

References: Sønderby et al. (2016), "Ladder Variational Autoencoders"; Vahdat &
Kautz (2020), "NVAE: A Deep Hierarchical Variational Autoencoder" (the residual
posterior); Child (2021), "Very Deep VAEs Generalize Autoregressive Models and
Can Outperform Them on Images" (the top-down cell, zero-initialised priors).
"""

import keras

from keras_resvae.architectures.blocks import (
    apply_basic_block,
    apply_conv_norm_act,
    apply_upsample_to,
    same_padding_size,
    scaled_filters,
)

# Residual-stream channels at full resolution and width 1. Each halving of the
# side doubles them (as a ResNet's stages do), up to MAX_CHANNEL_MULTIPLIER
# times: a 3x3 convolution then costs about the same at every resolution, and
# the parameters sit where there are few pixels to pay for them. With 3 scales
# this is the ResNet-18 encoder's ladder (64, 128, 256, 512 at width 1), so an
# `hvae` and a `resnet18` of the same width have about the same parameter
# count. With the same channels everywhere (as VDVAE), the full-resolution
# blocks cost most of the arithmetic, and the model trained 4.7x slower per
# image than the ResNet-18 VAE of its parameter count.
BASE_CHANNELS = 64
MAX_CHANNEL_MULTIPLIER = 8
# The smallest side a latent group can have.
MIN_GROUP_SIDE = 2


def latent_sizes(image_shape, num_scales):
    """The spatial sizes of the latent groups, smallest first, one per scale.

    Each scale halves the image side ('same' rounding): a 32x32 image with 3
    scales has groups at 4x4, 8x8 and 16x16; a 28x28 one at 4x4, 7x7, 14x14.

    Example:
    >>> latent_sizes((32, 32, 3), 3)
    [(4, 4), (8, 8), (16, 16)]
    """
    size = tuple(image_shape[:2])
    sizes = []
    for _ in range(int(num_scales)):
        size = tuple(same_padding_size(side, 2) for side in size)
        sizes.append(size)
    if min(sizes[-1]) < MIN_GROUP_SIDE:
        raise ValueError(
            f"`num_scales`={num_scales} halves a {image_shape[0]}x{image_shape[1]} image to "
            f"{sizes[-1][0]}x{sizes[-1][1]}, below {MIN_GROUP_SIDE}x{MIN_GROUP_SIDE}: "
            "use fewer scales."
        )
    return sizes[::-1]


def scale_channels(num_scales, width=1.0):
    """Residual-stream channels at full resolution, then at each scale (largest side first).

    Example:
    >>> scale_channels(3)  # full resolution, 1/2, 1/4, 1/8 of the side
    [64, 128, 256, 512]
    >>> scale_channels(4, width=0.25)
    [16, 32, 64, 128, 128]
    """
    full = scaled_filters(BASE_CHANNELS, width)
    return [full * min(2**scale, MAX_CHANNEL_MULTIPLIER) for scale in range(int(num_scales) + 1)]


def build_bottom_up(image_shape, sizes, channels, blocks_per_scale=1, use_batch_norm=False):
    """Images -> the feature map at every latent size in `sizes` (smallest first).

    A stem convolution, residual blocks at full resolution, then for each scale
    a strided residual block (halving the side, to that scale's channels) and
    more blocks.

    Args:
        channels: list of ints, as `scale_channels` gives: full resolution
            first, then one per scale, largest side first.

    Example:
    >>> bottom_up = build_bottom_up((32, 32, 3), latent_sizes((32, 32, 3), 3), [8, 16, 32, 64])
    >>> [f.shape for f in bottom_up.outputs]  # 4x4x64, 8x8x32, 16x16x16
    """
    images = keras.Input(image_shape, name="images")
    x = apply_conv_norm_act(images, channels[0], 3, 1, use_batch_norm, name="stem")
    for block in range(1, blocks_per_scale + 1):
        x = apply_basic_block(x, channels[0], 1, use_batch_norm, name=f"full_block{block}")
    features = {}
    for scale in range(1, len(sizes) + 1):
        for block in range(1, blocks_per_scale + 1):
            strides = 2 if block == 1 else 1
            x = apply_basic_block(
                x, channels[scale], strides, use_batch_norm, name=f"scale{scale}_block{block}"
            )
        features[tuple(x.shape[1:3])] = x
    return keras.Model(images, [features[size] for size in sizes], name="bottom_up")


def _conv(filters, kernel_size, name, initializer="he_normal", dtype=None):
    return keras.layers.Conv2D(
        filters,
        kernel_size,
        padding="same",
        kernel_initializer=initializer,
        dtype=dtype,
        name=name,
    )


def build_prior(size, channels, latent_channels, name):
    """h -> `[p_mean, p_log_var, h_feature]` of one group, all zero at initialisation.

    Zero-initialised outputs make every prior start as N(0, I) and leave h
    untouched, so a deep hierarchy starts as a shallow one (VDVAE). The
    moments are float32 under mixed precision, as the KL needs.
    """
    h = keras.Input((*size, channels), name="h")
    x = _conv(channels, 3, f"{name}_conv")(h)
    x = keras.layers.Activation("gelu", name=f"{name}_gelu")(x)
    p_mean = _conv(latent_channels, 3, f"{name}_mean", "zeros", "float32")(x)
    p_log_var = _conv(latent_channels, 3, f"{name}_log_var", "zeros", "float32")(x)
    feature = _conv(channels, 3, f"{name}_feature", "zeros")(x)
    return keras.Model(h, [p_mean, p_log_var, feature], name=name)


def build_posterior(size, channels, latent_channels, name):
    """`[h, bottom-up features]` -> the posterior's offsets from the prior, `[d_mean, d_log_var]`.

    The posterior is residual (NVAE): q = N(p_mean + d_mean, exp(p_log_var +
    d_log_var)), so the KL term depends on how far q moves from p, not on
    where p is. Small initial offsets start q close to p.
    """
    h = keras.Input((*size, channels), name="h")
    features = keras.Input((*size, channels), name="features")
    x = keras.layers.Concatenate(name=f"{name}_concat")([h, features])
    x = _conv(channels, 3, f"{name}_conv")(x)
    x = keras.layers.Activation("gelu", name=f"{name}_gelu")(x)
    small = keras.initializers.VarianceScaling(0.01, seed=None)
    d_mean = _conv(latent_channels, 3, f"{name}_mean", small, "float32")(x)
    d_log_var = _conv(latent_channels, 3, f"{name}_log_var", small, "float32")(x)
    return keras.Model([h, features], [d_mean, d_log_var], name=name)


def build_merge(
    size, channels, latent_channels, next_size, next_channels, blocks, use_batch_norm, name
):
    """`[h, h_feature, z]` -> the next state: h + h_feature + conv(z), residual blocks, upsampling.

    `next_size` and `next_channels` are the next group's (or the full
    resolution's, after the last group): the state is projected to those
    channels by a 1x1 convolution, before the nearest-neighbour upsampling to
    that size, where it costs a quarter as much and gives the same result.
    """
    h = keras.Input((*size, channels), name="h")
    feature = keras.Input((*size, channels), name="h_feature")
    z = keras.Input((*size, latent_channels), name="z")
    projected = _conv(channels, 1, f"{name}_z")(z)
    x = keras.layers.Add(name=f"{name}_add")([h, feature, projected])
    for block in range(1, blocks + 1):
        x = apply_basic_block(x, channels, 1, use_batch_norm, name=f"{name}_block{block}")
    if next_channels != channels:
        x = _conv(next_channels, 1, f"{name}_project")(x)
    if tuple(next_size) != tuple(size):
        x = apply_upsample_to(x, next_size, "nearest", name=f"{name}_up")
    return keras.Model([h, feature, z], x, name=name)


def build_head(image_shape, channels, blocks, use_batch_norm, name="head"):
    """The last state, at full resolution -> logits of the image (float32).

    The VAE applies the output activation to these logits. The last
    convolution starts at a tenth of Glorot's variance, so the first output is
    the data mean (its bias, `VAE.initialize_output_bias`) give or take a
    little: at full scale, a width-1 model's first Adam steps pushed the
    logits into the flat part of the sigmoid, and it stalled at the mean image.
    """
    h = keras.Input((*image_shape[:2], channels), name="h")
    x = h
    for block in range(1, blocks + 1):
        x = apply_basic_block(x, channels, 1, use_batch_norm, name=f"{name}_block{block}")
    logits = keras.layers.Conv2D(
        image_shape[-1],
        3,
        padding="same",
        kernel_initializer=keras.initializers.VarianceScaling(0.1, "fan_avg", "uniform"),
        dtype="float32",
        name="logits",
    )(x)
    return keras.Model(h, logits, name=name)


@keras.saving.register_keras_serializable(package="keras_resvae")
class LearnedStart(keras.layers.Layer):
    """The top-down state before the first group: a learned map, the same for every image.

    Call it on any tensor whose first axis is the batch; it returns
    `(batch, height, width, channels)`, starting at zero.

    Example:
    >>> start = LearnedStart((4, 4), 32)
    >>> start(keras.ops.zeros((8, 10))).shape  # (8, 4, 4, 32)
    """

    def __init__(self, size, channels, **kwargs):
        super().__init__(**kwargs)
        self.size = tuple(int(side) for side in size)
        self.channels = int(channels)
        self.value = self.add_weight(
            shape=(*self.size, self.channels), initializer="zeros", name="value"
        )

    def call(self, reference):
        batch = keras.ops.shape(reference)[0]
        value = keras.ops.cast(self.value, self.compute_dtype)
        return keras.ops.broadcast_to(value[None], (batch, *self.size, self.channels))

    def compute_output_shape(self, input_shape):
        return (input_shape[0], *self.size, self.channels)

    def get_config(self):
        config = super().get_config()
        config.update(size=list(self.size), channels=self.channels)
        return config


def build_hierarchy(
    image_shape,
    latent_channels=4,
    num_scales=3,
    width=1.0,
    blocks_per_scale=1,
    use_batch_norm=False,
    groups_per_scale=1,
):
    """Every network of a hierarchical VAE, as a dict (see `HierarchicalVAE`).

    Args:
        image_shape: `(height, width, channels)`.
        latent_channels: int. Channels of each group's spatial latent map.
        num_scales: int. Resolutions with latent groups, one per halving of
            the image side.
        width: float. Multiplier on the channels (`scale_channels`): 64 at
            full resolution at width 1, doubling with each halving of the side.
        blocks_per_scale: int. Residual blocks per scale, up and down.
        use_batch_norm: bool. Batch norm in the residual blocks.
        groups_per_scale: int. Latent groups at each resolution. With more
            than one, each group's prior is conditioned on the groups drawn
            before it at the same resolution, so the prior can correlate
            neighbouring positions, which one factorised group per resolution
            cannot (VDVAE and NVAE use several per resolution).

    Returns:
        `{"bottom_up", "start", "priors", "posteriors", "merges", "head"}`:
        one prior, posterior and merge per group, smallest resolution first.

    Example:
    >>> networks = build_hierarchy((32, 32, 3), latent_channels=4, num_scales=3)
    >>> len(build_hierarchy((32, 32, 3), 4, 3, groups_per_scale=2)["priors"])  # 6
    """
    channels = scale_channels(num_scales, width)
    sizes = latent_sizes(image_shape, num_scales)
    # The top-down cells run from the smallest group to the largest; after the
    # last group of a resolution, the state moves to the next one.
    scale_group_channels = channels[:0:-1]
    scale_next = list(
        zip(sizes[1:] + [tuple(image_shape[:2])], scale_group_channels[1:] + [channels[0]])
    )
    cells = []
    for scale, (size, cell_channels) in enumerate(zip(sizes, scale_group_channels)):
        for group in range(int(groups_per_scale)):
            last = group == int(groups_per_scale) - 1
            next_size, next_channels = scale_next[scale] if last else (size, cell_channels)
            cells.append((size, cell_channels, next_size, next_channels))
    return {
        "bottom_up": build_bottom_up(
            image_shape, sizes, channels, blocks_per_scale, use_batch_norm
        ),
        "start": LearnedStart(sizes[0], scale_group_channels[0], name="start"),
        "priors": [
            build_prior(size, cell_channels, latent_channels, f"prior{index}")
            for index, (size, cell_channels, _, _) in enumerate(cells, 1)
        ],
        "posteriors": [
            build_posterior(size, cell_channels, latent_channels, f"posterior{index}")
            for index, (size, cell_channels, _, _) in enumerate(cells, 1)
        ],
        "merges": [
            build_merge(
                size,
                cell_channels,
                latent_channels,
                next_size,
                next_cell_channels,
                blocks_per_scale,
                use_batch_norm,
                f"merge{index}",
            )
            for index, (size, cell_channels, next_size, next_cell_channels) in enumerate(cells, 1)
        ],
        "head": build_head(image_shape, channels[0], blocks_per_scale, use_batch_norm),
    }
