"""ResNet encoders and their mirrored decoders.

ResNet-18 and ResNet-50 are the same builder with different `block_type` and
`stage_blocks`. With `stem="imagenet"`, `width=1` and batch norm on, the trunk is
the standard network (11,186,112 and 23,561,152 Keras parameters, counting the
batch-norm moving statistics, as keras-cv's `ResNetBackbone` does).

Reference: He et al. (2016), "Deep Residual Learning for Image Recognition".
"""

import math

import keras

from keras_resvae.architectures.blocks import (
    BLOCKS,
    BN_EPSILON,
    BN_MOMENTUM,
    apply_conv_norm_act,
    apply_upsample_to,
    same_padding_size,
    scaled_filters,
)
from keras_resvae.architectures.heads import apply_latent_head

STAGE_FILTERS = (64, 128, 256, 512)
STAGE_STRIDES = (1, 2, 2, 2)
STEMS = ("cifar", "imagenet")
UPSAMPLING = ("nearest", "bilinear")
# How the last feature map enters the latent head: averaged over its positions
# (the study's ResNets), or flattened, which keeps every position.
POOLING = ("average", "flatten")


def check_stem(stem):
    """Raises a `ValueError` unless `stem` is a known stem."""
    if stem not in STEMS:
        raise ValueError(f"`stem` must be one of {list(STEMS)}. Received: stem={stem!r}")


def check_upsampling(upsampling):
    """Raises a `ValueError` unless `upsampling` is a known interpolation."""
    if upsampling not in UPSAMPLING:
        raise ValueError(
            f"`upsampling` must be one of {list(UPSAMPLING)}. Received: upsampling={upsampling!r}"
        )


def check_pooling(pooling):
    """Raises a `ValueError` unless `pooling` is a known way into the latent head."""
    if pooling not in POOLING:
        raise ValueError(f"`pooling` must be one of {list(POOLING)}. Received: pooling={pooling!r}")


def _check_block_type(block_type):
    if block_type not in BLOCKS:
        raise ValueError(f"`block_type` must be one of {list(BLOCKS)}. Received: {block_type!r}")


def _halve(hw):
    return tuple(same_padding_size(size, 2) for size in hw)


def encoder_sizes(image_shape, stem):
    """Spatial sizes along the encoder.

    Returns:
        `(stem_sizes, stage_sizes)`: the sizes the stem passes through (the image
        size first; for the ImageNet stem also the size after its strided conv)
        and the output size of each of the four stages.
    """
    check_stem(stem)
    size = tuple(image_shape[:2])
    stem_sizes = [size]
    if stem == "imagenet":
        size = _halve(size)
        stem_sizes.append(size)
        size = _halve(size)
    stage_sizes = []
    for strides in STAGE_STRIDES:
        if strides == 2:
            size = _halve(size)
        stage_sizes.append(size)
    return stem_sizes, stage_sizes


def apply_resnet_stages(
    images,
    block_type="basic",
    stage_blocks=(2, 2, 2, 2),
    use_batch_norm=True,
    width=1.0,
    stem="cifar",
):
    """Applies the stem and the four ResNet stages; returns every stage's output."""
    check_stem(stem)
    _check_block_type(block_type)
    apply_block, _ = BLOCKS[block_type]
    stem_filters = scaled_filters(STAGE_FILTERS[0], width)
    if stem == "imagenet":
        x = apply_conv_norm_act(images, stem_filters, 7, 2, use_batch_norm, name="stem")
        x = keras.layers.MaxPooling2D(3, 2, padding="same", name="stem_pool")(x)
    else:
        x = apply_conv_norm_act(images, stem_filters, 3, 1, use_batch_norm, name="stem")
    features = []
    for stage, (filters, strides, blocks) in enumerate(
        zip(STAGE_FILTERS, STAGE_STRIDES, stage_blocks), start=1
    ):
        for block in range(1, blocks + 1):
            x = apply_block(
                x,
                scaled_filters(filters, width),
                strides if block == 1 else 1,
                use_batch_norm,
                name=f"stage{stage}_block{block}",
            )
        features.append(x)
    return features


def build_resnet_trunk(
    image_shape,
    block_type="basic",
    stage_blocks=(2, 2, 2, 2),
    use_batch_norm=True,
    width=1.0,
    stem="imagenet",
    name="resnet_trunk",
):
    """The ResNet feature extractor alone: images -> last stage's feature map.

    Example:
    >>> trunk = build_resnet_trunk((224, 224, 3), "basic", (2, 2, 2, 2))
    >>> trunk.count_params()  # 11,186,112: the standard ResNet-18
    """
    images = keras.Input(image_shape, name="images")
    features = apply_resnet_stages(images, block_type, stage_blocks, use_batch_norm, width, stem)
    return keras.Model(images, features[-1], name=name)


