"""keras-resvae: variational autoencoders with swappable basic and ResNet networks.

Example:
>>> import keras_resvae
>>> vae = keras_resvae.build_vae("resnet18", (32, 32, 3), latent_dim=128)
>>> vae.compile(optimizer="adam")
>>> vae.fit(x_train, epochs=30, batch_size=128)
"""

from keras_resvae import losses
from keras_resvae.architectures import (
    ARCHITECTURES,
    LatentHead,
    build_networks,
    build_resnet_trunk,
    encoder_from_backbone,
    get_architecture,
)
from keras_resvae.build import build_vae
from keras_resvae.sampling import Sampling
from keras_resvae.vae import VAE

__version__ = "0.1.0"

__all__ = [
    "ARCHITECTURES",
    "LatentHead",
    "Sampling",
    "VAE",
    "__version__",
    "build_networks",
    "build_resnet_trunk",
    "build_vae",
    "encoder_from_backbone",
    "get_architecture",
    "losses",
]
