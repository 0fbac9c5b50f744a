"""The VAE model: training on every backend, its methods, and serialisation."""

import json
import os
import subprocess
import sys
import textwrap
import zipfile

import keras
import numpy as np
import pytest
from conftest import blob_images, tiny_vae, to_numpy

import keras_resvae
from keras_resvae import VAE
from keras_resvae.architectures import build_networks
from keras_resvae.sampling import Sampling

BACKENDS = ("tensorflow", "jax", "torch")


def compiled(vae, learning_rate=3e-3):
    vae.compile(optimizer=keras.optimizers.Adam(learning_rate))
    return vae


@pytest.mark.parametrize(
    "arch, kwargs",
    [
        ("basic", dict(likelihood="bernoulli")),
        ("basic", dict(likelihood="gaussian", sigma=0.1)),
        ("basic", dict(likelihood="gaussian_learned")),
        ("resnet18", dict(use_batch_norm=False, skip=True)),
    ],
    ids=["basic-bernoulli", "basic-gaussian", "basic-sigma_vae", "resnet18-nobn-skip"],
)
def test_fit_lowers_the_loss(blobs, arch, kwargs):
    vae = compiled(tiny_vae(arch, **kwargs))
    before = vae.evaluate(blobs, batch_size=32, verbose=0, return_dict=True)
    history = vae.fit(blobs, epochs=6, batch_size=16, verbose=0, validation_data=blobs[:32])
    after = vae.evaluate(blobs, batch_size=32, verbose=0, return_dict=True)
    losses = history.history["loss"]
    assert all(np.isfinite(losses))
    assert losses[-1] < losses[0]
    assert after["loss"] < before["loss"]
    assert after["mse"] < before["mse"]
    assert set(history.history) >= {
        "loss",
        "reconstruction_loss",
        "kl_loss",
        "mse",
        "skipped_steps",
        "val_loss",
        "val_reconstruction_loss",
        "val_kl_loss",
        "val_mse",
    }
    assert history.history["skipped_steps"] == [0.0] * 6


def test_tanh_model_trains_on_centred_data(blobs):
    vae = compiled(tiny_vae(output_activation="tanh", likelihood="gaussian_learned"))
    centred = blobs * 2 - 1
    history = vae.fit(centred, epochs=4, batch_size=16, verbose=0)
    assert history.history["loss"][-1] < history.history["loss"][0]
    images = to_numpy(vae.sample(4, seed=0))
    assert images.min() >= -1 and images.max() <= 1 and images.min() < 0


@pytest.fixture(scope="module")
def resnet_run():
    """A tiny ResNet-18 VAE (batch norm, skip) trained one epoch, and its state before.

    Shared by the tests below because compiling its steps dominates their cost.
    """
    vae = compiled(tiny_vae("resnet18", use_batch_norm=True, skip=True))
    before = {
        "seed": to_numpy(vae.sampling.seed_generator.state).copy(),
        "bn_mean": to_numpy(vae.encoder.get_layer("stem_bn").moving_mean).copy(),
    }
    vae.fit(blob_images(64), epochs=1, batch_size=16, verbose=0)
    return vae, before


def test_training_updates_rng_and_batch_norm_state(resnet_run):
    # On JAX the stateless step must hand back the non-trainable variables.
    vae, before = resnet_run
    assert not np.array_equal(to_numpy(vae.sampling.seed_generator.state), before["seed"])
    bn_mean = to_numpy(vae.encoder.get_layer("stem_bn").moving_mean)
    assert not np.allclose(bn_mean, before["bn_mean"])


def test_non_finite_batches_are_skipped_without_touching_the_weights(blobs, resnet_run):
    vae, _ = resnet_run
    weights = [to_numpy(w).copy() for w in vae.weights if "seed" not in w.path]
    poisoned = blobs[:16].copy()
    poisoned[3, 5, 5, 0] = np.nan
    history = vae.fit(poisoned, epochs=1, batch_size=16, verbose=0)
    assert history.history["skipped_steps"] == [1.0]
    after = [to_numpy(w) for w in vae.weights if "seed" not in w.path]
    for a, b in zip(weights, after):
        np.testing.assert_array_equal(a, b)
    history = vae.fit(blobs[:32], epochs=1, batch_size=16, verbose=0)
    assert history.history["skipped_steps"] == [0.0]
    assert np.isfinite(history.history["loss"][-1])


