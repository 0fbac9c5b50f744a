"""The run folder is protected: foreign folders, concurrent runs, failed starts, bad numbers."""

import io
import json
import os
import subprocess
import sys
import zipfile

import h5py
import keras
import numpy as np
import pytest
from click.testing import CliRunner
from conftest import blob_images, tiny_vae
from keras_resvae.cli.main import main

from keras_resvae import callbacks, runs
from keras_resvae.callbacks import (
    DivergenceGuard,
    TrainingDiverged,
    non_finite_weights,
    save_model_atomically,
)
from keras_resvae.run_folder import LOCK_FILE, RunFolder

TINY = ["--arch", "basic", "--width", "0.125", "--latent-dim", "4", "--limit", "64"]
TINY += ["--batch-size", "32", "--lr", "1e-3"]


def resvae(*args):
    return CliRunner().invoke(main, [str(arg) for arg in args], prog_name="resvae")


def fit(*args):
    return resvae("fit", *TINY, *args)


def error_line(result):
    """The single line a failed command printed on stderr."""
    assert result.exit_code == 1, (result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.stderr
    return lines[0]


def folder_contents(folder):
    return {
        os.path.relpath(os.path.join(root, name), folder): open(
            os.path.join(root, name), "rb"
        ).read()
        for root, _, names in os.walk(folder)
        for name in names
    }


def test_a_folder_that_is_not_a_run_is_left_untouched(tmp_path):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "history.csv").write_text("epoch,my_numbers\n0,42\n")
    (mine / "model.keras").write_bytes(b"my model")
    before = folder_contents(mine)
    line = error_line(fit("--epochs", 1, "--out", mine))
    assert "is not a keras-resvae run" in line and str(mine) in line
    assert folder_contents(mine) == before
    hidden = tmp_path / "hidden"
    hidden.mkdir()
    (hidden / ".DS_Store").write_bytes(b"finder")
    with RunFolder(str(hidden)):  # only hidden files: nothing a run could overwrite
        pass
    assert os.listdir(hidden) == [".DS_Store"]
    (tmp_path / "file").write_text("keep")
    assert "is a file" in error_line(fit("--epochs", 1, "--out", tmp_path / "file"))
    assert (tmp_path / "file").read_text() == "keep"


def test_a_folder_in_use_is_refused_and_a_dead_owner_s_lock_is_taken_over(tmp_path):
    out = tmp_path / "run"
    with RunFolder(str(out)):
        line = error_line(fit("--epochs", 1, "--out", out))
        assert f"is in use by process {os.getpid()}" in line
    assert not (out / LOCK_FILE).exists()
    # A lock file left by a process that is gone (kill -9 leaves one) is no obstacle.
    finished = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        text=True,
        capture_output=True,
        check=True,
    )
    (out / LOCK_FILE).write_text(finished.stdout)
    result = fit("--epochs", 1, "--out", out)
    assert result.exit_code == 0, result.stderr
    assert not (out / LOCK_FILE).exists()


def test_a_run_that_fails_before_its_first_checkpoint_leaves_no_trace(tmp_path, monkeypatch):
    def broken_fit(*args, **kwargs):
        raise OSError(28, "No space left on device", "run/checkpoints/epoch0001.keras")

    monkeypatch.setattr(runs.VAE, "fit", broken_fit)
    line = error_line(fit("--epochs", 1, "--out", tmp_path / "new"))
    assert "No space left on device; free some space" in line
    assert not (tmp_path / "new").exists()
    (tmp_path / "empty").mkdir()
    error_line(fit("--epochs", 1, "--out", tmp_path / "empty"))
    assert os.listdir(tmp_path / "empty") == []


