"""`build_vae`: a ready VAE from an architecture name."""

from keras import ops

from keras_resvae import losses
from keras_resvae.architectures.registry import (
    build_hierarchy_networks,
    build_networks,
    get_architecture,
    resolve_architecture,
)
from keras_resvae.hierarchical_vae import HierarchicalVAE
from keras_resvae.vae import VAE


def build_vae(
    arch,
    image_shape,
    latent_dim=32,
    *,
    use_batch_norm=None,
    skip=False,
    width=1.0,
    stem=None,
    upsampling=None,
    pooling=None,
    num_scales=None,
    groups_per_scale=None,
    likelihood="gaussian_learned",
    output_activation="sigmoid",
    beta=1.0,
    kl_warmup_steps=0,
    sigma=0.1,
    seed=None,
    free_bits=0.0,
    grad_skip_threshold=None,
    name="vae",
):
    """Builds a VAE of a registered architecture.

    Args:
        arch: `"basic"`, `"resnet18"`, `"resnet50"` or `"hvae"` (see `list_architectures()`).
        image_shape: `(height, width, channels)`, sides at least 8. The output has
            exactly this shape.
        latent_dim: int. Size of the latent code. Default 32.
        use_batch_norm: bool or None. None: the architecture's default (off for
            `basic`, as in the study; on for the ResNets). False removes every
            normalisation layer.
        skip: bool. Skip connections inside the inference network: every encoder
            stage is average-pooled into the latent head (never around the latent,
            so prior samples still work).
        width: float. Multiplier on every filter count.
        stem: ResNets only. `"cifar"` (3x3 stride 1) or `"imagenet"` (7x7 stride
            2 + max-pool). None: `"cifar"` up to 64 px, else `"imagenet"`.
        upsampling: ResNets only. `"nearest"` (default) or `"bilinear"`.
        pooling: ResNets only. How the last feature map enters the latent head:
            `"average"` (default, the study's global average pooling) or
            `"flatten"` (keeps every position, as the basic VAE does).
        num_scales: `hvae` only. Resolutions with latent groups, one per halving
            of the image side (default 3: 4x4, 8x8, 16x16 for 32x32 images). For `hvae`,
            `latent_dim` is each group's number of channels.
        groups_per_scale: `hvae` only. Latent groups at each of those
            resolutions (default 1). Each group's prior is conditioned on the
            groups before it, so more groups give the prior more structure.
        likelihood, output_activation, beta, kl_warmup_steps, sigma, seed,
            free_bits, grad_skip_threshold: see `VAE`.
        name: str. The model's name.

    Returns:
        A `VAE`; compile it with an optimizer and call `fit`. A `tanh` model's
        decoder starts as the `sigmoid` model's of the same seed does, with its
        output mapped to [-1, 1] (see `match_sigmoid_start`).

    Example:
    >>> vae = build_vae("resnet18", (32, 32, 3), latent_dim=128, use_batch_norm=False)
    >>> vae.compile(optimizer="adam")
    """
    options = dict(
        use_batch_norm=use_batch_norm,
        skip=skip,
        width=width,
        stem=stem,
        upsampling=upsampling,
        pooling=pooling,
        num_scales=num_scales,
        groups_per_scale=groups_per_scale,
    )
    objective = dict(
        likelihood=likelihood,
        output_activation=output_activation,
        beta=beta,
        kl_warmup_steps=kl_warmup_steps,
        sigma=sigma,
        seed=seed,
        free_bits=free_bits,
        grad_skip_threshold=grad_skip_threshold,
        name=name,
    )
    if get_architecture(arch).hierarchical:
        architecture = resolve_architecture(arch, image_shape, latent_dim, **options)
        networks = build_hierarchy_networks(architecture)
        match_sigmoid_start(networks["head"], output_activation)
        return HierarchicalVAE(networks, architecture=architecture, **objective)
    encoder, decoder, architecture = build_networks(arch, image_shape, latent_dim, **options)
    match_sigmoid_start(decoder, output_activation)
    return VAE(encoder, decoder, architecture=architecture, **objective)


def match_sigmoid_start(decoder, output_activation):
    """Scales the decoder's output layer so a tanh model starts as a sigmoid one.

    tanh(a) = 2 sigmoid(2a) - 1: at Glorot's scale a tanh output is twice as
    steep as a sigmoid one. Dividing the last layer's initial kernel by the
    activation's logit scale (2 for tanh, 1 for sigmoid) makes the centred
    decoder's first output, for any code, exactly the sigmoid decoder's mapped
    to [-1, 1]; the output bias is divided the same way
    (`VAE.initialize_output_bias`).
    Without it, 3 of 8 seeds of the centred ResNet-18 without batch norm were
    pushed into the saturated tanh in their first steps and never left it.

    Args:
        decoder: the decoder `keras.Model`; its last layer has a `kernel`.
        output_activation: `"sigmoid"` (unchanged) or `"tanh"`.

    Example:
    >>> match_sigmoid_start(decoder, "tanh")  # halves decoder.layers[-1].kernel
    """
    scale = losses.logit_scale(output_activation)
    kernel = getattr(decoder.layers[-1], "kernel", None)
    if scale != 1.0 and kernel is not None:
        kernel.assign(ops.cast(kernel, "float32") / scale)
