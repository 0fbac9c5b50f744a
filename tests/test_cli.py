"""The `resvae` command line, end to end."""

import csv
import json
import os
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest
from click.testing import CliRunner
from keras_resvae.cli import main as cli_module
from keras_resvae.cli.main import main
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

import keras_resvae
from keras_resvae import memory, runs
from keras_resvae.architectures import ARCHITECTURES
from keras_resvae.datasets import tfds_source

TINY = [
    "--arch",
    "basic",
    "--width",
    "0.125",
    "--latent-dim",
    "4",
    "--limit",
    "128",
    "--batch-size",
    "32",
    "--lr",
    "1e-3",
]


def run(*args, expect=0):
    result = CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)
    assert result.exit_code == expect, result.output
    return result.output


def history_epochs(folder):
    with open(os.path.join(folder, "history.csv")) as file:
        return [int(row["epoch"]) for row in csv.DictReader(file)]


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "run"
    output = run("fit", *TINY, "--epochs", 2, "--out", out)
    return out, output


def test_fit_defaults_come_from_the_library(tmp_path):
    config = json.loads(run("fit", "--out", tmp_path / "dry", "--dry-run"))
    for name, value in cli_module.FIT_DEFAULTS.items():
        assert config[name] == value, name


def test_fit_writes_a_complete_run_directory(trained_run):
    out, output = trained_run
    assert "Test metrics:" in output and str(out / "model.keras") in output
    config = json.loads((out / "config.json").read_text())
    assert config["arch"] == "basic" and config["epochs"] == 2
    assert config["backend"] == keras.backend.backend()
    metrics = json.loads((out / "metrics.json").read_text())
    for name in ("loss", "kl_loss", "mse", "psnr", "ssim", "blur", "negative_elbo", "bits_per_dim"):
        assert np.isfinite(metrics[name])
    assert metrics["num_images"] == 297
    assert history_epochs(out) == [0, 1]
    with open(out / "history.csv") as file:
        assert all(float(row["epoch_seconds"]) > 0 for row in csv.DictReader(file))
    for name in (
        "reconstructions.png",
        "samples.png",
        "images/samples_epoch0002.png",
        "images/reconstructions_epoch0001.png",
    ):
        assert (out / name).read_bytes().startswith(b"\x89PNG"), name
    assert json.loads((out / "checkpoints" / "checkpoint.json").read_text())["epoch"] == 2
    assert sorted(os.listdir(out / "checkpoints")) == ["checkpoint.json", "epoch0002.keras"]
    # TensorBoard reads each epoch's metrics back, training and validation apart.
    for split, names in (("train", {"loss", "mse", "learning_rate"}), ("validation", {"loss"})):
        scalars = EventAccumulator(str(out / "logs" / split))
        scalars.Reload()
        assert {f"epoch_{name}" for name in names} <= set(scalars.Tags()["scalars"]), split
        assert [event.step for event in scalars.Scalars("epoch_loss")] == [0, 1]
    with open(out / "history.csv") as file:
        last = list(csv.DictReader(file))[-1]
    assert scalars.Scalars("epoch_loss")[-1].value == pytest.approx(float(last["val_loss"]))
    model = keras.models.load_model(out / "model.keras")
    assert model.image_shape == (28, 28, 1)


def test_evaluate_sample_reconstruct_interpolate(trained_run, tmp_path):
    out, _ = trained_run
    output = run("evaluate", out, "--iwae-samples", 2, "--max-images", 64)
    assert "mse=" in output
    evaluation = json.loads((out / "evaluation.json").read_text())
    assert np.isfinite(evaluation["mse"]) and evaluation["dataset"] == "digits"
    assert np.isfinite(evaluation["iwae_nll"]) and evaluation["iwae_samples"] == 2
    run("sample", out, "-n", 6, "--out", tmp_path / "s.png")
    run("reconstruct", out, "-n", 5, "--out", tmp_path / "r.png")
    run("interpolate", out, "--pairs", 2, "--steps", 4, "--out", tmp_path / "i.png")
    run("sample", out / "model.keras", "--out", tmp_path / "from_file.png")
    for name in ("s.png", "r.png", "i.png", "from_file.png"):
        assert (tmp_path / name).read_bytes().startswith(b"\x89PNG")
    run("evaluate", out / "model.keras", "--dataset", "digits")


def test_evaluate_shows_progress_and_refuses_a_batch_that_cannot_fit(trained_run, monkeypatch):
    out, _ = trained_run
    output = run("evaluate", out, "--iwae-samples", 2, "--max-images", 64)
    assert "64/64" in output  # the metrics' progress bar, counted in images
    before = (out / "evaluation.json").read_bytes()
    monkeypatch.setattr(memory, "available_bytes", lambda: 2**20)
    result = CliRunner().invoke(main, ["evaluate", str(out), "--batch-size", "1000"])
    assert result.exit_code == 1
    assert "--batch-size 1000 may need up to" in result.output
    assert "lower --batch-size (for example --batch-size" in result.output
    assert (out / "evaluation.json").read_bytes() == before