def test_a_full_disk_after_the_first_checkpoint_keeps_the_run_for_resume(tmp_path, monkeypatch):
    original = callbacks.AtomicCheckpoint.on_epoch_end

    def disk_full_in_epoch_2(self, epoch, logs=None):
        if epoch == 1:
            raise OSError(28, "No space left on device", str(tmp_path / "run" / "x.keras"))
        original(self, epoch, logs)

    monkeypatch.setattr(callbacks.AtomicCheckpoint, "on_epoch_end", disk_full_in_epoch_2)
    out = tmp_path / "run"
    line = error_line(fit("--epochs", 3, "--out", out))
    assert "No space left on device; free some space" in line and "--resume" in line
    assert json.loads((out / "checkpoints" / "checkpoint.json").read_text())["epoch"] == 1
    monkeypatch.setattr(callbacks.AtomicCheckpoint, "on_epoch_end", original)
    result = resvae("fit", "--out", out, "--resume")
    assert result.exit_code == 0, result.stderr
    assert (out / "model.keras").exists()


def test_resuming_a_folder_that_does_not_exist_leaves_none(tmp_path):
    line = error_line(resvae("fit", "--out", tmp_path / "none", "--resume"))
    assert "holds no run" in line
    assert not (tmp_path / "none").exists()


def test_resume_with_fewer_epochs_than_done_changes_nothing(tmp_path):
    out = tmp_path / "run"
    assert fit("--epochs", 2, "--out", out).exit_code == 0
    before = folder_contents(out)
    line = error_line(resvae("fit", "--out", out, "--resume", "--epochs", 1))
    assert "has already trained 2 epochs" in line
    assert folder_contents(out) == before


def saved_optimizer_variables(path):
    with zipfile.ZipFile(path) as archive:
        weights = h5py.File(io.BytesIO(archive.read("model.weights.h5")), "r")
        group = weights["optimizer/vars"]
        return [np.array(group[str(index)]) for index in range(len(group))]


def test_a_mixed_float16_run_resumes_with_its_optimizer_state(tmp_path, monkeypatch):
    out = tmp_path / "run"
    assert fit("--epochs", 1, "--precision", "mixed_float16", "--out", out).exit_code == 0
    checkpoint = out / "checkpoints" / "epoch0001.keras"
    saved = saved_optimizer_variables(checkpoint)
    loaded = []
    original = runs.load_model

    def load_and_record(path):
        model = original(path)
        loaded.append([keras.ops.convert_to_numpy(v).copy() for v in model.optimizer.variables])
        return model

    monkeypatch.setattr(runs, "load_model", load_and_record)
    result = resvae("fit", "--out", out, "--resume", "--epochs", 2)
    assert result.exit_code == 0, result.stderr
    (restored,) = loaded
    assert len(restored) == len(saved)  # the loss scale's variables and Adam's
    for a, b in zip(restored, saved):
        np.testing.assert_array_equal(a, b)
    # A model loaded outside any run gets its loss scaling back too.
    assert isinstance(
        original(str(out / "model.keras")).optimizer, keras.optimizers.LossScaleOptimizer
    )


def test_divergence_stops_the_run_and_keeps_the_last_usable_model(tmp_path, monkeypatch):
    out = tmp_path / "run"
    assert fit("--epochs", 1, "--out", out).exit_code == 0
    original = runs.load_model

    def load_with_a_huge_learning_rate(path):
        model = original(path)
        model.optimizer.learning_rate.assign(1e30)  # finite, but the next step explodes
        return model

    monkeypatch.setattr(runs, "load_model", load_with_a_huge_learning_rate)
    result = resvae("fit", "--out", out, "--resume", "--epochs", 3)
    line = error_line(result)
    assert line.startswith("Error: Training diverged at epoch 2:") and "lower --lr" in line
    assert "is the model after epoch 1" in line
    assert json.loads((out / "checkpoints" / "checkpoint.json").read_text())["epoch"] == 1
    model = original(str(out / "model.keras"))
    assert not non_finite_weights(model)
    checkpoint = original(str(out / "checkpoints" / "epoch0001.keras"))
    for a, b in zip(model.weights, checkpoint.weights):
        np.testing.assert_array_equal(keras.ops.convert_to_numpy(a), keras.ops.convert_to_numpy(b))


