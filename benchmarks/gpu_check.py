"""One command for a CUDA machine: does keras-resvae work on its GPU, and how fast is it?

Never part of the test suite (the tests run its checks on the CPU with `--cpu`).
First, for every Keras backend installed (TensorFlow, JAX, PyTorch), a check in
a process of its own: the backend sees a GPU and the model's weights live on it;
`fit` in each of `--precisions` (float32 and mixed_bfloat16 unless told) gives
finite losses that go down; `evaluate_vae` (with IWAE), `sample` and `reconstruct`
give finite numbers of the right shapes; a `.keras` round trip decodes as the
original did. Then, unless `--checks-only`, the speed of the full-width ResNet-18
VAE (32x32x3, latent 128, 26.4 M parameters) on every backend that passed, against
the native PyTorch twin (`benchmarks/throughput.py`), with the time 30 epochs of
50,000 images would take.

The data are random arrays in memory, so neither TensorFlow nor a download is
needed (a GPU machine may have only JAX and PyTorch, with Keras beside them).

Examples:
    # Everything, on a CUDA machine:
    python benchmarks/gpu_check.py
    # The study's full grid (slower): both batch norms, XLA / torch.compile too:
    python benchmarks/gpu_check.py --batch-sizes 128,512 --jit-compile auto,on --bn both
    # The checks alone, on the CPU, small:
    python benchmarks/gpu_check.py --cpu --checks-only --width 0.125
"""

import argparse
import importlib.util
import json
import os
import subprocess
import sys
import tempfile

from comma_lists import comma_list

HERE = os.path.dirname(os.path.abspath(__file__))
KERAS_BACKENDS = ("tensorflow", "jax", "torch")
SHAPE = (32, 32, 3)


def installed_backends():
    """The Keras backends whose library can be imported here."""
    return [name for name in KERAS_BACKENDS if importlib.util.find_spec(name) is not None]


def _weights_device(variable):
    """Where a Keras variable's value lives, as a lower-case string."""
    value = variable.value
    if hasattr(value, "devices"):  # JAX
        return " ".join(str(device) for device in value.devices()).lower()
    return str(getattr(value, "device", "")).lower()


def _gpu_visible(backend):
    if backend == "jax":
        import jax

        return any(device.platform == "gpu" for device in jax.devices())
    if backend == "torch":
        import torch

        return torch.cuda.is_available()
    import tensorflow as tf

    return bool(tf.config.list_physical_devices("GPU"))


def check(backend, width, allow_cpu, precisions=("float32", "mixed_bfloat16")):
    """The checks on Keras's current backend; returns a dict of what was found."""
    import keras
    import numpy as np

    import keras_resvae
    from keras_resvae.metrics import evaluate_vae
    from keras_resvae.precision import precision_scope

    found = {"backend": backend, "gpu": _gpu_visible(backend)}
    if not found["gpu"] and not allow_cpu:
        raise RuntimeError(f"{backend} sees no GPU (run with --cpu to check on the CPU)")
    rng = np.random.default_rng(0)
    images = rng.uniform(0.0, 1.0, (512, *SHAPE)).astype("float32")
    for precision in precisions:
        keras.utils.set_random_seed(0)
        with precision_scope(precision):
            vae = keras_resvae.build_vae("resnet18", SHAPE, 16, width=width, seed=0)
            vae.compile(optimizer=keras.optimizers.Adam(1e-3))
            losses = vae.fit(images, epochs=3, batch_size=128, verbose=0).history["loss"]
        if not (np.all(np.isfinite(losses)) and losses[-1] < losses[0]):
            raise RuntimeError(f"{precision} training did not go down: losses {losses}")
        found[f"losses_{precision}"] = [round(float(v), 2) for v in losses]
    found["weights_on"] = _weights_device(vae.trainable_variables[0])
    if found["gpu"] and not any(name in found["weights_on"] for name in ("cuda", "gpu")):
        raise RuntimeError(f"the weights are on {found['weights_on']}, not on the GPU")
    metrics = evaluate_vae(vae, images[:256], iwae_samples=4, verbose=0)
    for name in ("mse", "negative_elbo", "iwae_nll"):
        if not np.isfinite(metrics[name]):
            raise RuntimeError(f"evaluate_vae gave a non-finite {name}: {metrics[name]}")
    found["mse"] = round(metrics["mse"], 5)
    samples = keras.ops.convert_to_numpy(vae.sample(8, seed=0))
    reconstructions = keras.ops.convert_to_numpy(vae.reconstruct(images[:8]))
    for name, array in (("sample", samples), ("reconstruct", reconstructions)):
        if array.shape != (8, *SHAPE) or not np.all(np.isfinite(array)):
            raise RuntimeError(f"{name} gave shape {array.shape} or non-finite values")
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "model.keras")
        vae.save(path)
        loaded = keras_resvae.load_vae(path)
    codes = rng.normal(size=(8, 16)).astype("float32")
    difference = np.max(
        np.abs(
            keras.ops.convert_to_numpy(vae.decode(codes))
            - keras.ops.convert_to_numpy(loaded.decode(codes))
        )
    )
    if difference > 1e-4:
        raise RuntimeError(f"the reloaded .keras model decodes {difference:.2g} away")
    found["reload_difference"] = float(difference)
    return found


