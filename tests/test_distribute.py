"""Data-parallel training over two virtual CPU devices matches one device."""

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import keras
import numpy as np
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
            vae = tiny_vae("resnet18", use_batch_norm={bn}, likelihood="gaussian", sigma=0.1)
            vae.compile(optimizer=keras.optimizers.Adam(3e-3))
            history = vae.fit(x, epochs=3, batch_size=16, shuffle=False, verbose=0)
        weights = [keras.ops.convert_to_numpy(w).ravel() for w in vae.weights]
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
        pytest.skip("virtual devices are for JAX and TensorFlow; PyTorch runs processes (below)")
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
    # On JAX with batch norm: the sharded step normalises over the whole batch, and
    # the moving statistics (in `weights`) match too. MirroredStrategy's batch
    # norm sees each replica's share, so TensorFlow is checked without it.
    code = COMPARE.format(tests=str(TESTS), bn=backend == "jax")
    output = run_with_two_devices(code, backend)
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


TORCH_PROCESSES = textwrap.dedent(
    """
    import json, sys
    sys.path.insert(0, {tests!r})
    import keras, numpy as np, tensorflow as tf
    from keras import ops
    from conftest import blob_images, tiny_vae
    from keras_resvae import sampling, torch_parallel
    from keras_resvae.distribute import data_parallel, shard_batches

    # Without the sampling noise, one process and two compute the same thing:
    # the processes' noise is their own (checked below through the seed state).
    sampling.Sampling.call = lambda self, inputs, deterministic=False: ops.cast(
        inputs[0], "float32"
    )
    enabled = torch_parallel.launched_by_torchrun()
    keras.utils.set_random_seed(0)
    with data_parallel(enabled, batch_size=16) as replicas:
        vae = tiny_vae("resnet18", use_batch_norm=False, likelihood="gaussian", sigma=0.1)
        vae.compile(optimizer=keras.optimizers.Adam(3e-3))
        batches = shard_batches(tf.data.Dataset.from_tensor_slices(blob_images(64)).batch(16))
        sizes = sorted({{len(batch) for batch in batches}})
        history = vae.fit(batches, epochs=3, verbose=0)
        # The processes judge the averaged gradient: they skip (or not) together.
        skipping = tiny_vae(grad_skip_threshold=1e-6)
        skipping.compile(optimizer=keras.optimizers.Adam(1e-3))
        skipped = skipping.fit(batches, epochs=1, verbose=0).history["skipped_steps"][-1]
    weights = np.concatenate([ops.convert_to_numpy(w).ravel() for w in vae.trainable_weights])
    np.savez(
        sys.argv[1].format(rank=torch_parallel.rank()),
        replicas=replicas,
        sizes=sizes,
        losses=history.history["loss"],
        weights=weights,
        seed_state=ops.convert_to_numpy(vae.sampling.seed_generator.state.value),
        skipped=skipped,
    )
    """
)


def torch_only():
    if keras.backend.backend() != "torch":
        pytest.skip("PyTorch's data parallelism (torchrun) is tested on the torch backend")


