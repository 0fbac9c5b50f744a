"""Where a training step's memory goes: Keras on each backend against the native PyTorch twin.

Never part of the test suite. For each variant and each measure, in a process of
its own (the allocator setting must be in place before Python starts), it reports:
- the bytes autograd saves for one forward pass of the objective, counted with
  `torch.autograd.graph.saved_tensors_hooks` (each storage once; PyTorch only);
- the peak resident memory after `--steps` optimizer steps (default 3), and the
  median seconds per step from the third on (the first two include warm-up);
  time only means something on an otherwise idle machine.
Every variant imports keras, so Keras's own import (about 0.3 GB) is not part of the gap.

Examples:
    python benchmarks/step_memory.py --width 1 --batch-size 100
    # the Keras step on every backend:
    python benchmarks/step_memory.py --backends torch,tensorflow,jax
    # with glibc's mmap threshold fixed at 1 MB, 10 steps, timed:
    python benchmarks/step_memory.py --steps 10 --malloc-mmap-threshold 1048576
"""

import argparse
import math
import os
import resource
import statistics
import subprocess
import sys
import time

from comma_lists import comma_list

HERE = os.path.dirname(os.path.abspath(__file__))


def _saved_bytes(run):
    import torch

    storages = {}

    def pack(tensor):
        storage = tensor.untyped_storage()
        storages[storage.data_ptr()] = storage.nbytes()
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        run()
    return sum(storages.values())


def _median_step_seconds(stamps):
    gaps = [later - earlier for earlier, later in zip(stamps, stamps[1:])][1:]
    return statistics.median(gaps) if gaps else float("nan")


def worker(variant, measure, width, batch_size, steps):
    """`variant` is "keras-<backend>" or "native"; returns (bytes, seconds per step)."""
    backend = variant.split("-", 1)[1] if variant.startswith("keras-") else "torch"
    os.environ["KERAS_BACKEND"] = backend
    import keras
    import numpy as np

    import keras_resvae

    images = np.random.default_rng(0).uniform(size=(batch_size, 32, 32, 3)).astype("float32")
    if variant.startswith("keras-"):
        vae = keras_resvae.build_vae(
            "resnet18", (32, 32, 3), 128, use_batch_norm=False, width=width, seed=0
        )
        vae.compile(optimizer=keras.optimizers.Adam(3e-4))
        if measure == "saved":
            return _saved_bytes(lambda: vae.compute_elbo(images, training=True)), 0.0
        stamps = [time.perf_counter()]
        record = keras.callbacks.LambdaCallback(
            on_train_batch_end=lambda batch, logs: stamps.append(time.perf_counter())
        )
        vae.fit(images, batch_size=batch_size, epochs=steps, verbose=0, callbacks=[record])
    else:
        import torch

        sys.path.insert(0, HERE)
        import native_torch

        model = native_torch.ResNet18VAE((32, 32, 3), 128, width, False)
        step = native_torch.make_train_step(model, torch.optim.Adam(model.parameters(), 3e-4))
        tensor = torch.tensor(images).permute(0, 3, 1, 2).contiguous()
        if measure == "saved":
            saved = _saved_bytes(lambda: native_torch.negative_elbo(tensor, *model(tensor)))
            return saved, 0.0
        stamps = [time.perf_counter()]
        for _ in range(steps):
            step(tensor)
            stamps.append(time.perf_counter())
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # kB on Linux
    return peak, _median_step_seconds(stamps)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--width", type=float, default=1.0)
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--malloc-mmap-threshold", type=int, default=None)
    parser.add_argument("--backends", default="torch", help="the Keras step's, comma-separated")
    parser.add_argument("--worker", nargs=2, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        print(*worker(*args.worker, args.width, args.batch_size, args.steps))
        return
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    if args.malloc_mmap_threshold is not None:
        env["MALLOC_MMAP_THRESHOLD_"] = str(args.malloc_mmap_threshold)
    print(
        f"| step | autograd's saved tensors (GB) | peak RSS after {args.steps} steps (GB) "
        "| s/step (median) |"
    )
    print("|---|---|---|---|")
    variants = [f"keras-{backend}" for backend in comma_list(args.backends)] + ["native"]
    for variant in variants:
        row = {"saved": float("nan")}
        measures = ("saved", "peak") if variant in ("keras-torch", "native") else ("peak",)
        for measure in measures:
            options = ["--width", str(args.width), "--batch-size", str(args.batch_size)]
            options += ["--steps", str(args.steps)]
            command = [sys.executable, __file__, "--worker", variant, measure, *options]
            output = subprocess.run(command, env=env, check=True, capture_output=True, text=True)
            size, seconds = output.stdout.strip().splitlines()[-1].split()
            row[measure] = int(size) / 2**30
            row["seconds"] = float(seconds)
        saved = "" if math.isnan(row["saved"]) else f"{row['saved']:.2f}"
        print(f"| {variant} | {saved} | {row['peak']:.2f} | {row['seconds']:.2f} |")


if __name__ == "__main__":
    main()