def test_running_out_of_memory_is_one_line_naming_the_option(trained_run, monkeypatch):
    out, _ = trained_run

    def exhausted(*args, **kwargs):
        raise MemoryError("Unable to allocate 12.0 GiB for an array")

    monkeypatch.setattr(runs, "evaluate_vae", exhausted)
    result = CliRunner().invoke(main, ["evaluate", str(out), "--max-images", "8"])
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert "Out of memory (Unable to allocate 12.0 GiB" in result.output
    assert "lower --batch-size" in result.output


def test_resume_extends_a_finished_run_without_gaps(tmp_path):
    out = tmp_path / "run"
    run("fit", *TINY, "--epochs", 1, "--out", out)
    run("fit", "--out", out, "--resume", "--epochs", 3)
    assert history_epochs(out) == [0, 1, 2]
    assert json.loads((out / "config.json").read_text())["epochs"] == 3


def test_a_resumed_run_trains_as_an_uninterrupted_one(tmp_path):
    if keras.backend.backend() == "tensorflow":
        pytest.skip("a tf.data pipeline restarts its shuffling on resume")
    # NumPy batches: epoch N's order follows from the seed and N alone, and the
    # checkpoint carries the noise generator's state.
    run("fit", *TINY, "--epochs", 2, "--out", tmp_path / "straight")
    run("fit", *TINY, "--epochs", 1, "--out", tmp_path / "resumed")
    run("fit", "--out", tmp_path / "resumed", "--resume", "--epochs", 2)
    rows = []
    for name in ("straight", "resumed"):
        with open(tmp_path / name / "history.csv") as file:
            rows.append(list(csv.DictReader(file)))
    for straight, resumed in zip(*rows, strict=True):
        for column in ("loss", "kl_loss", "val_loss"):
            assert float(resumed[column]) == pytest.approx(float(straight[column]), rel=1e-6)


def test_the_same_seed_repeats_a_run_exactly(trained_run, tmp_path):
    # The seed fixes the initial weights as well as the noise and the shuffling.
    out, _ = trained_run
    # Whatever ran before in the process must not matter.
    keras.utils.set_random_seed(123)
    keras.random.normal((3,))
    run("fit", *TINY, "--epochs", 2, "--out", tmp_path / "again")
    with open(out / "history.csv") as first, open(tmp_path / "again" / "history.csv") as second:
        rows = [list(csv.DictReader(first)), list(csv.DictReader(second))]
    for row, repeated in zip(*rows, strict=True):
        assert row["loss"] == repeated["loss"] and row["val_mse"] == repeated["val_mse"]


def test_jit_compile_option_reaches_the_model(tmp_path):
    config = json.loads(run("fit", "--jit-compile", "off", "--out", tmp_path / "dry", "--dry-run"))
    assert config["jit_compile"] is False
    # torch.compile costs minutes here; test_compilation trains with it.
    setting = "off" if keras.backend.backend() == "torch" else "on"
    out = tmp_path / "run"
    run("fit", *TINY, "--epochs", 1, "--jit-compile", setting, "--out", out)
    expected = setting == "on"
    assert json.loads((out / "config.json").read_text())["jit_compile"] is expected
    assert keras.models.load_model(out / "model.keras").jit_compile is expected
    # The same setting again is not a change to the saved run.
    run("fit", "--out", out, "--resume", "--epochs", 2, "--jit-compile", setting)
    assert history_epochs(out) == [0, 1]


def test_dry_run_prints_the_resolved_config(tmp_path):
    output = run("fit", "--arch", "resnet18", "--no-bn", "--out", tmp_path / "dry", "--dry-run")
    config = json.loads(output)
    assert config["arch"] == "resnet18" and config["use_batch_norm"] is False
    assert config["pooling"] is None  # the architecture's default: average
    flat = run("fit", "--arch", "resnet18", "--pooling", "flatten", "--out", tmp_path / "dry",
               "--dry-run")  # fmt: skip
    assert json.loads(flat)["pooling"] == "flatten"
    assert config["dataset"] == "digits" and config["lr"] == 3e-4
    assert not (tmp_path / "dry").exists()


def test_archs_lists_every_architecture():
    output = run("archs", "--image-shape", "28,28,1", "--latent-dim", "8")
    for name in ARCHITECTURES:
        assert output.count(f"\n{name} ") == 2


