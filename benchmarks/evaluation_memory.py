"""Peak memory and speed of `resvae evaluate` (and `resvae fit`) at the study's width.

Never part of the test suite. Each measurement runs the real command in its own
process and reads that process's peak resident memory from the kernel
(`os.wait4`'s ru_maxrss) and its wall time. The model is the full-width
ResNet-18 VAE (32x32x3, latent 128, 26.4 M parameters) with its initial
weights, saved once per backend: memory and speed do not depend on training.
The test images are random, in an .npz file, so no download is needed.

The seconds per image are marginal: the time difference between the largest
and the smallest test set over the difference in images, which leaves out
start-up, imports and model loading.

Examples:
    # resvae evaluate with and without IWAE, 500 and 2,000 test images, every backend:
    python benchmarks/evaluation_memory.py --backends torch,jax,tensorflow \\
        --images 500,2000 --iwae-samples 0,16
    # also resvae fit on 512 training images (1 epoch, then its own evaluation):
    python benchmarks/evaluation_memory.py --backends torch --images 500 --fit-images 512
"""

import argparse
import itertools
import json
import os
import subprocess
import sys
import tempfile
import time

from comma_lists import comma_list

SHAPE = (32, 32, 3)


def _write_data(folder, num_test, num_train):
    import numpy as np

    rng = np.random.default_rng(0)
    path = os.path.join(folder, f"data-{num_train}-{num_test}.npz")
    if not os.path.exists(path):
        np.savez(
            path,
            x_train=rng.integers(0, 256, (num_train, *SHAPE), dtype="uint8"),
            x_test=rng.integers(0, 256, (num_test, *SHAPE), dtype="uint8"),
        )
    return path


def _save_model(folder, backend, args):
    """The full-width model, built and saved in a process of its own on `backend`."""
    path = os.path.join(folder, f"model-{backend}.keras")
    code = (
        "import keras_resvae, keras; keras.utils.set_random_seed(0); "
        f"vae = keras_resvae.build_vae({args.arch!r}, {SHAPE}, {args.latent_dim}, "
        f"width={args.width}, use_batch_norm={args.bn}, seed=0); "
        "vae.compile(optimizer=keras.optimizers.Adam(1e-3)); "
        f"print(vae.count_params()); vae.save({path!r})"
    )
    output = subprocess.run(
        [sys.executable, "-c", code], env=_env(backend), check=True, capture_output=True, text=True
    )
    return path, int(output.stdout.split()[-1])


def _env(backend):
    return {**os.environ, "KERAS_BACKEND": backend, "TF_CPP_MIN_LOG_LEVEL": "3"}


def measure(command, backend):
    """Runs `command`; returns its wall seconds and peak resident memory in GB."""
    start = time.perf_counter()
    process = subprocess.Popen(
        command, env=_env(backend), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    output = process.stdout.read()
    _, status, usage = os.wait4(process.pid, 0)
    seconds = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"{' '.join(command)} failed:\n{output[-3000:]}")
    # ru_maxrss is in kilobytes on Linux.
    return seconds, usage.ru_maxrss / 2**20, output


def _resvae(*args):
    return [sys.executable, "-m", "keras_resvae.cli", *map(str, args)]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--backends", default="torch,jax,tensorflow")
    parser.add_argument("--images", default="500,2000", help="Test-set sizes, comma-separated.")
    parser.add_argument("--iwae-samples", default="0,16", help="K values, comma-separated.")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--fit-images", type=int, default=0, help="Also time `resvae fit`.")
    parser.add_argument("--fit-batch-size", type=int, default=100)
    parser.add_argument("--arch", default="resnet18")
    parser.add_argument("--width", type=float, default=1.0)
    parser.add_argument("--latent-dim", type=int, default=128)
    parser.add_argument("--bn", action="store_true")
    parser.add_argument("--json", default=None, help="Also write the rows here.")
    args = parser.parse_args(argv)
    sizes = sorted(comma_list(args.images, int))
    samples = comma_list(args.iwae_samples, int)
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        for backend in comma_list(args.backends):
            model, parameters = _save_model(folder, backend, args)
            print(f"{backend}: {args.arch} width {args.width}, {parameters:,} parameters")
            for k, n in itertools.product(samples, sizes):
                data = _write_data(folder, n, 64)
                command = _resvae(
                    "evaluate", model, "--dataset", data, "--max-images", n,
                    "--iwae-samples", k, "--batch-size", args.batch_size,
                )  # fmt: skip
                seconds, peak, _ = measure(command, backend)
                rows.append(dict(backend=backend, command="evaluate", images=n, iwae_samples=k,
                                 seconds=seconds, peak_gb=peak))  # fmt: skip
                print(f"  evaluate K={k:<3d} {n:6d} images: {seconds:7.1f} s, peak {peak:.2f} GB")
            if args.fit_images:
                data = _write_data(folder, sizes[0], args.fit_images)
                out = os.path.join(folder, f"fit-{backend}")
                command = _resvae(
                    "fit", "--dataset", data, "--arch", args.arch, "--width", args.width,
                    "--latent-dim", args.latent_dim, "--epochs", 1, "--out", out,
                    "--batch-size", args.fit_batch_size, *([] if args.bn else ["--no-bn"]),
                )  # fmt: skip
                seconds, peak, _ = measure(command, backend)
                rows.append(dict(backend=backend, command="fit", images=args.fit_images,
                                 test_images=sizes[0], seconds=seconds, peak_gb=peak))  # fmt: skip
                print(f"  fit {args.fit_images} images + evaluation: {seconds:.1f} s, "
                      f"peak {peak:.2f} GB")  # fmt: skip
    print()
    print("| backend | K | test images | seconds | peak RSS (GB) | s/image (marginal) |")
    print("|---|---|---|---|---|---|")
    for row in rows:
        if row["command"] != "evaluate":
            continue
        same = [r for r in rows if r["command"] == "evaluate" and r["backend"] == row["backend"]
                and r["iwae_samples"] == row["iwae_samples"]]  # fmt: skip
        marginal = ""
        if len(same) > 1 and row["images"] == same[-1]["images"]:
            first, last = same[0], same[-1]
            per_image = (last["seconds"] - first["seconds"]) / (last["images"] - first["images"])
            marginal = f"{1000 * per_image:.1f} ms"
        print(f"| {row['backend']} | {row['iwae_samples']} | {row['images']:,} | "
              f"{row['seconds']:.1f} | {row['peak_gb']:.2f} | {marginal} |")  # fmt: skip
    if args.json:
        with open(args.json, "w") as file:
            json.dump(rows, file, indent=1)


if __name__ == "__main__":
    main()
