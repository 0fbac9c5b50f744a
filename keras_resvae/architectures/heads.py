"""The latent head: feature maps -> (z_mean, z_log_var), and the backbone seam."""

import numbers

import keras


@keras.saving.register_keras_serializable(package="keras_resvae")
class LatentHead(keras.layers.Layer):
    """One dense layer of `2 * latent_dim` units, split into z_mean and z_log_var.

    It always computes in float32 so the KL term and the sampling noise stay
    accurate under mixed precision.

    Args:
        latent_dim: int. Size of the latent code.

    Example:
    >>> z_mean, z_log_var = LatentHead(16)(keras.ops.ones((2, 64)))  # (2, 16) each
    """

    def __init__(self, latent_dim, **kwargs):
        kwargs["dtype"] = "float32"
        super().__init__(**kwargs)
        check_latent_dim(latent_dim)
        self.latent_dim = int(latent_dim)
        self.dense = keras.layers.Dense(2 * self.latent_dim, dtype="float32", name="dense")

    def build(self, input_shape):
        self.dense.build(input_shape)

    def call(self, features):
        moments = self.dense(features)
        return moments[:, : self.latent_dim], moments[:, self.latent_dim :]

    def compute_output_shape(self, input_shape):
        shape = (input_shape[0], self.latent_dim)
        return shape, shape

    def get_config(self):
        config = super().get_config()
        config["latent_dim"] = self.latent_dim
        config.pop("dtype", None)
        return config


def apply_latent_head(features, latent_dim, flatten_last=False):
    """Pools feature maps and joins them into the latent head.

    The last feature map is flattened (`flatten_last=True`, the basic VAE) or
    global-average-pooled (ResNets). Any earlier feature maps - the skip
    connections of the inference network, FCN-style - are global-average-pooled
    and concatenated with it. Returns `[z_mean, z_log_var]`.
    """
    *earlier, last = features
    if flatten_last:
        pooled = [keras.layers.Flatten(name="flatten")(last)]
    else:
        pooled = [keras.layers.GlobalAveragePooling2D(name="pool")(last)]
    for index, feature in enumerate(earlier, start=1):
        pooled.append(keras.layers.GlobalAveragePooling2D(name=f"skip{index}_pool")(feature))
    joined = pooled[0]
    if len(pooled) > 1:
        joined = keras.layers.Concatenate(name="skip_concat")(pooled[1:] + pooled[:1])
    return LatentHead(latent_dim, name="latent_head")(joined)


def encoder_from_backbone(backbone, latent_dim, name="encoder"):
    """Puts our latent head on any Keras backbone that maps images to feature maps.

    The backbone's outputs (one feature map, or a list of them for skip
    connections) are pooled and joined by `apply_latent_head`.

    Args:
        backbone: a built `keras.Model` with a fixed input shape `(H, W, C)`.
        latent_dim: int. Size of the latent code.
        name: str. Name of the returned model.

    Returns:
        A functional encoder: images -> `[z_mean, z_log_var]`.

    Example:
    >>> backbone = keras_cv.models.ResNetBackbone(
    ...     stackwise_filters=[64, 128, 256, 512], stackwise_blocks=[2, 2, 2, 2],
    ...     stackwise_strides=[1, 2, 2, 2], block_type="basic_block",
    ...     include_rescaling=False, input_shape=(32, 32, 3))
    >>> encoder = encoder_from_backbone(backbone, latent_dim=64)
    """
    input_shape = tuple(backbone.input_shape[1:])
    if len(input_shape) != 3 or None in input_shape:
        raise ValueError(
            "The backbone needs a fixed input shape (height, width, channels). "
            f"Received: input_shape={input_shape}. Build it with "
            "`input_shape=(H, W, C)`."
        )
    images = keras.Input(input_shape, name="images")
    outputs = backbone(images)
    features = list(outputs) if isinstance(outputs, (list, tuple)) else [outputs]
    for feature in features:
        if len(feature.shape) != 4:
            raise ValueError(
                "The backbone must return feature maps of shape (batch, H, W, C). "
                f"Received an output of shape {feature.shape}."
            )
    return keras.Model(images, apply_latent_head(features, latent_dim), name=name)


def check_latent_dim(latent_dim):
    """Raises a `ValueError` unless `latent_dim` is a positive integer."""
    if (
        isinstance(latent_dim, bool)
        or not isinstance(latent_dim, numbers.Integral)
        or latent_dim < 1
    ):
        raise ValueError(
            f"`latent_dim` must be a positive integer. Received: latent_dim={latent_dim!r}"
        )