def _run_check(backend, args):
    env = {**os.environ, "KERAS_BACKEND": backend, "TF_CPP_MIN_LOG_LEVEL": "3"}
    command = [sys.executable, os.path.abspath(__file__), "--worker", backend]
    command += ["--width", str(args.width), "--precisions", args.precisions]
    command += ["--cpu"] if args.cpu else []
    result = subprocess.run(command, capture_output=True, text=True, env=env)
    lines = [line for line in result.stdout.splitlines() if line.startswith("RESULT ")]
    if result.returncode != 0 or not lines:
        tail = (result.stderr or result.stdout).strip().splitlines()[-3:]
        return {"backend": backend, "error": " | ".join(tail) or f"exit {result.returncode}"}
    return json.loads(lines[-1][len("RESULT ") :])


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--worker", choices=KERAS_BACKENDS, help=argparse.SUPPRESS)
    parser.add_argument(
        "--backends",
        default=",".join(installed_backends()),
        help="Keras backends to check [default: every one installed]",
    )
    parser.add_argument("--cpu", action="store_true", help="check on the CPU when no GPU")
    parser.add_argument("--checks-only", action="store_true", help="skip the speed table")
    parser.add_argument(
        "--width", type=float, default=0.25, help="the checks' model width [default 0.25]"
    )
    parser.add_argument(
        "--speed-width", default="1", help="the timed model's width [default 1: the study's]"
    )
    parser.add_argument("--batch-sizes", default="512")
    parser.add_argument(
        "--precisions",
        default="float32,mixed_bfloat16",
        help="the precisions checked and timed [default float32,mixed_bfloat16]",
    )
    parser.add_argument("--jit-compile", default="auto")
    parser.add_argument("--bn", choices=("off", "on", "both"), default="off")
    parser.add_argument("--images", type=int, default=10_000, help="images per timed epoch")
    parser.add_argument("--epochs", type=int, default=3, help="1 warm-up + timed epochs")
    parser.add_argument("--json", help="write the checks and the speed rows here")
    args = parser.parse_args(argv)

    if args.worker:
        found = check(args.worker, args.width, args.cpu, comma_list(args.precisions))
        print("RESULT " + json.dumps(found), flush=True)
        return 0

    backends = comma_list(args.backends)
    checks = []
    for backend in backends:
        checks.append(_run_check(backend, args))
        row = checks[-1]
        if "error" in row:
            print(f"FAIL {backend}: {row['error']}", flush=True)
        else:
            where = "GPU" if row["gpu"] else "CPU"
            fits = ", ".join(
                f"{key[len('losses_') :]} {value}"
                for key, value in row.items()
                if key.startswith("losses_")
            )
            print(
                f"ok   {backend} on the {where} (weights on {row['weights_on']}): "
                f"fit {fits}; evaluate mse {row['mse']}; .keras "
                f"round trip within {row['reload_difference']:.1g}",
                flush=True,
            )
    passed = [row["backend"] for row in checks if "error" not in row]
    rows = []
    if not args.checks_only and passed:
        rows = _speed(passed, args)
    if args.json:
        with open(args.json, "w") as file:
            json.dump({"checks": checks, "speed": rows}, file, indent=2)
    return 0 if len(passed) == len(backends) else 1


def _speed(backends, args):
    """The full-width ResNet-18 VAE's training speed on `backends` and the native twin."""
    sys.path.insert(0, HERE)
    import throughput

    options = ["--backends", ",".join([*backends, throughput.NATIVE])]
    options += ["--width", args.speed_width, "--latent-dim", "128", "--images", str(args.images)]
    options += ["--epochs", str(args.epochs), "--batch-sizes", args.batch_sizes]
    options += ["--precisions", args.precisions, "--jit-compile", args.jit_compile]
    rows = []
    for bn in ("off", "on") if args.bn == "both" else (args.bn,):
        with tempfile.NamedTemporaryFile(suffix=".json") as file:
            throughput.main([*options, "--bn" if bn == "on" else "--no-bn", "--json", file.name])
            rows += json.load(open(file.name))["results"]
    return rows


if __name__ == "__main__":
    sys.exit(main())
