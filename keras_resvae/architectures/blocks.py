"""Functional building blocks shared by the encoders and decoders.

Each `apply_*` helper takes a symbolic tensor and returns one, so networks are
plain functional `keras.Model`s. `use_batch_norm=False` leaves no normalisation
layer at all and gives the convolutions a bias instead.

Every residual branch starts at zero, so each block starts as the identity
(Goyal et al. 2017, "Accurate, Large Minibatch SGD"; Zhang et al. 2019, "Fixup
Initialization"). Without batch norm this keeps the residual stream from
growing with depth; a ResNet-18 VAE without it stalled at the mean image.
"""

import keras

# PyTorch's defaults (momentum 0.1 there is 0.9 here): the statistics follow the
# weights quickly enough for short runs.
BN_MOMENTUM = 0.9
BN_EPSILON = 1e-5


def scaled_filters(filters, width):
    """`filters * width`, rounded, at least 1."""
    return max(1, int(round(filters * width)))


def apply_conv_norm_act(
    x,
    filters,
    kernel_size,
    strides=1,
    use_batch_norm=True,
    activation="relu",
    transpose=False,
    zero_init=False,
    name=None,
):
    """Conv (or transposed conv) -> optional BatchNorm -> optional activation.

    `zero_init=True` makes the output start at zero: batch norm's scale starts at
    0, or without batch norm the convolution's kernel does.
    """
    conv = keras.layers.Conv2DTranspose if transpose else keras.layers.Conv2D
    x = conv(
        filters,
        kernel_size,
        strides=strides,
        padding="same",
        use_bias=not use_batch_norm,
        kernel_initializer="zeros" if zero_init and not use_batch_norm else "he_normal",
        name=f"{name}_conv",
    )(x)
    if use_batch_norm:
        x = keras.layers.BatchNormalization(
            momentum=BN_MOMENTUM,
            epsilon=BN_EPSILON,
            gamma_initializer="zeros" if zero_init else "ones",
            name=f"{name}_bn",
        )(x)
    if activation:
        x = keras.layers.Activation(activation, name=f"{name}_{activation}")(x)
    return x


def apply_basic_block(x, filters, strides=1, use_batch_norm=True, name=None):
    """ResNet basic block: two 3x3 convs plus an identity or 1x1 projection shortcut.

    Reference: He et al. (2016), "Deep Residual Learning for Image Recognition".
    """
    shortcut = x
    if strides != 1 or x.shape[-1] != filters:
        shortcut = apply_conv_norm_act(
            x, filters, 1, strides, use_batch_norm, None, name=f"{name}_shortcut"
        )
    y = apply_conv_norm_act(x, filters, 3, strides, use_batch_norm, name=f"{name}_1")
    y = apply_conv_norm_act(
        y, filters, 3, 1, use_batch_norm, None, zero_init=True, name=f"{name}_2"
    )
    y = keras.layers.Add(name=f"{name}_add")([shortcut, y])
    return keras.layers.Activation("relu", name=f"{name}_out")(y)


def apply_bottleneck_block(x, filters, strides=1, use_batch_norm=True, name=None):
    """ResNet bottleneck block: 1x1 -> 3x3 (strided, as in ResNet v1.5) -> 1x1 (4x).

    Reference: He et al. (2016), "Deep Residual Learning for Image Recognition".
    """
    out_filters = 4 * filters
    shortcut = x
    if strides != 1 or x.shape[-1] != out_filters:
        shortcut = apply_conv_norm_act(
            x, out_filters, 1, strides, use_batch_norm, None, name=f"{name}_shortcut"
        )
    y = apply_conv_norm_act(x, filters, 1, 1, use_batch_norm, name=f"{name}_1")
    y = apply_conv_norm_act(y, filters, 3, strides, use_batch_norm, name=f"{name}_2")
    y = apply_conv_norm_act(
        y, out_filters, 1, 1, use_batch_norm, None, zero_init=True, name=f"{name}_3"
    )
    y = keras.layers.Add(name=f"{name}_add")([shortcut, y])
    return keras.layers.Activation("relu", name=f"{name}_out")(y)


BLOCKS = {
    "basic": (apply_basic_block, 1),
    "bottleneck": (apply_bottleneck_block, 4),
}


def same_padding_size(size, strides):
    """Spatial size after a 'same'-padded op with these strides: ceil(size / strides)."""
    return -(-size // strides)


def apply_upsample_to(x, target_hw, interpolation="nearest", name=None):
    """Interpolation upsampling to exactly `target_hw`.

    Upsamples by the smallest integer factor that reaches the target, then crops
    the extra bottom/right row or column that an odd encoder size leaves.
    """
    height, width = x.shape[1], x.shape[2]
    target_h, target_w = target_hw
    factors = (same_padding_size(target_h, height), same_padding_size(target_w, width))
    if factors != (1, 1):
        x = keras.layers.UpSampling2D(
            factors, interpolation=interpolation, name=f"{name}_upsample"
        )(x)
    return apply_crop_to(x, target_hw, name=name)


def apply_crop_to(x, target_hw, name=None):
    """Crops the bottom/right of `x` to `target_hw` (no-op when already that size)."""
    extra_h = x.shape[1] - target_hw[0]
    extra_w = x.shape[2] - target_hw[1]
    if extra_h < 0 or extra_w < 0:
        raise ValueError(f"Cannot crop a {x.shape[1]}x{x.shape[2]} feature map to {target_hw}.")
    if extra_h or extra_w:
        x = keras.layers.Cropping2D(((0, extra_h), (0, extra_w)), name=f"{name}_crop")(x)
    return x
