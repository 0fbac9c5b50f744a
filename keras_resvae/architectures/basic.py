"""The study's basic convolutional VAE networks."""

import math

import keras

from keras_resvae.architectures.blocks import (
    apply_conv_norm_act,
    apply_crop_to,
    same_padding_size,
    scaled_filters,
)
from keras_resvae.architectures.heads import apply_latent_head

ENCODER_FILTERS = (32, 64)


def build_basic_encoder(image_shape, latent_dim, use_batch_norm=False, skip=False, width=1.0):
    """The study's basic encoder.

    Conv2D(32, 3x3, stride 2, same, ReLU) -> Conv2D(64, 3x3, stride 2, same, ReLU)
    -> flatten -> Dense(2 * latent_dim) split into (z_mean, z_log_var). With
    `skip=True`, the first conv's features are also average-pooled into the head.

    Args:
        image_shape: `(height, width, channels)`.
        latent_dim: int. Size of the latent code.
        use_batch_norm: bool, default False (the study's basic VAE has none).
        skip: bool. Skip connections from every stage into the latent head.
        width: float. Multiplier on the filter counts 32 and 64.

    Example:
    >>> encoder = build_basic_encoder((28, 28, 1), latent_dim=2)
    """
    images = keras.Input(image_shape, name="images")
    x = images
    features = []
    for index, filters in enumerate(ENCODER_FILTERS, start=1):
        x = apply_conv_norm_act(
            x, scaled_filters(filters, width), 3, 2, use_batch_norm, name=f"conv{index}"
        )
        features.append(x)
    if not skip:
        features = features[-1:]
    outputs = apply_latent_head(features, latent_dim, flatten_last=True)
    return keras.Model(images, outputs, name="encoder")


def build_basic_decoder(image_shape, latent_dim, use_batch_norm=False, width=1.0):
    """The study's basic decoder, returning pre-activation logits.

    Dense -> reshape to the encoder's last feature-map size -> Conv2DTranspose(64,
    3x3, stride 2) -> Conv2DTranspose(32, 3x3, stride 2) -> crop to the image size
    -> Conv2DTranspose(C, 3x3). The VAE applies the output activation (sigmoid
    or tanh) to these logits.

    Example:
    >>> decoder = build_basic_decoder((28, 28, 1), latent_dim=2)
    """
    height, width_px, channels = image_shape
    grid = (
        same_padding_size(same_padding_size(height, 2), 2),
        same_padding_size(same_padding_size(width_px, 2), 2),
    )
    top_filters = scaled_filters(ENCODER_FILTERS[-1], width)
    z = keras.Input((latent_dim,), name="z")
    x = keras.layers.Dense(math.prod(grid) * top_filters, activation="relu", name="dense")(z)
    x = keras.layers.Reshape((*grid, top_filters), name="reshape")(x)
    for index, filters in enumerate(reversed(ENCODER_FILTERS), start=1):
        x = apply_conv_norm_act(
            x,
            scaled_filters(filters, width),
            3,
            2,
            use_batch_norm,
            transpose=True,
            name=f"deconv{index}",
        )
    x = apply_crop_to(x, (height, width_px), name="output")
    logits = keras.layers.Conv2DTranspose(
        channels, 3, padding="same", dtype="float32", name="logits"
    )(x)
    return keras.Model(z, logits, name="decoder")
