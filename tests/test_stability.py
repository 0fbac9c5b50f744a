"""Training-stability options (free bits, gradient skipping, clipping) and sample temperature."""

import keras
import numpy as np
import pytest
from click.testing import CliRunner
from conftest import tiny_vae, to_numpy
from keras_resvae.cli.main import main

from keras_resvae import losses
from keras_resvae.callbacks import DivergenceGuard, TrainingDiverged
from keras_resvae.precision import precision_scope
from keras_resvae.training.common import gradient_norm

HVAE = dict(arch="hvae", image_shape=(16, 16, 1), num_scales=2)


def test_free_bits_kl_matches_numpy():
    rng = np.random.default_rng(0)
    group_kls = rng.uniform(0, 3, size=(6, 3)).astype("float32")
    weights = rng.uniform(0, 2, size=(6,)).astype("float32")
    sizes = [1, 4, 16]
    for weight in (None, weights):
        scaled = group_kls if weight is None else weight[:, None] * group_kls
        expected = np.maximum(scaled.mean(axis=0), 0.1 * np.array(sizes)).sum()
        got = to_numpy(losses.free_bits_kl(group_kls, sizes, 0.1, weight))
        np.testing.assert_allclose(got, expected, rtol=1e-6)
    # Without a floor it is the batch mean of the total KL.
    np.testing.assert_allclose(
        to_numpy(losses.free_bits_kl(group_kls, sizes, 0.0)), group_kls.sum(1).mean(), rtol=1e-6
    )


@pytest.mark.parametrize("kwargs", [{}, HVAE], ids=["basic", "hvae"])
def test_free_bits_floors_the_objective_but_not_the_reported_kl(blobs, kwargs):
    vae = tiny_vae(**kwargs)
    loss, terms = vae.compute_elbo(blobs[:8])
    np.testing.assert_allclose(
        to_numpy(loss), to_numpy(terms["reconstruction_loss"] + terms["kl_loss"]), rtol=1e-5
    )
    # A floor above every group's KL: the KL term is the floor, a constant.
    vae = tiny_vae(free_bits=50.0, **kwargs)
    assert vae.kl_group_sizes == (
        [h * w * c for h, w, c in vae.group_shapes] if kwargs else [1] * vae.latent_dim
    )
    loss, terms = vae.compute_elbo(blobs[:8])
    floor = 50.0 * vae.latent_dim
    assert to_numpy(terms["kl_loss"]) < floor
    np.testing.assert_allclose(
        to_numpy(loss), to_numpy(terms["reconstruction_loss"]) + floor, rtol=1e-5
    )


def test_free_bits_and_the_skip_threshold_survive_saving(blobs, tmp_path):
    vae = tiny_vae(free_bits=0.25, grad_skip_threshold=1e3)
    vae.compile(optimizer=keras.optimizers.Adam(1e-3, global_clipnorm=5.0))
    vae.fit(blobs[:16], epochs=1, batch_size=8, verbose=0)
    path = str(tmp_path / "vae.keras")
    vae.save(path)
    loaded = keras.saving.load_model(path)
    assert loaded.free_bits == 0.25
    assert loaded.grad_skip_threshold == 1e3
    assert loaded.optimizer.global_clipnorm == 5.0


@pytest.mark.parametrize("bad", [-1.0, float("nan"), "1", True])
def test_bad_stability_options_are_clear_errors(bad):
    with pytest.raises(ValueError, match="`free_bits` must be"):
        tiny_vae(free_bits=bad)
    with pytest.raises(ValueError, match="`grad_skip_threshold` must be"):
        tiny_vae(grad_skip_threshold=bad if bad != -1.0 else 0.0)


def test_gradient_norm_is_the_global_l2_norm():
    grads = [np.full((2, 3), 2.0, "float32"), np.array([1.0, -1.0], "float32")]
    norm = gradient_norm(keras.optimizers.Adam(), [keras.ops.convert_to_tensor(g) for g in grads])
    np.testing.assert_allclose(to_numpy(norm), np.sqrt(6 * 4 + 2), rtol=1e-6)


def _train(vae, images, **fit):
    weights = [to_numpy(w).copy() for w in vae.weights if "seed" not in w.path]
    history = vae.fit(images, epochs=1, batch_size=8, verbose=0, **fit)
    after = [to_numpy(w) for w in vae.weights if "seed" not in w.path]
    changed = any(not np.array_equal(a, b) for a, b in zip(weights, after))
    return history.history["skipped_steps"][-1], changed


