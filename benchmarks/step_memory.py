"""Where a PyTorch training step's memory goes: Keras on PyTorch against the native twin.

Never part of the test suite. For each variant and each measure, in a process of
its own (the allocator setting must be in place before Python starts), it reports:
- the bytes autograd saves for one forward pass of the objective, counted with
  `torch.autograd.graph.saved_tensors_hooks` (each storage once);
- the peak resident memory after 3 optimizer steps.
Both variants import keras, so Keras's own import (about 0.3 GB) is not part of the gap.

Examples:
    python benchmarks/step_memory.py --width 1 --batch-size 100
    # with glibc's mmap threshold fixed at 128 KB:
    python benchmarks/step_memory.py --malloc-mmap-threshold 131072
"""

import argparse
import os
import resource
import subprocess
import sys

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


def worker(variant, measure, width, batch_size):
    os.environ["KERAS_BACKEND"] = "torch"
    import keras
    import numpy as np
    import torch

    import keras_resvae

    sys.path.insert(0, HERE)
    import native_torch

    images = np.random.default_rng(0).uniform(size=(batch_size, 32, 32, 3)).astype("float32")
    if variant == "keras":
        vae = keras_resvae.build_vae(
            "resnet18", (32, 32, 3), 128, use_batch_norm=False, width=width, seed=0
        )
        vae.compile(optimizer=keras.optimizers.Adam(3e-4))
        if measure == "saved":
            return _saved_bytes(lambda: vae.compute_elbo(images, training=True))
        vae.fit(images, batch_size=batch_size, epochs=3, verbose=0)
    else:
        model = native_torch.ResNet18VAE((32, 32, 3), 128, width, False)
        step = native_torch.make_train_step(model, torch.optim.Adam(model.parameters(), 3e-4))
        tensor = torch.tensor(images).permute(0, 3, 1, 2).contiguous()
        if measure == "saved":
            return _saved_bytes(lambda: native_torch.negative_elbo(tensor, *model(tensor)))
        for _ in range(3):
            step(tensor)
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # kB on Linux


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--width", type=float, default=1.0)
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--malloc-mmap-threshold", type=int, default=None)
    parser.add_argument("--worker", nargs=2, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        print(worker(*args.worker, args.width, args.batch_size))
        return
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    if args.malloc_mmap_threshold is not None:
        env["MALLOC_MMAP_THRESHOLD_"] = str(args.malloc_mmap_threshold)
    print("| step | autograd's saved tensors (GB) | peak RSS after 3 steps (GB) |")
    print("|---|---|---|")
    for variant in ("keras", "native"):
        row = {}
        for measure in ("saved", "peak"):
            options = ["--width", str(args.width), "--batch-size", str(args.batch_size)]
            command = [sys.executable, __file__, "--worker", variant, measure, *options]
            output = subprocess.run(command, env=env, check=True, capture_output=True, text=True)
            row[measure] = int(output.stdout.strip().splitlines()[-1]) / 2**30
        print(f"| {variant} | {row['saved']:.2f} | {row['peak']:.2f} |")


if __name__ == "__main__":
    main()
