"""Architectures: the study's layer list, ResNet parameter counts, shapes, options."""

import json

import keras
import numpy as np
import pytest
from conftest import blob_images, tiny_vae, to_numpy

import keras_resvae
from keras_resvae.architectures import (
    ARCHITECTURES,
    build_basic_decoder,
    build_basic_encoder,
    build_networks,
    build_resnet_trunk,
    encoder_from_backbone,
)
from keras_resvae.architectures.heads import apply_latent_head

# torchvision's ResNet-18 / ResNet-50 without the classifier have 11,176,512 and
# 23,508,032 parameters; Keras also counts batch norm's two moving statistics per
# channel (4,800 and 26,560 channels), which gives keras-cv's ResNetBackbone counts.
RESNET18_TRUNK_PARAMS = 11_176_512 + 2 * 4_800
RESNET50_TRUNK_PARAMS = 23_508_032 + 2 * 26_560


# Encoder/decoder pairs (the hierarchical VAE has its own tests in test_hierarchical_vae.py).
FLAT = sorted(name for name, arch in ARCHITECTURES.items() if not arch.hierarchical)


def all_layers(model):
    return list(model._flatten_layers(include_self=False, recursive=True))


def test_basic_is_the_studys_model():
    encoder = build_basic_encoder((28, 28, 1), latent_dim=2)
    convs = [layer for layer in encoder.layers if isinstance(layer, keras.layers.Conv2D)]
    assert [(c.filters, c.kernel_size, c.strides, c.padding) for c in convs] == [
        (32, (3, 3), (2, 2), "same"),
        (64, (3, 3), (2, 2), "same"),
    ]
    kinds = [type(layer).__name__ for layer in encoder.layers]
    assert kinds == [
        "InputLayer",
        "Conv2D",
        "Activation",
        "Conv2D",
        "Activation",
        "Flatten",
        "LatentHead",
    ]
    assert encoder.get_layer("latent_head").dense.units == 4

    decoder = build_basic_decoder((28, 28, 1), latent_dim=2)
    deconvs = [layer for layer in decoder.layers if isinstance(layer, keras.layers.Conv2DTranspose)]
    assert [(d.filters, d.kernel_size, d.strides) for d in deconvs] == [
        (64, (3, 3), (2, 2)),
        (32, (3, 3), (2, 2)),
        (1, (3, 3), (1, 1)),
    ]
    assert isinstance(decoder.layers[1], keras.layers.Dense)
    assert decoder.output_shape == (None, 28, 28, 1)
    norms = [x for x in all_layers(decoder) if isinstance(x, keras.layers.BatchNormalization)]
    assert norms == []


@pytest.mark.parametrize(
    "block_type, stage_blocks, expected",
    [
        ("basic", (2, 2, 2, 2), RESNET18_TRUNK_PARAMS),
        ("bottleneck", (3, 4, 6, 3), RESNET50_TRUNK_PARAMS),
    ],
)
def test_resnet_trunks_have_the_standard_parameter_counts(block_type, stage_blocks, expected):
    trunk = build_resnet_trunk((224, 224, 3), block_type, stage_blocks, stem="imagenet")
    assert trunk.count_params() == expected
    assert trunk.output_shape == (None, 7, 7, 512 * (1 if block_type == "basic" else 4))


@pytest.mark.parametrize(
    "block_type, stage_blocks, cv_block",
    [("basic", (2, 2, 2, 2), "basic_block"), ("bottleneck", (3, 4, 6, 3), "block")],
)
def test_resnet_trunks_match_keras_cv(block_type, stage_blocks, cv_block):
    keras_cv = pytest.importorskip("keras_cv")
    reference = keras_cv.models.ResNetBackbone(
        stackwise_filters=[64, 128, 256, 512],
        stackwise_blocks=list(stage_blocks),
        stackwise_strides=[1, 2, 2, 2],
        block_type=cv_block,
        include_rescaling=False,
        input_shape=(64, 64, 3),
    )
    ours = build_resnet_trunk((64, 64, 3), block_type, stage_blocks, stem="imagenet")
    assert ours.count_params() == reference.count_params()
    assert ours.output_shape == reference.output_shape


@pytest.mark.parametrize("arch", sorted(ARCHITECTURES))
def test_no_bn_leaves_no_normalisation_layer(arch):
    encoder, decoder, _ = build_networks(arch, (32, 32, 3), 4, use_batch_norm=False, width=0.125)
    for network in (encoder, decoder):
        normalisers = [
            layer.name for layer in all_layers(network) if "Normalization" in type(layer).__name__
        ]
        assert normalisers == []
    encoder, decoder, _ = build_networks(arch, (32, 32, 3), 4, use_batch_norm=True, width=0.125)
    assert any(isinstance(layer, keras.layers.BatchNormalization) for layer in all_layers(encoder))
    assert any(isinstance(layer, keras.layers.BatchNormalization) for layer in all_layers(decoder))