def test_a_step_whose_update_is_not_finite_changes_no_weight(blobs):
    # The loss and gradients are finite; only the optimizer's result is not.
    vae = tiny_vae()
    vae.compile(optimizer=keras.optimizers.Adam(float("inf")))
    weights = [to_numpy(w).copy() for w in vae.trainable_weights]
    history = vae.fit(blobs[:32], epochs=1, batch_size=16, verbose=0)
    assert history.history["skipped_steps"] == [2.0]
    for before, after in zip(weights, vae.trainable_weights):
        np.testing.assert_array_equal(before, to_numpy(after))


@pytest.mark.parametrize("n", [2.5, -1, 0, "3", True])
def test_sample_takes_a_whole_number_of_images(n):
    with pytest.raises(ValueError, match="`n` must be"):
        tiny_vae().sample(n)


def test_initialize_output_bias_checks_the_images():
    with pytest.raises(ValueError, match="16, 16, 1"):
        tiny_vae().initialize_output_bias(np.zeros((4, 28, 28, 1), "float32"))


def test_kl_warmup_weights_the_kl_term(blobs):
    vae = tiny_vae(kl_warmup_steps=10, beta=2.0)
    loss0, terms0 = vae.compute_elbo(blobs[:8], step=0)
    np.testing.assert_allclose(to_numpy(loss0), to_numpy(terms0["reconstruction_loss"]), rtol=1e-6)
    vae = tiny_vae(kl_warmup_steps=10, beta=2.0)
    loss5, terms5 = vae.compute_elbo(blobs[:8], step=5)
    expected = to_numpy(terms5["reconstruction_loss"]) + 1.0 * to_numpy(terms5["kl_loss"])
    np.testing.assert_allclose(to_numpy(loss5), expected, rtol=1e-5)


def test_public_methods(blobs):
    vae = compiled(tiny_vae())
    vae.fit(blobs, epochs=1, batch_size=16, verbose=0)
    z_mean, z_log_var = vae.encode(blobs[:3])
    assert tuple(z_mean.shape) == (3, 4) and tuple(z_log_var.shape) == (3, 4)
    reconstruction = to_numpy(vae.reconstruct(blobs[:3]))
    np.testing.assert_array_equal(reconstruction, to_numpy(vae.reconstruct(blobs[:3])))
    np.testing.assert_allclose(vae.predict(blobs[:3], verbose=0), reconstruction, atol=1e-6)
    np.testing.assert_allclose(to_numpy(vae.decode(z_mean)), reconstruction, atol=1e-6)
    assert reconstruction.min() >= 0 and reconstruction.max() <= 1

    np.testing.assert_array_equal(to_numpy(vae.sample(5, seed=3)), to_numpy(vae.sample(5, seed=3)))
    assert not np.allclose(to_numpy(vae.sample(5, seed=3)), to_numpy(vae.sample(5, seed=4)))

    frames = to_numpy(vae.interpolate(blobs[0], blobs[1], steps=5))
    assert frames.shape == (5, 16, 16, 1)
    np.testing.assert_allclose(frames[0], reconstruction[0], atol=1e-5)
    np.testing.assert_allclose(frames[-1], reconstruction[1], atol=1e-5)
    batch = to_numpy(vae.interpolate(blobs[:2], blobs[1:3], steps=3))
    assert batch.shape == (2, 3, 16, 16, 1)
    with pytest.raises(ValueError, match="steps"):
        vae.interpolate(blobs[0], blobs[1], steps=1)


def test_wrong_image_shape_is_a_clear_error(blobs):
    vae = compiled(tiny_vae())
    wrong = np.zeros((4, 28, 28, 1), "float32")
    with pytest.raises(ValueError, match=r"shape \(batch, 16, 16, 1\).*image_shape=\(28, 28, 1\)"):
        vae.reconstruct(wrong)
    with pytest.raises(ValueError, match=r"\(batch, 16, 16, 1\)"):
        vae.fit(wrong, epochs=1, verbose=0)