@pytest.mark.parametrize(
    "args, message",
    [
        (["fit", "--arch", "resnet19"], "'resnet19' is not one of"),
        (["fit", "--arch", "basic", "--stem", "cifar", "--dry-run"], "`stem` applies only to"),
        (["fit", "--pooling", "flatten", "--dry-run"], "`pooling` applies only to"),
        (["fit", "--dataset", "nowhere.npz", "--dry-run"], "Unknown dataset 'nowhere.npz'"),
        (["evaluate", "no/such/run"], "no/such/run: no such run directory or model file"),
        (["sample", "missing.keras"], "missing.keras: no such model file"),
        (["archs", "--image-shape", "4,4,1"], ">= 8"),
    ],
)
def test_user_errors_are_one_line(args, message):
    result = CliRunner().invoke(main, args)
    assert result.exit_code != 0
    assert message in result.output
    assert "Traceback" not in result.output


def test_existing_run_corrupt_model_and_changed_resume(trained_run, tmp_path):
    out, _ = trained_run
    result = CliRunner().invoke(main, ["fit", *TINY, "--out", str(out)])
    assert result.exit_code == 1 and "already holds a run" in result.output
    result = CliRunner().invoke(main, ["fit", "--out", str(out), "--resume", "--arch", "resnet18"])
    assert result.exit_code == 1 and "only the number of epochs may change" in result.output
    broken = tmp_path / "broken.keras"
    broken.write_bytes(b"truncated")
    result = CliRunner().invoke(main, ["evaluate", str(broken), "--dataset", "digits"])
    assert result.exit_code == 1 and "cannot load this model file" in result.output
    result = CliRunner().invoke(main, ["fit", "--resume", "--out", str(tmp_path / "none")])
    assert result.exit_code == 1 and "holds no run" in result.output


def test_missing_dataset_offline(tmp_path, monkeypatch):
    monkeypatch.setattr(tfds_source, "_can_reach_download_host", lambda timeout=3.0: False)
    result = CliRunner().invoke(
        main, ["fit", "--dataset", "cifar10", "--data-dir", str(tmp_path), "--dry-run"]
    )
    assert result.exit_code == 1
    assert "'cifar10'" in result.output and "tfds build cifar10" in result.output
    assert "Traceback" not in result.output


# Runs `resvae fit` in a real process that kills itself (SIGKILL, no clean-up)
# right after the checkpoint of its first epoch is written.
KILLED_FIT = textwrap.dedent(
    """
    import os, signal, sys
    from keras_resvae import callbacks
    original = callbacks.AtomicCheckpoint.on_epoch_end
    def on_epoch_end(self, epoch, logs=None):
        original(self, epoch, logs)
        os.kill(os.getpid(), signal.SIGKILL)
    callbacks.AtomicCheckpoint.on_epoch_end = on_epoch_end
    from keras_resvae.cli.main import main
    main(sys.argv[1:], prog_name="resvae")
    """
)


@pytest.mark.slow
def test_a_killed_run_resumes_in_a_new_process(tmp_path):
    out = tmp_path / "run"
    env = {**os.environ, "KERAS_BACKEND": keras.backend.backend(), "TF_CPP_MIN_LOG_LEVEL": "3"}
    args = ["fit", *TINY, "--epochs", "3", "--out", str(out)]
    killed = subprocess.run(
        [sys.executable, "-c", KILLED_FIT, *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert killed.returncode == -9, killed.stderr[-2000:]
    assert not (out / "model.keras").exists()
    assert json.loads((out / "checkpoints" / "checkpoint.json").read_text())["epoch"] == 1
    resumed = subprocess.run(
        ["resvae", "fit", "--out", str(out), "--resume", "--backend", keras.backend.backend()],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert history_epochs(out) == [0, 1, 2]
    assert (out / "model.keras").exists() and (out / "metrics.json").exists()
    assert "Epoch 2/3" in resumed.stdout and "Epoch 1/3" not in resumed.stdout


@pytest.mark.slow
def test_a_run_resumes_on_another_backend(tmp_path):
    # Each backend's run resumes on the next one, so the three runs cover a cycle.
    backends = ["tensorflow", "jax", "torch"]
    here = keras.backend.backend()
    there = backends[(backends.index(here) + 1) % 3]
    out = tmp_path / "run"
    run("fit", *TINY, "--epochs", 1, "--out", out)
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    resumed = subprocess.run(
        [sys.executable, "-m", "keras_resvae.cli", "fit", "--out", str(out), "--resume"]
        + ["--epochs", "2", "--backend", there],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "Epoch 2/2" in resumed.stdout and "Epoch 1/2" not in resumed.stdout
    assert json.loads((out / "config.json").read_text())["backend"] == there
    assert history_epochs(out) == [0, 1]
    model = keras_resvae.load_vae(out)
    # 128 images in batches of 32: 4 steps per epoch, the optimizer state carried over.
    assert int(keras.ops.convert_to_numpy(model.optimizer.iterations)) == 8
