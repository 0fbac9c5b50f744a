"""Data-parallel training over two virtual CPU devices matches one device."""

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import keras
import pytest
from click.testing import CliRunner
from keras_resvae.cli.main import main

from keras_resvae.distribute import data_parallel

TESTS = Path(__file__).resolve().parent

# Two devices must exist before the backend starts, so each check runs in a new process.
TWO_DEVICES = {
    "jax": "",  # XLA_FLAGS in the environment does it
    "tensorflow": textwrap.dedent(
        """
        import tensorflow as tf
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(
            cpu, [tf.config.LogicalDeviceConfiguration()] * 2
        )
        """
    ),
}

COMPARE = textwrap.dedent(
    """
    import json, sys
    sys.path.insert(0, {tests!r})
    import keras, numpy as np
    from conftest import blob_images, tiny_vae
    from keras_resvae.distribute import data_parallel, local_devices

    assert len(local_devices()) == 2, local_devices()
    x = blob_images(64)

    def run(enabled):
        keras.utils.set_random_seed(0)
        with data_parallel(enabled, batch_size=16) as replicas:
            vae = tiny_vae("resnet18", use_batch_norm=False, likelihood="gaussian", sigma=0.1)
            vae.compile(optimizer=keras.optimizers.Adam(3e-3))
            history = vae.fit(x, epochs=3, batch_size=16, shuffle=False, verbose=0)
        weights = [keras.ops.convert_to_numpy(w).ravel() for w in vae.trainable_weights]
        return replicas, history.history["loss"], np.concatenate(weights)

    one, two = run(False), run(True)
    print("REPLICAS", one[0], two[0])
    print("LOSSES", json.dumps([one[1], two[1]]))
    print("WEIGHT_DIFF", float(np.abs(one[2] - two[2]).max()))
    """
)


def backend_with_two_devices():
    """Keras's backend, or a skip where Keras has no data parallelism to test."""
    backend = keras.backend.backend()
    if backend not in TWO_DEVICES:
        pytest.skip("Keras has no built-in data parallelism on this backend")
    return backend


def run_with_two_devices(code, backend):
    env = {**os.environ, "KERAS_BACKEND": backend, "TF_CPP_MIN_LOG_LEVEL": "3"}
    env["XLA_FLAGS"] = "--xla_force_host_platform_device_count=2"
    result = subprocess.run(
        [sys.executable, "-c", TWO_DEVICES[backend] + code],
        capture_output=True,
        text=True,
        env=env,
        timeout=900,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


def parse(output, key):
    line = next(line for line in output.splitlines() if line.startswith(key))
    return line[len(key) :].strip()


@pytest.mark.slow
def test_two_devices_train_like_one():
    backend = backend_with_two_devices()
    output = run_with_two_devices(COMPARE.format(tests=str(TESTS)), backend)
    assert parse(output, "REPLICAS") == "1 2"
    one, two = json.loads(parse(output, "LOSSES"))
    assert two[-1] < two[0] and len(two) == 3
    difference = float(parse(output, "WEIGHT_DIFF"))
    if backend == "jax":
        # The same global computation, sharded: equal up to float32 rounding.
        assert difference < 1e-4
        assert max(abs(a - b) / abs(a) for a, b in zip(one, two)) < 1e-5
    else:
        # MirroredStrategy draws the sampling noise per replica, so the runs differ
        # by that noise, not by the maths: the losses agree closely.
        assert max(abs(a - b) / abs(a) for a, b in zip(one, two)) < 0.05


@pytest.mark.slow
def test_resvae_fit_distribute_end_to_end(tmp_path):
    backend = backend_with_two_devices()
    args = ["fit", "--distribute", "--arch", "basic", "--width", "0.125", "--latent-dim", "4"]
    args += ["--limit", "128", "--epochs", "1", "--batch-size", "32", "--out", str(tmp_path)]
    code = f"from keras_resvae.cli.main import main\nmain({args!r})\n"
    output = run_with_two_devices(code, backend)
    assert "Data-parallel over 2 devices" in output
    assert (tmp_path / "model.keras").exists() and (tmp_path / "metrics.json").exists()


def test_torch_backend_says_it_cannot_distribute(tmp_path):
    if keras.backend.backend() != "torch":
        pytest.skip("only the torch backend lacks data parallelism")
    with pytest.raises(ValueError, match="torchrun"):
        with data_parallel(True):
            pass
    args = ["fit", "--distribute", "--arch", "basic", "--limit", "64", "--out", str(tmp_path)]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 1 and "Error: Data-parallel training" in result.output


def test_batch_must_split_over_the_devices():
    from keras_resvae.distribute import check_batch_size

    check_batch_size(64, 2)
    with pytest.raises(ValueError, match="multiple of 3"):
        check_batch_size(64, 3)


SKIPPING = textwrap.dedent(
    """
    import sys
    sys.path.insert(0, {tests!r})
    import keras
    from conftest import blob_images, tiny_vae
    from keras_resvae.distribute import data_parallel

    with data_parallel(True, batch_size=16):
        vae = tiny_vae(grad_skip_threshold=1e-6)
        vae.compile(optimizer=keras.optimizers.Adam(1e-3))
        try:
            history = vae.fit(blob_images(64), epochs=1, batch_size=16, verbose=0)
            print("SKIPPED", history.history["skipped_steps"][-1])
        except ValueError as error:
            print("ERROR", " ".join(str(error).split()))
    """
)


@pytest.mark.slow
def test_skipping_large_steps_over_two_devices():
    backend = backend_with_two_devices()
    output = run_with_two_devices(SKIPPING.format(tests=str(TESTS)), backend)
    if backend == "jax":
        # The sharded step sees the whole gradient: every step is skipped, on both devices.
        assert parse(output, "SKIPPED") == "4.0"
    else:
        # Each replica sees only its share: refused rather than letting the replicas part.
        assert "not supported with tf.distribute" in parse(output, "ERROR")
