"""Architectures by name: `basic`, `resnet18`, `resnet50`, `hvae`.

Each entry knows how to build an encoder and a decoder and which options it
takes. The CLI's choices and `build_vae` both come from here.
"""

import dataclasses
import functools
import numbers
from collections.abc import Callable

from keras_resvae.architectures.basic import build_basic_decoder, build_basic_encoder
from keras_resvae.architectures.heads import check_latent_dim
from keras_resvae.architectures.hierarchical import build_hierarchy, latent_sizes
from keras_resvae.architectures.resnet import (
    build_resnet_decoder,
    build_resnet_encoder,
    check_pooling,
    check_stem,
    check_upsampling,
)

MIN_IMAGE_SIDE = 8
# The CIFAR stem keeps full resolution through stage 1; past 64 px that is too
# costly, and the ImageNet stem's 4x reduction is the standard choice.
CIFAR_STEM_MAX_SIDE = 64


@dataclasses.dataclass(frozen=True)
class Architecture:
    """A named encoder/decoder pair and the options it accepts.

    Attributes:
        name: registry name.
        summary: one line for `resvae archs`.
        build_encoder: `(image_shape, latent_dim, use_batch_norm, skip, width,
            **options) -> keras.Model`; None for a hierarchical VAE.
        build_decoder: `(image_shape, latent_dim, use_batch_norm, width,
            **options) -> keras.Model`; None for a hierarchical VAE.
        default_use_batch_norm: what `use_batch_norm=None` means.
        encoder_options: names of the encoder's extra options (beyond batch
            norm, skip and width).
        decoder_options: names of the decoder's extra options.
        build_hierarchy: for a hierarchical VAE, `(image_shape, latent_channels,
            num_scales, width, use_batch_norm, groups_per_scale) -> networks` (see
            `keras_resvae.HierarchicalVAE`); None for an encoder/decoder pair.
    """

    name: str
    summary: str
    build_encoder: Callable
    build_decoder: Callable
    default_use_batch_norm: bool
    encoder_options: tuple = ()
    decoder_options: tuple = ()
    build_hierarchy: Callable = None

    @property
    def options(self):
        """Every extra option this architecture takes."""
        return tuple(dict.fromkeys(self.encoder_options + self.decoder_options))

    @property
    def hierarchical(self):
        """True for a hierarchical VAE (groups of latents at several resolutions)."""
        return self.build_hierarchy is not None


# The options only a hierarchical VAE takes.
HIERARCHY_OPTIONS = ("num_scales", "groups_per_scale")


def _resnet(name, block_type, stage_blocks, summary):
    kwargs = dict(block_type=block_type, stage_blocks=stage_blocks)
    return Architecture(
        name=name,
        summary=summary,
        build_encoder=functools.partial(build_resnet_encoder, **kwargs),
        build_decoder=functools.partial(build_resnet_decoder, **kwargs),
        default_use_batch_norm=True,
        encoder_options=("stem", "pooling"),
        decoder_options=("stem", "upsampling"),
    )


ARCHITECTURES = {
    arch.name: arch
    for arch in (
        Architecture(
            name="basic",
            summary="the study's basic VAE: 2 strided convs (32, 64) / 3 transposed convs",
            build_encoder=build_basic_encoder,
            build_decoder=build_basic_decoder,
            default_use_batch_norm=False,
        ),
        _resnet(
            "resnet18",
            "basic",
            (2, 2, 2, 2),
            "ResNet-18 encoder (basic blocks 2-2-2-2), mirrored decoder",
        ),
        _resnet(
            "resnet50",
            "bottleneck",
            (3, 4, 6, 3),
            "ResNet-50 encoder (bottleneck blocks 3-4-6-3), mirrored decoder",
        ),
        Architecture(
            name="hvae",
            summary="hierarchical residual VAE: spatial latent groups at 1/8, 1/4, 1/2 of the side",
            build_encoder=None,
            build_decoder=None,
            default_use_batch_norm=False,
            encoder_options=HIERARCHY_OPTIONS,
            build_hierarchy=build_hierarchy,
        ),
    )
}
# Resolutions with latent groups in the hierarchical VAE: one per halving of the
# image side. One group at each by default: two were better after 72 epochs on
# digits but worse after 24, with 1.8x the parameters at width 0.25 (see README).
DEFAULT_NUM_SCALES = 3
DEFAULT_GROUPS_PER_SCALE = 1


def get_architecture(name):
    """Returns the registered `Architecture` called `name`.

    Example:
    >>> get_architecture("resnet18").default_use_batch_norm  # True
    """
    if name not in ARCHITECTURES:
        raise ValueError(f"`arch` must be one of {sorted(ARCHITECTURES)}. Received: arch={name!r}")
    return ARCHITECTURES[name]


def check_image_shape(image_shape):
    """Validates `(height, width, channels)`; returns it as a tuple of ints."""
    try:
        shape = tuple(image_shape)
    except TypeError:
        shape = None
    if (
        shape is None
        or len(shape) != 3
        or not all(isinstance(s, numbers.Integral) and not isinstance(s, bool) for s in shape)
        or min(shape[:2]) < MIN_IMAGE_SIDE
        or shape[2] < 1
    ):
        raise ValueError(
            "`image_shape` must be (height, width, channels) with height and width "
            f">= {MIN_IMAGE_SIDE} and channels >= 1, e.g. (28, 28, 1) or (32, 32, 3). "
            f"Received: image_shape={image_shape!r}"
        )
    return tuple(int(s) for s in shape)