def test_mismatched_networks_are_rejected():
    encoder, _, _ = build_networks("basic", (16, 16, 1), 4)
    _, other_latent, _ = build_networks("basic", (16, 16, 1), 5)
    _, other_shape, _ = build_networks("basic", (16, 16, 3), 4)
    with pytest.raises(ValueError, match="latent codes of shape"):
        VAE(encoder, other_latent)
    with pytest.raises(ValueError, match="images of the encoder's input shape"):
        VAE(encoder, other_shape)
    with pytest.raises(ValueError, match="keras.Model"):
        VAE(encoder, "decoder")


def test_save_and_load_round_trip(blobs, tmp_path):
    vae = compiled(tiny_vae(likelihood="gaussian_learned", kl_warmup_steps=7, beta=0.5))
    vae.fit(blobs, epochs=1, batch_size=16, verbose=0)
    check_round_trip(vae, blobs, tmp_path)


def test_save_and_load_round_trip_with_batch_norm(blobs, tmp_path, resnet_run):
    check_round_trip(resnet_run[0], blobs, tmp_path)


def check_round_trip(vae, blobs, tmp_path):
    path = tmp_path / "vae.keras"
    vae.save(path)
    with zipfile.ZipFile(path) as archive:
        compile_config = json.loads(archive.read("config.json"))["compile_config"]
    # Saved as "auto", so a file from JAX does not switch on torch.compile.
    assert compile_config["jit_compile"] == "auto"
    loaded = keras.models.load_model(path)
    assert isinstance(loaded, VAE)
    for attribute in (
        "likelihood",
        "beta",
        "kl_warmup_steps",
        "seed",
        "architecture",
        "image_shape",
    ):
        assert getattr(loaded, attribute) == getattr(vae, attribute)
    np.testing.assert_array_equal(loaded.predict(blobs, verbose=0), vae.predict(blobs, verbose=0))
    np.testing.assert_array_equal(
        to_numpy(loaded.sample(4, seed=1)), to_numpy(vae.sample(4, seed=1))
    )
    # The optimizer state came back too, so training continues where it stopped.
    assert int(to_numpy(loaded.optimizer.iterations)) == int(to_numpy(vae.optimizer.iterations))
    history = loaded.fit(blobs, epochs=1, batch_size=16, verbose=0)
    assert np.isfinite(history.history["loss"][0])


LOAD_SCRIPT = textwrap.dedent(
    """
    import json, sys
    import keras, numpy as np
    import keras_resvae
    model = keras_resvae.load_vae(sys.argv[1])
    images = np.load(sys.argv[2])
    z_mean, _ = model.encode(images)
    outputs = {
        "backend": keras.backend.backend(),
        "optimizer": type(model.optimizer).__module__,
        "predict": model.predict(images, verbose=0).tolist(),
        "z_mean": keras.ops.convert_to_numpy(z_mean).tolist(),
    }
    state = [keras.ops.convert_to_numpy(v) for v in model.optimizer.variables]
    np.savez(sys.argv[3], *state)
    # Training continues here, with the optimizer state saved by the other backend.
    history = model.fit(images, epochs=2, batch_size=4, verbose=0)
    outputs["loss"] = history.history["loss"]
    outputs["iterations"] = int(keras.ops.convert_to_numpy(model.optimizer.iterations))
    # From the saved weights again, without the sampling noise (each backend has
    # its own random streams), training must follow the same path everywhere.
    from keras_resvae import sampling
    sampling.Sampling.call = lambda self, inputs, deterministic=False: keras.ops.cast(
        inputs[0], "float32"
    )
    fresh = keras_resvae.load_vae(sys.argv[1])
    history = fresh.fit(images, epochs=3, batch_size=4, shuffle=False, verbose=0)
    outputs["noiseless_loss"] = history.history["loss"]
    print(json.dumps(outputs))
    """
)