@pytest.mark.parametrize("kwargs", [dict(use_batch_norm=True), HVAE], ids=["basic-bn", "hvae"])
def test_steps_above_the_skip_threshold_change_nothing(blobs, kwargs):
    vae = tiny_vae(grad_skip_threshold=1e-6, **kwargs)
    vae.compile(optimizer=keras.optimizers.Adam(1e-3))
    skipped, changed = _train(vae, blobs[:16])
    # Every step skipped: no weight, batch-norm statistic or optimizer moment moved.
    assert skipped == 2.0
    assert not changed
    assert int(to_numpy(vae.optimizer.iterations)) == 0
    vae = tiny_vae(grad_skip_threshold=1e9, **kwargs)
    vae.compile(optimizer=keras.optimizers.Adam(1e-3))
    skipped, changed = _train(vae, blobs[:16])
    assert skipped == 0.0
    assert changed


def test_a_step_skipped_for_its_size_leaves_the_loss_scale_alone(blobs):
    # A low initial scale keeps the float16 gradients finite: only their size is at stake.
    def train(threshold):
        with precision_scope("mixed_float16"):
            vae = tiny_vae(grad_skip_threshold=threshold)
            optimizer = keras.optimizers.LossScaleOptimizer(
                keras.optimizers.Adam(1e-3), initial_scale=4.0
            )
            vae.compile(optimizer=optimizer)
        skipped, changed = _train(vae, blobs[:16])
        return skipped, changed, float(to_numpy(vae.optimizer.dynamic_scale))

    assert train(1e9) == (0.0, True, 4.0)
    assert train(1e-6) == (2.0, False, 4.0)


def test_an_epoch_of_skipped_steps_names_the_threshold(blobs):
    vae = tiny_vae(grad_skip_threshold=1e-6)
    vae.compile(optimizer=keras.optimizers.Adam(1e-3))
    with pytest.raises(TrainingDiverged, match="grad_skip_threshold=1e-06"):
        vae.fit(blobs[:16], epochs=1, batch_size=8, verbose=0, callbacks=[DivergenceGuard()])


def test_gradient_clipping_bounds_the_first_update(blobs):
    # Adam's first step moves every weight by lr * g / |g| whatever the scale of g,
    # so clipping shows in SGD: a clipped step moves the weights by at most lr * clip.
    def first_step(clip):
        vae = tiny_vae()
        vae.compile(optimizer=keras.optimizers.SGD(1.0, global_clipnorm=clip))
        before = np.concatenate([to_numpy(w).ravel() for w in vae.trainable_weights])
        vae.fit(blobs[:8], epochs=1, batch_size=8, verbose=0)
        after = np.concatenate([to_numpy(w).ravel() for w in vae.trainable_weights])
        return np.linalg.norm(after - before)

    assert first_step(1e-3) == pytest.approx(1e-3, rel=1e-3)
    assert first_step(None) > 1e-2


@pytest.mark.parametrize("kwargs", [{}, HVAE], ids=["basic", "hvae"])
def test_temperature_scales_the_prior_noise(kwargs):
    vae = tiny_vae(**kwargs)
    z = keras.random.normal((4, vae.latent_dim), seed=3)
    np.testing.assert_allclose(
        to_numpy(vae.sample(4, seed=3, temperature=0.5)),
        to_numpy(vae.decode(0.5 * z)),
        atol=1e-6,
    )
    np.testing.assert_array_equal(
        to_numpy(vae.sample(4, seed=3)), to_numpy(vae.sample(4, seed=3, temperature=1.0))
    )
    mean = to_numpy(vae.sample(2, seed=5, temperature=0.0))
    np.testing.assert_allclose(mean, to_numpy(vae.decode(np.zeros((2, vae.latent_dim)))))
    for bad in (-0.5, float("inf"), "1"):
        with pytest.raises(ValueError, match="`temperature` must be"):
            vae.sample(2, temperature=bad)


def test_the_cli_takes_the_stability_options_and_the_temperature(tmp_path):
    run = str(tmp_path / "run")
    args = ["fit", "--out", run, "--limit", "64", "--epochs", "1", "--latent-dim", "4"]
    args += ["--free-bits", "0.05", "--grad-clip", "100", "--grad-skip", "1e6"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    from keras_resvae.runs import load_run

    model, config = load_run(run)
    assert (config["free_bits"], config["grad_clip"], config["grad_skip"]) == (0.05, 100, 1e6)
    assert model.free_bits == 0.05 and model.grad_skip_threshold == 1e6
    assert model.optimizer.global_clipnorm == 100
    out = str(tmp_path / "cold.png")
    result = CliRunner().invoke(
        main, ["sample", run, "-n", "4", "--temperature", "0", "--out", out]
    )
    assert result.exit_code == 0, result.output
    result = CliRunner().invoke(main, ["fit", "--out", str(tmp_path / "x"), "--grad-skip", "0"])
    assert result.exit_code != 0 and "--grad-skip" in result.output