def build_resnet_encoder(
    image_shape,
    latent_dim,
    block_type="basic",
    stage_blocks=(2, 2, 2, 2),
    use_batch_norm=True,
    skip=False,
    width=1.0,
    stem="cifar",
    pooling="average",
):
    """ResNet encoder: trunk -> global average pool (or flatten) -> Dense(2 * latent_dim).

    Args:
        image_shape: `(height, width, channels)`.
        latent_dim: int. Size of the latent code.
        block_type: `"basic"` (ResNet-18/34) or `"bottleneck"` (ResNet-50/101).
        stage_blocks: blocks per stage, e.g. `(2, 2, 2, 2)` for ResNet-18.
        use_batch_norm: bool. If False, no normalisation layer at all.
        skip: bool. Average-pool every stage's output into the latent head
            (FCN-style skip connections inside the inference network).
        width: float. Multiplier on the stage widths 64-128-256-512.
        stem: `"cifar"` (3x3 stride 1) or `"imagenet"` (7x7 stride 2 + max-pool).
        pooling: `"average"` (the study's: global average pooling, which keeps
            what is in the last feature map but not where) or `"flatten"` (every
            position of the last map feeds the latent head, mirroring the
            decoder's dense layer, as the basic VAE does).

    Example:
    >>> encoder = build_resnet_encoder((32, 32, 3), 128, "basic", (2, 2, 2, 2))
    >>> encoder = build_resnet_encoder((32, 32, 3), 128, pooling="flatten")
    """
    check_pooling(pooling)
    images = keras.Input(image_shape, name="images")
    features = apply_resnet_stages(images, block_type, stage_blocks, use_batch_norm, width, stem)
    if not skip:
        features = features[-1:]
    head = apply_latent_head(features, latent_dim, flatten_last=pooling == "flatten")
    return keras.Model(images, head, name="encoder")


def build_resnet_decoder(
    image_shape,
    latent_dim,
    block_type="basic",
    stage_blocks=(2, 2, 2, 2),
    use_batch_norm=True,
    width=1.0,
    stem="cifar",
    upsampling="nearest",
):
    """The encoder reversed, returning pre-activation logits.

    Dense -> reshape to the last stage's size -> stages in reverse order, with
    interpolation upsampling (to the matching encoder stage's exact size) and a
    convolution between stages (3x3; 1x1 for bottleneck stages) -> the stem
    undone (upsampling + convolution for the ImageNet stem) -> a 3x3 convolution
    to the image's channels. The VAE applies the output activation to these logits.

    Example:
    >>> decoder = build_resnet_decoder((32, 32, 3), 128, "basic", (2, 2, 2, 2))
    """
    check_upsampling(upsampling)
    _check_block_type(block_type)
    apply_block, expansion = BLOCKS[block_type]
    stem_sizes, stage_sizes = encoder_sizes(image_shape, stem)
    filters = [scaled_filters(f, width) for f in STAGE_FILTERS]

    # Between bottleneck stages the channels are 4x wide: a 1x1 transition keeps
    # the decoder the encoder's size, as the bottleneck design itself does.
    transition_kernel = 3 if expansion == 1 else 1

    z = keras.Input((latent_dim,), name="z")
    top_size, top_channels = stage_sizes[-1], expansion * filters[-1]
    # He init: Glorot would scale this huge fan-out layer's output down to ~0.02.
    x = keras.layers.Dense(
        math.prod(top_size) * top_channels,
        use_bias=not use_batch_norm,
        kernel_initializer="he_normal",
        name="dense",
    )(z)
    x = keras.layers.Reshape((*top_size, top_channels), name="reshape")(x)
    if use_batch_norm:
        x = keras.layers.BatchNormalization(
            momentum=BN_MOMENTUM, epsilon=BN_EPSILON, name="dense_bn"
        )(x)
    x = keras.layers.Activation("relu", name="dense_relu")(x)

    for stage in reversed(range(len(STAGE_FILTERS))):
        name = f"stage{stage + 1}"
        if stage < len(STAGE_FILTERS) - 1:
            x = apply_upsample_to(x, stage_sizes[stage], upsampling, name=f"{name}_up")
            x = apply_conv_norm_act(
                x,
                expansion * filters[stage],
                transition_kernel,
                1,
                use_batch_norm,
                name=f"{name}_up",
            )
        for block in range(1, stage_blocks[stage] + 1):
            x = apply_block(x, filters[stage], 1, use_batch_norm, name=f"{name}_block{block}")

    if stem == "imagenet":
        x = apply_upsample_to(x, stem_sizes[1], upsampling, name="stem_up1")
        x = apply_conv_norm_act(x, filters[0], 3, 1, use_batch_norm, name="stem_up1")
    x = apply_upsample_to(x, stem_sizes[0], upsampling, name="stem_up0")
    logits = keras.layers.Conv2D(
        image_shape[-1], 3, padding="same", dtype="float32", name="logits"
    )(x)
    return keras.Model(z, logits, name="decoder")