SHAPES = [(28, 28, 1), (32, 32, 3), (64, 64, 3), (9, 13, 2)]


@pytest.mark.parametrize("arch", sorted(ARCHITECTURES))
@pytest.mark.parametrize("image_shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_output_has_exactly_the_input_shape(arch, image_shape):
    skip = not ARCHITECTURES[arch].hierarchical
    vae = keras_resvae.build_vae(arch, image_shape, 3, width=0.0625, skip=skip)
    images = np.random.default_rng(0).uniform(size=(2, *image_shape)).astype("float32")
    assert tuple(vae(images).shape) == (2, *image_shape)
    assert tuple(vae.sample(2, seed=0).shape) == (2, *image_shape)


@pytest.mark.parametrize("arch", ["resnet18", "resnet50"])
def test_imagenet_stem_handles_odd_sizes(arch):
    vae = keras_resvae.build_vae(
        arch, (37, 45, 3), 3, width=0.0625, stem="imagenet", upsampling="bilinear"
    )
    assert tuple(vae.decode(np.zeros((1, 3), "float32")).shape) == (1, 37, 45, 3)


@pytest.mark.parametrize("arch", FLAT)
def test_skip_joins_every_stage_inside_the_encoder_only(arch):
    plain, decoder_plain, _ = build_networks(arch, (32, 32, 3), 4, width=0.125)
    skip, decoder_skip, _ = build_networks(arch, (32, 32, 3), 4, width=0.125, skip=True)
    stages = 2 if arch == "basic" else 4
    skip_pools = [x for x in skip.layers if x.name.startswith("skip") and "pool" in x.name]
    assert len(skip_pools) == stages - 1
    assert not any(layer.name.startswith("skip") for layer in plain.layers)
    # The decoder takes only z: nothing goes around the latent code.
    assert decoder_skip.input_shape == (None, 4)
    assert decoder_skip.count_params() == decoder_plain.count_params()
    assert skip.count_params() > plain.count_params()


def test_flatten_pooling_keeps_where_features_are():
    average, _, _ = build_networks("resnet18", (32, 32, 3), 4, width=0.125)
    flat, _, config = build_networks("resnet18", (32, 32, 3), 4, width=0.125, pooling="flatten")
    assert config["pooling"] == "flatten"
    # The last stage is 4x4x64: all 1,024 values reach the head, not their 64 means.
    assert flat.get_layer("latent_head").dense.kernel.shape == (4 * 4 * 64, 8)
    assert average.get_layer("latent_head").dense.kernel.shape == (64, 8)
    # A feature map and the same map with its positions moved: averaging cannot
    # tell them apart, flattening can.
    maps = keras.Input((4, 4, 8))
    heads = {
        flatten: keras.Model(maps, apply_latent_head([maps], 4, flatten_last=flatten))
        for flatten in (False, True)
    }
    feature_map = np.random.default_rng(0).normal(size=(1, 4, 4, 8)).astype("float32")
    moved = np.roll(feature_map, 1, axis=(1, 2))
    for flatten, head in heads.items():
        z_mean = to_numpy(head(feature_map)[0])
        z_mean_moved = to_numpy(head(moved)[0])
        assert np.allclose(z_mean, z_mean_moved, atol=1e-5) is not flatten


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(arch="resnet19"), r"\['basic', 'hvae', 'resnet18', 'resnet50'\].*resnet19"),
        (dict(image_shape=(4, 4, 1)), ">= 8"),
        (dict(image_shape=(28, 28)), "height, width, channels"),
        (dict(latent_dim=0), "latent_dim"),
        (dict(width=-1.0), "width"),
        (dict(stem="tiny"), r"\['cifar', 'imagenet'\]"),
        (dict(upsampling="cubic"), r"\['nearest', 'bilinear'\]"),
        (dict(arch="basic", stem="cifar"), r"`stem` applies only to .*resnet18"),
        (dict(pooling="max"), r"\['average', 'flatten'\]"),
        (dict(arch="basic", pooling="flatten"), r"`pooling` applies only to .*resnet18"),
        (dict(likelihood="laplace"), "bernoulli"),
        (dict(output_activation="relu"), r"\['sigmoid', 'tanh'\]"),
        (dict(beta=-1.0), "beta"),
        (dict(kl_warmup_steps=-5), "kl_warmup_steps"),
    ],
)
def test_bad_arguments_give_clear_errors(kwargs, message):
    options = dict(arch="resnet18", image_shape=(32, 32, 3), latent_dim=4, width=0.125)
    options.update(kwargs)
    with pytest.raises(ValueError, match=message):
        keras_resvae.build_vae(options.pop("arch"), options.pop("image_shape"), **options)