def _check_width(width):
    if isinstance(width, bool) or not isinstance(width, numbers.Real) or not width > 0:
        raise ValueError(f"`width` must be a positive number. Received: width={width!r}")


def resolve_architecture(
    arch,
    image_shape,
    latent_dim,
    *,
    use_batch_norm=None,
    skip=False,
    width=1.0,
    stem=None,
    upsampling=None,
    pooling=None,
    num_scales=None,
    groups_per_scale=None,
):
    """Validates every option and fills in the defaults.

    For the hierarchical `hvae`, `latent_dim` is the number of channels of
    each latent group (the code at each position); the flat code that
    `VAE.latent_dim` counts holds every group's positions times that.

    Returns:
        A JSON-serialisable dict describing the networks, accepted by
        `build_networks(**config)`.
    """
    architecture = get_architecture(arch)
    image_shape = check_image_shape(image_shape)
    check_latent_dim(latent_dim)
    _check_width(width)
    given = {
        "stem": stem,
        "upsampling": upsampling,
        "pooling": pooling,
        "num_scales": num_scales,
        "groups_per_scale": groups_per_scale,
    }
    unsupported = [k for k, v in given.items() if v is not None and k not in architecture.options]
    if unsupported:
        takers = sorted(n for n, a in ARCHITECTURES.items() if unsupported[0] in a.options)
        raise ValueError(
            f"`{unsupported[0]}` applies only to the architectures {takers}. "
            f"Received: arch={arch!r}, {unsupported[0]}={given[unsupported[0]]!r}"
        )
    config = dict(
        arch=arch,
        image_shape=list(image_shape),
        latent_dim=int(latent_dim),
        use_batch_norm=(
            architecture.default_use_batch_norm if use_batch_norm is None else bool(use_batch_norm)
        ),
        skip=bool(skip),
        width=float(width),
    )
    if "stem" in architecture.options:
        if stem is None:
            stem = "cifar" if max(image_shape[:2]) <= CIFAR_STEM_MAX_SIDE else "imagenet"
        check_stem(stem)
        config["stem"] = stem
    if "upsampling" in architecture.options:
        upsampling = "nearest" if upsampling is None else upsampling
        check_upsampling(upsampling)
        config["upsampling"] = upsampling
    if "pooling" in architecture.options:
        pooling = "average" if pooling is None else pooling
        check_pooling(pooling)
        config["pooling"] = pooling
    if architecture.hierarchical:
        if skip:
            raise ValueError(
                f"`skip` does not apply to {arch!r}: its inference network already takes the "
                "features of every resolution into the latent groups. Received: skip=True"
            )
        num_scales = _positive_integer(num_scales, "num_scales", DEFAULT_NUM_SCALES)
        latent_sizes(image_shape, num_scales)  # refuses groups smaller than 2x2
        config["num_scales"] = num_scales
        config["groups_per_scale"] = _positive_integer(
            groups_per_scale, "groups_per_scale", DEFAULT_GROUPS_PER_SCALE
        )
    return config


def _positive_integer(value, name, default):
    """`value` as an int of at least 1, or `default` for None."""
    value = default if value is None else value
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise ValueError(f"`{name}` must be an integer. Received: {value!r}")
    if value < 1:
        raise ValueError(f"`{name}` must be at least 1. Received: {value!r}")
    return int(value)


def build_networks(arch, image_shape, latent_dim, **options):
    """Builds the encoder and decoder of a registered architecture.

    Args:
        arch: `"basic"`, `"resnet18"` or `"resnet50"`.
        image_shape: `(height, width, channels)`, sides at least 8.
        latent_dim: int. Size of the latent code.
        **options: `use_batch_norm`, `skip`, `width`, and for ResNets `stem`,
            `upsampling` and `pooling`; see `resolve_architecture`.

    Returns:
        `(encoder, decoder, config)`, where `config` is the resolved options.

    Example:
    >>> encoder, decoder, config = build_networks("resnet18", (32, 32, 3), 64, width=0.5)
    """
    config = resolve_architecture(arch, image_shape, latent_dim, **options)
    architecture = get_architecture(arch)
    shape = tuple(config["image_shape"])
    if architecture.hierarchical:
        from keras_resvae.hierarchical_vae import PosteriorMeanPath, PriorPath

        networks = build_hierarchy_networks(config)
        return (
            PosteriorMeanPath(networks, name="encoder"),
            PriorPath(networks, name="decoder"),
            config,
        )
    encoder = architecture.build_encoder(
        shape,
        config["latent_dim"],
        use_batch_norm=config["use_batch_norm"],
        skip=config["skip"],
        width=config["width"],
        **{name: config[name] for name in architecture.encoder_options},
    )
    decoder = architecture.build_decoder(
        shape,
        config["latent_dim"],
        use_batch_norm=config["use_batch_norm"],
        width=config["width"],
        **{name: config[name] for name in architecture.decoder_options},
    )
    return encoder, decoder, config


def build_hierarchy_networks(config):
    """The networks of a hierarchical architecture from its resolved `config`.

    Example:
    >>> config = resolve_architecture("hvae", (32, 32, 3), 4)
    >>> networks = build_hierarchy_networks(config)  # for HierarchicalVAE(networks)
    """
    architecture = get_architecture(config["arch"])
    return architecture.build_hierarchy(
        tuple(config["image_shape"]),
        latent_channels=config["latent_dim"],
        num_scales=config["num_scales"],
        width=config["width"],
        use_batch_norm=config["use_batch_norm"],
        # A configuration saved before the option existed had one group per scale.
        groups_per_scale=config.get("groups_per_scale", DEFAULT_GROUPS_PER_SCALE),
    )