def test_divergence_in_the_first_epoch_saves_nothing():
    vae = tiny_vae()
    vae.compile(optimizer=keras.optimizers.Adam(1e30))
    guard = DivergenceGuard(advice="lower it")
    with pytest.raises(TrainingDiverged, match="at epoch 1: .*; lower it"):
        vae.fit(
            blob_images(64),
            validation_data=blob_images(16),
            epochs=2,
            batch_size=16,
            callbacks=[guard],
            verbose=0,
        )


def test_a_model_with_non_finite_weights_is_never_written(tmp_path):
    vae = tiny_vae()
    vae.decoder.layers[-1].bias.assign(np.full(vae.decoder.layers[-1].bias.shape, np.nan))
    with pytest.raises(ValueError, match="non-finite weights"):
        save_model_atomically(vae, str(tmp_path / "model.keras"))
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize(
    "args, message",
    [
        (["--lr", "inf"], "'--lr': inf is not a finite number"),
        (["--lr", "nan"], "'--lr': nan is not a finite number"),
        (["--beta", "nan"], "'--beta': nan is not a finite number"),
        (["--width", "inf"], "'--width': inf is not a finite number"),
        (["--arch", "foo"], "'foo' is not one of"),
        (["--epochs", "0"], "0 is not in the range x>=1"),
        (["--image-size", "7"], "7 is not in the range x>=8"),
        (["--seed", "-1"], "-1 is not in the range 0<=x<=4294967295"),
    ],
)
def test_bad_options_are_one_line_and_exit_code_1(args, message, tmp_path):
    result = resvae("fit", *args, "--out", tmp_path / "r")
    line = error_line(result)
    assert message in line and "resvae fit --help" in line
    assert not (tmp_path / "r").exists()


def test_the_api_refuses_non_finite_numbers_too(tmp_path):
    for name in ("lr", "beta", "width"):
        with pytest.raises(ValueError, match=f"`{name}` must be a finite number"):
            runs.fit_run(str(tmp_path / name), dry_run=True, **{name: float("nan")})


def test_an_undecodable_image_is_named_and_the_run_leaves_nothing(tmp_path):
    from keras_resvae.startup import import_tensorflow

    tf = import_tensorflow()
    photos = tmp_path / "photos"
    photos.mkdir()
    rng = np.random.default_rng(0)
    for index in range(8):
        image = rng.integers(0, 256, (12, 12, 3), dtype=np.uint8)
        (photos / f"im{index}.jpg").write_bytes(tf.io.encode_jpeg(image).numpy())
    whole = (photos / "im0.jpg").read_bytes()
    (photos / "im9.jpg").write_bytes(whole[: len(whole) // 3])
    result = resvae(
        "fit", "--dataset", photos, "--image-size", 8, "--batch-size", 2,
        "--arch", "basic", "--width", 0.125, "--latent-dim", 2, "--epochs", 1,
        "--out", tmp_path / "run",
    )  # fmt: skip
    line = error_line(result)
    assert "im9.jpg: cannot decode this image" in line
    assert not (tmp_path / "run").exists()


def test_file_errors_name_the_user_s_path_not_a_temporary_one(tmp_path, monkeypatch):
    from keras_resvae.atomic import atomic_path

    with pytest.raises(IsADirectoryError) as error:
        with atomic_path(str(tmp_path)):
            pass
    assert error.value.filename == str(tmp_path)
    target = tmp_path / "model.keras"
    with pytest.raises(OSError) as error:
        with atomic_path(str(target)) as temporary:
            raise OSError(28, "No space left on device", temporary)
    assert error.value.filename == str(target) and os.listdir(tmp_path) == []
    assert "empty" in error_line(resvae("fit", "--out", ""))
