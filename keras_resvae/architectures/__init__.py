"""Encoder and decoder networks, and the registry of architectures by name."""

from keras_resvae.architectures.basic import build_basic_decoder, build_basic_encoder
from keras_resvae.architectures.heads import LatentHead, encoder_from_backbone
from keras_resvae.architectures.registry import (
    ARCHITECTURES,
    Architecture,
    build_networks,
    get_architecture,
    resolve_architecture,
)
from keras_resvae.architectures.resnet import (
    build_resnet_decoder,
    build_resnet_encoder,
    build_resnet_trunk,
)

__all__ = [
    "ARCHITECTURES",
    "Architecture",
    "LatentHead",
    "build_basic_decoder",
    "build_basic_encoder",
    "build_networks",
    "build_resnet_decoder",
    "build_resnet_encoder",
    "build_resnet_trunk",
    "encoder_from_backbone",
    "get_architecture",
    "resolve_architecture",
]
