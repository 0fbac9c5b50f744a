"""keras-resvae: variational autoencoders with swappable basic and ResNet networks.

Example:
>>> import keras_resvae
>>> vae = keras_resvae.build_vae("resnet18", (32, 32, 3), latent_dim=128)
>>> vae.compile(optimizer="adam")
>>> vae.fit(x_train, epochs=30, batch_size=128)
>>> vae.save("vae.keras")
>>> vae = keras_resvae.load_vae("vae.keras")  # any backend, any process
"""

# Before Keras is imported: the `resvae` command's --backend, and a quiet TensorFlow.
from keras_resvae.startup import prepare_keras_import

prepare_keras_import()

from keras_resvae import losses  # noqa: E402
from keras_resvae.architectures import (  # noqa: E402
    ARCHITECTURES,
    LatentHead,
    build_networks,
    build_resnet_trunk,
    encoder_from_backbone,
    get_architecture,
)
from keras_resvae.build import build_vae  # noqa: E402
from keras_resvae.hierarchical_vae import HierarchicalVAE  # noqa: E402
from keras_resvae.runs import load_vae  # noqa: E402
from keras_resvae.sampling import Sampling  # noqa: E402
from keras_resvae.vae import VAE  # noqa: E402

__version__ = "0.1.0"

__all__ = [
    "ARCHITECTURES",
    "HierarchicalVAE",
    "LatentHead",
    "Sampling",
    "VAE",
    "__version__",
    "build_networks",
    "build_resnet_trunk",
    "build_vae",
    "encoder_from_backbone",
    "get_architecture",
    "load_vae",
    "losses",
]