def noiseless_sampling(self, inputs, deterministic=False):
    """`Sampling.call` without noise: z is the posterior mean."""
    return keras.ops.cast(inputs[0], "float32")


@pytest.mark.slow
@pytest.mark.parametrize("target", BACKENDS)
def test_a_keras_file_loads_and_trains_on_every_backend(
    blobs, tmp_path, target, resnet_run, monkeypatch
):
    """Run under each backend, this covers all six (saved on, loaded on) pairs."""
    if target == keras.backend.backend():
        pytest.skip("same backend: covered by test_save_and_load_round_trip")
    vae, _ = resnet_run
    model_path, images_path = tmp_path / "vae.keras", tmp_path / "images.npy"
    vae.save(model_path)
    np.save(images_path, blobs[:8])
    state_path = tmp_path / "optimizer.npz"
    env = {**os.environ, "KERAS_BACKEND": target, "TF_CPP_MIN_LOG_LEVEL": "3"}
    result = subprocess.run(
        [sys.executable, "-c", LOAD_SCRIPT, str(model_path), str(images_path), str(state_path)],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    outputs = json.loads(result.stdout.strip().splitlines()[-1])
    assert outputs["backend"] == target
    assert f"backend.{keras.backend.backend()}" not in outputs["optimizer"]
    np.testing.assert_allclose(outputs["predict"], vae.predict(blobs[:8], verbose=0), atol=1e-5)
    z_mean, _ = vae.encode(blobs[:8])
    np.testing.assert_allclose(outputs["z_mean"], to_numpy(z_mean), atol=1e-5)
    # The optimizer state (step count, Adam moments) arrived as it was saved.
    with np.load(state_path) as loaded:
        state = [loaded[f"arr_{i}"] for i in range(len(loaded.files))]
    assert len(state) == len(vae.optimizer.variables)
    for saved, arrived in zip(vae.optimizer.variables, state):
        np.testing.assert_array_equal(to_numpy(saved), arrived)
    saved_steps = int(to_numpy(vae.optimizer.iterations))
    assert outputs["iterations"] == saved_steps + 4
    assert np.all(np.isfinite(outputs["loss"]))
    # The backends train alike from equal weights: the same losses, step after step.
    monkeypatch.setattr(
        Sampling,
        "call",
        lambda self, inputs, deterministic=False: keras.ops.cast(inputs[0], "float32"),
    )
    here = keras_resvae.load_vae(str(model_path))
    history = here.fit(blobs[:8], epochs=3, batch_size=4, shuffle=False, verbose=0)
    np.testing.assert_allclose(outputs["noiseless_loss"], history.history["loss"], rtol=1e-4)


def test_fit_on_a_tf_data_dataset(blobs):
    tf = pytest.importorskip("tensorflow")
    dataset = tf.data.Dataset.from_tensor_slices(blobs).batch(16, drop_remainder=True)
    vae = compiled(tiny_vae())
    history = vae.fit(dataset, epochs=2, verbose=0, validation_data=dataset.take(1), shuffle=False)
    assert np.isfinite(history.history["val_loss"][-1])


def test_build_vae_sets_the_public_attributes():
    vae = keras_resvae.build_vae("basic", (28, 28, 1), 2, seed=5)
    assert vae.image_shape == (28, 28, 1) and vae.latent_dim == 2 and vae.seed == 5
    assert [m.name for m in vae.metrics] == [
        "loss",
        "reconstruction_loss",
        "kl_loss",
        "mse",
        "skipped_steps",
    ]


def test_helpers_make_learnable_images():
    images = blob_images(3, shape=(8, 8, 2))
    assert images.shape == (3, 8, 8, 2) and 0 <= images.min() and images.max() <= 1


@pytest.mark.parametrize("output_activation", ["sigmoid", "tanh"])
def test_output_bias_starts_at_the_data_mean(blobs, output_activation):
    vae = tiny_vae(output_activation=output_activation)
    images = blobs if output_activation == "sigmoid" else blobs * 2 - 1
    vae.initialize_output_bias(images)
    bias = to_numpy(vae.decoder.layers[-1].bias)
    scale = 1.0 if output_activation == "sigmoid" else 2.0
    np.testing.assert_allclose(1 / (1 + np.exp(-scale * bias)), [blobs.mean()], rtol=1e-4)


@pytest.mark.parametrize("arch", ["basic", "resnet18"])
def test_a_tanh_model_starts_as_the_sigmoid_model_does(blobs, arch):
    # Before the fix, a tanh output twice as steep as the sigmoid's stalled 3 of 8 seeds.
    started = {}
    for output_activation in ("sigmoid", "tanh"):
        keras.utils.set_random_seed(4)
        vae = tiny_vae(arch, output_activation=output_activation, use_batch_norm=False)
        images = blobs if output_activation == "sigmoid" else blobs * 2 - 1
        vae.initialize_output_bias(images)
        z = np.random.default_rng(0).normal(size=(8, vae.latent_dim)).astype("float32")
        started[output_activation] = to_numpy(vae.decode(z))
    # The encoders see differently scaled pixels; the decoders start as one.
    np.testing.assert_allclose(started["tanh"], 2 * started["sigmoid"] - 1, atol=1e-5)


# --------------------------------------------------- the Keras user's contract


def test_compile_refuses_what_it_would_ignore():
    vae = tiny_vae()
    with pytest.raises(ValueError, match=r"negative ELBO.*likelihood.*beta"):
        vae.compile(optimizer="adam", loss="mse")
    with pytest.raises(ValueError, match=r"own metrics.*evaluate_vae"):
        vae.compile(optimizer="adam", metrics=["mae"])
    with pytest.raises(ValueError, match="own metrics"):
        vae.compile(optimizer="adam", weighted_metrics=["mae"])
    vae.compile(optimizer="adam", jit_compile=False, steps_per_execution=2)
    assert vae.compiled


def test_targets_and_class_weights_are_refused(blobs):
    vae = compiled(tiny_vae())
    with pytest.raises(ValueError, match=r"takes no targets.*fit\(x\)"):
        vae.fit(blobs, blobs[::-1], verbose=0)
    with pytest.raises(ValueError, match="takes no targets"):
        vae.fit(blobs, validation_data=(blobs, blobs + 0.0), verbose=0)
    with pytest.raises(ValueError, match="sample_weight"):
        vae.fit(blobs, class_weight={0: 1.0}, verbose=0)
    # The autoencoder idiom fit(x, x) is the same as fit(x).
    history = vae.fit(blobs, blobs, epochs=1, batch_size=16, verbose=0)
    assert np.isfinite(history.history["loss"][0])


def test_a_decoder_that_applies_its_own_sigmoid_is_refused():
    encoder, _, _ = build_networks("basic", (16, 16, 1), 4)
    z = keras.Input((4,))
    x = keras.layers.Dense(16 * 16, activation="sigmoid", name="pixels")(z)
    decoder = keras.Model(z, keras.layers.Reshape((16, 16, 1))(x))
    VAE(encoder, decoder)  # the sigmoid is not the output layer: fine
    squashed = keras.Model(z, keras.layers.Activation("tanh", name="squash")(decoder.output))
    with pytest.raises(ValueError, match=r"'squash' applies 'tanh'.*activation=None"):
        VAE(encoder, squashed)
    sequential = keras.Sequential(
        [keras.Input((4,)), keras.layers.Dense(256), keras.layers.Reshape((16, 16, 1))]
    )
    sequential.add(keras.layers.Conv2D(1, 1, activation="sigmoid", name="out"))
    with pytest.raises(ValueError, match="'out' applies 'sigmoid'"):
        VAE(encoder, sequential)


def deterministic_vae(likelihood="gaussian"):
    """A VAE whose posterior has variance e^-30: its ELBO does not depend on the noise."""
    images = keras.Input((16, 16, 1), name="images")
    flat = keras.layers.Flatten()(images)
    z_mean = keras.layers.Dense(4, name="z_mean")(flat)
    z_log_var = keras.layers.Dense(
        4, kernel_initializer="zeros", bias_initializer=keras.initializers.Constant(-30.0)
    )(flat)
    encoder = keras.Model(images, [z_mean, z_log_var])
    _, decoder, _ = build_networks("basic", (16, 16, 1), 4, width=0.125)
    return VAE(encoder, decoder, likelihood=likelihood, seed=0)


def test_sample_weight_weights_each_images_elbo(blobs):
    vae = deterministic_vae()
    images, weights = blobs[:4], np.array([1.0, 0.0, 2.0, 0.5], "float32")
    per_image = [to_numpy(vae.compute_elbo(images[i : i + 1])[0]) for i in range(4)]
    loss, terms = vae.compute_elbo(images, sample_weight=weights)
    np.testing.assert_allclose(to_numpy(loss), np.mean(weights * per_image), rtol=1e-5)
    _, plain = vae.compute_elbo(images)
    assert not np.isclose(to_numpy(terms["mse"]), to_numpy(plain["mse"]))


def test_fit_and_evaluate_use_sample_weight(blobs):
    vae = compiled(tiny_vae())
    before = [np.array(w) for w in vae.trainable_weights]
    history = vae.fit(blobs, sample_weight=np.zeros(len(blobs)), epochs=1, batch_size=16, verbose=0)
    # Zero weights: zero loss and zero gradients, so Adam moves nothing.
    assert history.history["loss"] == [0.0]
    for a, b in zip(before, vae.trainable_weights):
        np.testing.assert_array_equal(a, to_numpy(b))
    results = vae.evaluate(blobs, sample_weight=np.zeros(len(blobs)), verbose=0, return_dict=True)
    assert results["loss"] == 0.0
    logs = vae.train_on_batch(blobs[:16], sample_weight=np.zeros(16), return_dict=True)
    assert logs["loss"] == 0.0
    assert vae.test_on_batch(blobs[:16], sample_weight=np.zeros(16), return_dict=True)["loss"] == 0
    history = vae.fit(
        blobs,
        sample_weight=np.ones(len(blobs)),
        validation_data=(blobs[:16], None, np.zeros(16)),
        epochs=1,
        batch_size=16,
        verbose=0,
    )
    assert history.history["loss"][0] != 0.0
    assert history.history["val_loss"] == [0.0]  # the validation weights count too
    tf = pytest.importorskip("tensorflow")
    with pytest.raises(ValueError, match=r"dataset carries its weights in its elements"):
        vae.fit(tf.data.Dataset.from_tensor_slices(blobs).batch(8), sample_weight=np.ones(64))


def test_a_fit_stopped_by_an_error_leaves_a_working_model(blobs):
    vae = compiled(tiny_vae())
    vae.fit(blobs, epochs=1, batch_size=16, verbose=0)
    expected = vae.predict(blobs[:4], verbose=0)

    class Broken(keras.utils.PyDataset):
        def __len__(self):
            return 4

        def __getitem__(self, index):
            if index == 0:
                raise RuntimeError("the data source broke")
            return blobs[:16]

    with pytest.raises(RuntimeError, match="the data source broke"):
        vae.fit(Broken(), epochs=1, verbose=0)
    np.testing.assert_allclose(vae.predict(blobs[:4], verbose=0), expected, atol=1e-6)


def test_load_vae_takes_run_files_and_refuses_other_models(blobs, tmp_path):
    vae = compiled(tiny_vae())
    vae.fit(blobs, epochs=1, batch_size=16, verbose=0)  # builds the optimizer's state
    vae.save(tmp_path / "vae.keras")
    loaded = keras_resvae.load_vae(str(tmp_path / "vae.keras"))
    np.testing.assert_array_equal(loaded.predict(blobs[:2], verbose=0), vae.predict(blobs[:2]))
    other = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    other.save(tmp_path / "other.keras")
    with pytest.raises(ValueError, match="not a keras-resvae VAE"):
        keras_resvae.load_vae(str(tmp_path / "other.keras"))
    with pytest.raises(ValueError, match="no such"):
        keras_resvae.load_vae(str(tmp_path / "missing.keras"))