def test_resolved_config_records_defaults():
    vae = keras_resvae.build_vae("resnet18", (32, 32, 3), 4, width=0.125)
    assert vae.architecture == dict(
        arch="resnet18",
        image_shape=[32, 32, 3],
        latent_dim=4,
        use_batch_norm=True,
        skip=False,
        width=0.125,
        stem="cifar",
        upsampling="nearest",
        pooling="average",
    )
    assert keras_resvae.build_vae("basic", (28, 28, 1), 2).architecture["use_batch_norm"] is False
    big = keras_resvae.build_vae("resnet18", (96, 96, 3), 4, width=0.0625)
    assert big.architecture["stem"] == "imagenet"


def test_any_backbone_gets_our_latent_head():
    images = keras.Input((16, 16, 3))
    stage1 = keras.layers.Conv2D(8, 3, strides=2, padding="same", activation="relu")(images)
    stage2 = keras.layers.Conv2D(16, 3, strides=2, padding="same", activation="relu")(stage1)
    backbone = keras.Model(images, [stage1, stage2])
    encoder = encoder_from_backbone(backbone, latent_dim=5)
    z_mean, z_log_var = encoder(np.zeros((3, 16, 16, 3), "float32"))
    assert tuple(z_mean.shape) == (3, 5) and tuple(z_log_var.shape) == (3, 5)
    with pytest.raises(ValueError, match="feature maps"):
        encoder_from_backbone(
            keras.Sequential([keras.Input((16, 16, 3)), keras.layers.Flatten()]), 5
        )


def test_keras_cv_resnet_backbone_trains_in_a_vae():
    keras_cv = pytest.importorskip("keras_cv")
    backbone = keras_cv.models.ResNetBackbone(
        # keras-cv's stem has 64 filters, so its first stage must too.
        stackwise_filters=[64, 16, 16, 16],
        stackwise_blocks=[1, 1, 1, 1],
        stackwise_strides=[1, 2, 2, 2],
        block_type="basic_block",
        include_rescaling=False,
        input_shape=(32, 32, 3),
    )
    encoder = encoder_from_backbone(backbone, latent_dim=4)
    _, decoder, _ = build_networks("resnet18", (32, 32, 3), 4, width=0.125)
    vae = keras_resvae.VAE(encoder, decoder, seed=0)
    vae.compile(optimizer=keras.optimizers.Adam(1e-3))
    images = np.random.default_rng(0).uniform(size=(8, 32, 32, 3)).astype("float32")
    history = vae.fit(images, epochs=1, batch_size=4, verbose=0)
    assert np.isfinite(history.history["loss"][-1])
    assert tuple(to_numpy(vae.reconstruct(images[:2])).shape) == (2, 32, 32, 3)


@pytest.mark.parametrize("use_batch_norm", [True, False], ids=["bn", "no_bn"])
def test_resnet_decoder_passes_the_latent_signal_at_init(use_batch_norm):
    # With Glorot init on the decoder's wide first dense layer and residual
    # branches that start non-zero, the no-BN decoder's logits had std 0.009 at
    # init and training stalled at the mean image.
    _, decoder, _ = build_networks(
        "resnet18", (28, 28, 1), 16, width=0.25, use_batch_norm=use_batch_norm
    )
    z = np.random.default_rng(0).normal(size=(64, 16)).astype("float32")
    logits = to_numpy(decoder(z, training=False))
    assert logits.std() > 0.1
    assert logits.std(axis=0).mean() > 0.05  # and it depends on z


def test_residual_branches_start_at_zero():
    encoder, _, _ = build_networks("resnet18", (32, 32, 3), 4, width=0.125, use_batch_norm=False)
    block_out = encoder.get_layer("stage1_block1_2_conv")
    assert not np.any(to_numpy(block_out.kernel))
    encoder, _, _ = build_networks("resnet50", (32, 32, 3), 4, width=0.125, use_batch_norm=True)
    assert not np.any(to_numpy(encoder.get_layer("stage2_block1_3_bn").gamma))


@pytest.mark.parametrize("use_batch_norm", [True, False], ids=["bn", "no_bn"])
@pytest.mark.parametrize("arch", sorted(ARCHITECTURES))
def test_model_saving_round_trip(arch, use_batch_norm, tmp_path):
    """keras-hub's `run_model_saving_test`, for every registered architecture."""
    resnet = arch.startswith("resnet")
    # ResNets: the BN case with the flattening head, the other with average pooling.
    pooling = ("flatten" if use_batch_norm else "average") if resnet else None
    vae = tiny_vae(arch, use_batch_norm=use_batch_norm, skip=resnet, pooling=pooling)
    images = blob_images(3)
    outputs = to_numpy(vae(images))
    path = tmp_path / "model.keras"
    vae.save(path)
    restored = keras.models.load_model(path)
    assert type(restored) is type(vae)
    # Through JSON: Keras gives back lists where the original config had tuples.
    assert json.dumps(restored.get_config(), sort_keys=True) == json.dumps(
        vae.get_config(), sort_keys=True
    )
    np.testing.assert_allclose(to_numpy(restored(images)), outputs, atol=1e-6)
    np.testing.assert_allclose(
        to_numpy(restored.sample(2, seed=4)), to_numpy(vae.sample(2, seed=4)), atol=1e-6
    )