def run_torch(command, tmp_path, **kwargs):
    env = {**os.environ, "KERAS_BACKEND": "torch", "TF_CPP_MIN_LOG_LEVEL": "3"}
    env["OMP_NUM_THREADS"] = "1"  # two processes on a small machine
    result = subprocess.run(
        command, capture_output=True, text=True, env=env, cwd=tmp_path, timeout=900, **kwargs
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    return result.stdout


def torchrun(processes, *command):
    return [sys.executable, "-m", "torch.distributed.run", "--standalone"] + [
        "--nproc-per-node",
        str(processes),
        *command,
    ]


@pytest.mark.slow
def test_two_torch_processes_train_like_one(tmp_path):
    torch_only()
    script = tmp_path / "train.py"
    script.write_text(TORCH_PROCESSES.format(tests=str(TESTS)))
    run_torch([sys.executable, str(script), str(tmp_path / "one.npz")], tmp_path)
    run_torch(torchrun(2, str(script), str(tmp_path / "two-{rank}.npz")), tmp_path)
    one = np.load(tmp_path / "one.npz")
    ranks = [np.load(tmp_path / f"two-{rank}.npz") for rank in (0, 1)]
    assert int(one["replicas"]) == 1 and [int(r["replicas"]) for r in ranks] == [2, 2]
    # Each process trains on half of every global batch of 16.
    assert list(one["sizes"]) == [16] and [list(r["sizes"]) for r in ranks] == [[8], [8]]
    # Averaged gradients keep the processes' weights equal, and equal to one process's.
    np.testing.assert_array_equal(ranks[0]["weights"], ranks[1]["weights"])
    np.testing.assert_allclose(ranks[0]["weights"], one["weights"], atol=1e-4)
    # The logged losses are the global batch's, the same in both processes.
    np.testing.assert_array_equal(ranks[0]["losses"], ranks[1]["losses"])
    np.testing.assert_allclose(ranks[0]["losses"], one["losses"], rtol=1e-5)
    assert ranks[0]["losses"][-1] < ranks[0]["losses"][0]
    # Each process draws its own sampling noise.
    assert not np.array_equal(ranks[0]["seed_state"], ranks[1]["seed_state"])
    np.testing.assert_array_equal(ranks[0]["seed_state"], one["seed_state"])
    # Every one of the 4 steps skipped, in every process.
    assert [float(r["skipped"]) for r in (one, *ranks)] == [4.0, 4.0, 4.0]


@pytest.mark.slow
def test_resvae_fit_distribute_with_torchrun(tmp_path):
    torch_only()
    out = tmp_path / "run"
    fit = ["--no-python", "resvae", "fit", "--backend", "torch", "--out", str(out)]
    # With batch norm: its moving statistics are averaged over the processes.
    options = ["--distribute", "--arch", "resnet18", "--bn", "--width", "0.125"]
    options += ["--latent-dim", "4"]
    options += ["--limit", "128", "--epochs", "1", "--batch-size", "32"]
    resvae = os.path.join(os.path.dirname(sys.executable), "resvae")
    fit[1] = resvae
    output = run_torch(torchrun(2, *fit, *options), tmp_path)
    # Process 0 alone reports and writes; the run is one run.
    assert output.count("Run directory:") == 1
    assert "Data-parallel over 2 devices: process 0, process 1" in output
    assert json.loads((out / "config.json").read_text())["distribute"] is True
    assert (out / "model.keras").exists() and (out / "metrics.json").exists()
    # The resumed run is data-parallel again, as saved, and adds one epoch.
    output = run_torch(torchrun(2, *fit, "--resume", "--epochs", "2"), tmp_path)
    assert output.count("Run directory:") == 1
    history = (out / "history.csv").read_text().splitlines()
    assert [row.split(",")[0] for row in history[1:]] == ["0", "1"]


def test_torch_distribute_without_torchrun_says_how_to_start_it(tmp_path, monkeypatch):
    torch_only()
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(name, raising=False)
    args = ["fit", "--distribute", "--arch", "basic", "--limit", "64", "--out", str(tmp_path)]
    monkeypatch.setattr(sys, "argv", ["/venv/bin/resvae", *args])
    with pytest.raises(ValueError, match="torchrun --standalone --nproc-per-node 2"):
        with data_parallel(True):
            pass
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 1, result.output
    assert "started by torchrun. Run: torchrun --standalone --nproc-per-node 2" in result.output
    assert "--no-python resvae fit --distribute --arch basic" in result.output
    assert not (tmp_path / "config.json").exists()


def test_the_torchrun_command_for_a_script_and_for_resvae():
    torch_only()
    from keras_resvae.torch_parallel import torchrun_command

    assert torchrun_command(["/venv/bin/resvae", "fit", "--out", "a b"]) == (
        "torchrun --standalone --nproc-per-node 2 --no-python resvae fit --out 'a b'"
    )
    assert torchrun_command(["train.py", "-v"]) == (
        "torchrun --standalone --nproc-per-node 2 train.py -v"
    )


def test_the_processes_noise_streams_are_far_apart():
    torch_only()
    from keras_resvae.torch_parallel import _shifted_seed_state

    generator = keras.random.SeedGenerator(7)
    state = keras.ops.convert_to_numpy(generator.state.value)
    shifted = [_shifted_seed_state(generator.state, rank) for rank in range(8)]
    np.testing.assert_array_equal(shifted[0], state)
    # The seed the torch backend draws with: the two words' sum modulo 2**32.
    seeds = [(int(s[0]) + int(s[1])) & 0xFFFFFFFF for s in shifted]
    gaps = [abs(a - b) for i, a in enumerate(seeds) for b in seeds[i + 1 :]]
    assert min(min(gap, 2**32 - gap) for gap in gaps) > 10**8
    assert all(str(s.dtype) == str(generator.state.dtype).split(".")[-1] for s in shifted)


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


SPLIT_RUN = textwrap.dedent(
    """
    from keras_resvae.runs import fit_run

    # 297 test digits in batches of 32 end with 9: validation keeps 8 of them.
    config, metrics = fit_run({out!r}, arch="resnet18", use_batch_norm=False, width=0.125,
                              latent_dim=4, limit=64, epochs=2, batch_size=32, distribute=True,
                              verbose=0)
    print("RUN", config["distribute"], metrics["num_images"])
    # Resumed: the checkpoint is loaded into the devices, and training goes on.
    config, metrics = fit_run({out!r}, resume=True, epochs=3, verbose=0)
    print("RESUMED", config["epochs"], metrics["num_images"])
    """
)


@pytest.mark.slow
def test_a_run_split_over_cpu_devices_validates_and_resumes(tmp_path):
    if keras.backend.backend() != "jax":
        pytest.skip("TensorFlow's run is the end-to-end test above; PyTorch's runs processes")
    out = tmp_path / "run"
    output = run_with_two_devices(SPLIT_RUN.format(out=str(out)), "jax")
    # The final evaluation, outside the data-parallel scope, sees every test image.
    assert parse(output, "RUN").split() == ["True", "297"]
    assert parse(output, "RESUMED").split() == ["3", "297"]
    assert output.count("Data-parallel over 2 devices: cpu:0, cpu:1") == 2
    history = (out / "history.csv").read_text().splitlines()
    assert len(history) == 4 and "val_loss" in history[0]


def test_the_command_gives_jax_one_cpu_device_per_core(monkeypatch):
    from keras_resvae import startup

    monkeypatch.setattr(startup, "usable_cores", lambda: 4)
    environ = {"XLA_FLAGS": "--xla_cpu_use_thunk_runtime=true"}
    assert startup.split_cpu_for_jax(environ) == 4
    assert environ["XLA_FLAGS"] == (
        "--xla_cpu_use_thunk_runtime=true --xla_force_host_platform_device_count=4"
    )
    # A count the user set stays; one core needs no split.
    assert startup.split_cpu_for_jax(environ) is None
    monkeypatch.setattr(startup, "usable_cores", lambda: 1)
    empty = {}
    assert startup.split_cpu_for_jax(empty) is None and empty == {}
