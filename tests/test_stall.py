"""Training stuck at the mean image: measured, logged, said once, and kept out of means."""

import csv
import os

import keras
import numpy as np
import pytest
from click.testing import CliRunner
from conftest import blob_images, tiny_vae
from keras_resvae.cli.main import main

from keras_resvae import runs, stall
from keras_resvae.compare import combine_repeats
from keras_resvae.report import results_markdown


def zero_last_kernel(vae):
    """The decoder's output becomes its bias, whatever the input."""
    last = [layer for layer in vae.decoder.layers if getattr(layer, "kernel", None) is not None]
    last[-1].kernel.assign(np.zeros(last[-1].kernel.shape, "float32"))
    return vae


def stuck_at_the_mean(vae, images):
    """A VAE that puts out the data's mean image for every input."""
    zero_last_kernel(vae).initialize_output_bias(images)
    return vae


def test_spread_is_the_ratio_of_variances_across_images():
    images = blob_images(24, seed=2)
    vae = tiny_vae()
    outputs = keras.ops.convert_to_numpy(vae.reconstruct(images)).astype("float64")
    expected = np.var(outputs, axis=0).sum() / np.var(images.astype("float64"), axis=0).sum()
    assert stall.reconstruction_spread(vae, images) == pytest.approx(expected, rel=1e-5)
    assert stall.reconstruction_spread(stuck_at_the_mean(vae, images), images) < 1e-10


def test_spread_refuses_what_it_cannot_measure():
    vae = tiny_vae()
    with pytest.raises(ValueError, match="at least 2 images"):
        stall.reconstruction_spread(vae, blob_images(1))
    with pytest.raises(ValueError, match="differ"):
        stall.reconstruction_spread(vae, np.repeat(blob_images(1), 3, axis=0))


def test_the_callback_logs_every_epoch_and_speaks_once(capsys):
    images = blob_images(16, seed=4)
    detector = stall.MeanImageStall(images, advice="a lower --lr")
    detector.set_model(stuck_at_the_mean(tiny_vae(), images))
    logs = [{}, {}, {}, {}, {}]
    for epoch, epoch_logs in enumerate(logs):
        detector.on_epoch_end(epoch, epoch_logs)
    # Judged from the fourth epoch: a run that trains starts at the mean image too.
    assert [epoch_logs["stalled"] for epoch_logs in logs] == [0.0, 0.0, 0.0, 1.0, 1.0]
    assert all(epoch_logs["reconstruction_spread"] < 1e-10 for epoch_logs in logs)
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("Training is stuck at the mean image (one output for every")
    assert "after epoch 4 the reconstructions vary" in lines[0]
    assert lines[0].endswith("Try a lower --lr.")

    keras.utils.set_random_seed(0)
    trained = tiny_vae()
    trained.compile(optimizer=keras.optimizers.Adam(1e-2))
    trained.initialize_output_bias(blob_images(128))
    trained.fit(blob_images(128), epochs=10, batch_size=32, verbose=0)
    quiet = stall.MeanImageStall(images)
    quiet.set_model(trained)
    epoch_logs = {}
    quiet.on_epoch_end(3, epoch_logs)  # the first judged epoch
    assert epoch_logs["stalled"] == 0.0 and epoch_logs["reconstruction_spread"] > stall.STALL_SPREAD
    assert capsys.readouterr().out == ""


def test_a_single_test_image_logs_nan_instead_of_failing():
    detector = stall.MeanImageStall(blob_images(1))
    detector.set_model(tiny_vae())
    logs = {}
    detector.on_epoch_end(0, logs)
    assert np.isnan(logs["reconstruction_spread"]) and logs["stalled"] == 0.0


def test_resvae_fit_says_when_training_is_stuck(tmp_path, monkeypatch):
    build = runs._build_model

    def saturated_start(config, image_shape):
        # fit sets the output bias to the data's mean image right after this.
        return zero_last_kernel(build(config, image_shape))

    monkeypatch.setattr(runs, "_build_model", saturated_start)
    out = tmp_path / "run"
    options = ["--arch", "basic", "--latent-dim", "4", "--limit", "64", "--batch-size", "32"]
    result = CliRunner().invoke(
        main,
        ["fit", *options, "--epochs", "5", "--lr", "1e-9", "--out", str(out)],
        catch_exceptions=False,
    )
    assert result.exit_code == 0, result.output
    messages = [line for line in result.output.splitlines() if "stuck at the mean" in line]
    assert len(messages) == 1, result.output
    assert "after epoch 4" in messages[0] and "--lr (this run: 1e-09)" in messages[0]
    with open(os.path.join(out, "history.csv")) as file:
        rows = list(csv.DictReader(file))
    assert [row["stalled"] for row in rows] == ["0.0", "0.0", "0.0", "1.0", "1.0"]
    assert all(float(row["reconstruction_spread"]) < stall.STALL_SPREAD for row in rows)


def test_an_older_history_gets_the_new_columns_before_a_resume(tmp_path):
    path = tmp_path / "history.csv"
    path.write_text("epoch,epoch_seconds,loss\n0,2.0,9.5\n1,2.0,8.5\n")
    runs._trim_history(str(path), 1, stall.STALL_COLUMNS)
    logger = keras.callbacks.CSVLogger(str(path), append=True)
    logger.on_train_begin()
    logs = {"epoch_seconds": 2.0, "loss": 7.5, "reconstruction_spread": 0.5, "stalled": 0.0}
    logger.on_epoch_end(1, logs)
    logger.on_train_end()
    with open(path) as file:
        rows = list(csv.DictReader(file))
    assert [row["loss"] for row in rows] == ["9.5", "7.5"]
    assert [row["stalled"] for row in rows] == ["", "0.0"]


def test_compare_leaves_stalled_runs_out_of_the_mean_and_says_so():
    rows = [
        {"variant": "resnet18-nobn-tanh", "seed": seed, "mse": mse, "stalled": int(stuck)}
        for seed, mse, stuck in [(0, 0.0065, False), (1, 0.0067, False), (2, 0.1008, True)]
    ]
    combined = combine_repeats(rows)
    assert combined["mse"] == pytest.approx(0.0066)
    assert combined["mse_std"] == pytest.approx(np.std([0.0065, 0.0067], ddof=1))
    assert combined["stalled"] == 1 and combined["stalled_seeds"] == "2"
    assert combined["repeats"] == 3 and combined["seed"] == 0
    table = results_markdown([combined, {"variant": "basic", "mse": 0.003, "stalled": 0}])
    assert "| stalled runs |" in table and "| 1/3 (seed 2) |" in table
    assert "left out of their variant's means" in table

    every_run = combine_repeats([{**row, "stalled": 1} for row in rows])
    assert every_run["stalled"] == 3
    assert every_run["mse"] == pytest.approx(np.mean([0.0065, 0.0067, 0.1008]))
    quiet = results_markdown([{"variant": "basic", "mse": 0.003, "stalled": 0}])
    assert "stalled" not in quiet
