"""One 3x3 convolution's forward and gradient time on JAX (XLA:CPU), TensorFlow and PyTorch.

Never part of the test suite. It explains the JAX rows of benchmarks/RESULTS.md:
run it on every core and on one (`taskset -c 0`), and compare how each engine
scales, or at `--width 1` with `--strides 1,2` to see which of the ResNet-18
VAE's convolutions each engine is slow at. Each engine runs in its own process.

Examples:
    python benchmarks/conv_threads.py
    taskset -c 0 python benchmarks/conv_threads.py
    python benchmarks/conv_threads.py --width 1 --strides 1,2 --engines jax,tensorflow,torch \
        --split-gradients
"""

import argparse
import json
import os
import subprocess
import sys
import time

from comma_lists import comma_list

BATCH = 64
# (height/width, channels) of the full-width ResNet-18 VAE's stages at 32x32.
STAGES = [(32, 64), (16, 128), (8, 256), (4, 512)]


def conv_shapes(width, strides, stages=4):
    """The convolutions to time: (batch, size, size, in channels, out channels, stride).

    Stride 1 is a block's own 3x3 convolution; stride 2 is the first one of the next
    stage, which halves the size and doubles the channels. Width 0.25 with three
    stages and stride 1 is the table already in RESULTS.md.
    """
    channels = [max(1, round(c * width)) for _, c in STAGES[:stages]]
    shapes = []
    for stage, (size, _) in enumerate(STAGES[:stages]):
        if 1 in strides:
            shapes.append((BATCH, size, size, channels[stage], channels[stage], 1))
        if 2 in strides and stage + 1 < stages:
            shapes.append((BATCH, size, size, channels[stage], channels[stage + 1], 2))
    return shapes


def _median_ms(call, wait, repeats, calls_per_repeat=10):
    """Median over `repeats` of the mean time per call of `calls_per_repeat` calls in a row.

    Only the last call of a row is waited for, as in a training loop.
    """
    wait(call())
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(calls_per_repeat):
            outputs = call()
        wait(outputs)
        times.append((time.perf_counter() - start) / calls_per_repeat)
    return 1000 * sorted(times)[len(times) // 2]


# What each gradient function differentiates with respect to: (input, kernel).
GRADIENTS = {
    "gradient": (True, True),
    "input_gradient": (True, False),
    "kernel_gradient": (False, True),
}


def _row(shape, forward, gradients, x, w, repeats):
    """Median times of `forward(x, w)` and of each of `gradients` (name -> function)."""
    import numpy as np

    def wait(outputs):
        return [
            np.asarray(output.detach() if hasattr(output, "detach") else output)
            for output in (outputs if isinstance(outputs, (list, tuple)) else [outputs])
        ]

    row = {"shape": list(shape), "forward_ms": _median_ms(lambda: forward(x, w), wait, repeats)}
    for name, gradient in gradients.items():
        row[f"{name}_ms"] = _median_ms(lambda: gradient(x, w), wait, repeats)  # noqa: B023
    return row


def _measure_all(make_functions, to_tensor, shapes, repeats, split):
    """Times forward and gradients at every shape, on seeded random NHWC/HWIO inputs.

    `make_functions(stride)` returns the engine's `(forward, gradient)` for that
    stride, where `gradient(wrt_input, wrt_kernel)` makes the gradient function.
    `split` also times the input's and the kernel's gradients alone.
    """
    import numpy as np

    results = []
    for batch, size, _, channels_in, channels_out, stride in shapes:
        rng = np.random.default_rng(0)
        x = to_tensor(rng.random((batch, size, size, channels_in), dtype=np.float32))
        w = to_tensor(rng.random((3, 3, channels_in, channels_out), dtype=np.float32))
        forward, gradient = make_functions(stride)
        names = GRADIENTS if split else ["gradient"]
        gradients = {name: gradient(*GRADIENTS[name]) for name in names}
        shape = (batch, size, size, channels_in, channels_out, stride)
        results.append(_row(shape, forward, gradients, x, w, repeats))
    return results


def worker_jax(shapes, repeats, split):
    import jax
    import jax.numpy as jnp

    def make_functions(stride):
        def conv(x, w):
            return jax.lax.conv_general_dilated(
                x, w, (stride, stride), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC")
            )

        def gradient(wrt_input, wrt_kernel):
            argnums = tuple(i for i, wanted in enumerate((wrt_input, wrt_kernel)) if wanted)
            loss = lambda x, w: jnp.sum(conv(x, w) ** 2)  # noqa: E731
            return jax.jit(jax.grad(loss, argnums=argnums))

        return jax.jit(conv), gradient

    return _measure_all(make_functions, jnp.asarray, shapes, repeats, split)


def worker_tensorflow(shapes, repeats, split):
    import tensorflow as tf

    def make_functions(stride):
        forward = tf.function(lambda x, w: tf.nn.conv2d(x, w, stride, "SAME"))

        def gradient(wrt_input, wrt_kernel):
            @tf.function
            def function(x, w):
                sources = [t for t, wanted in zip((x, w), (wrt_input, wrt_kernel)) if wanted]
                with tf.GradientTape() as tape:
                    tape.watch(sources)
                    loss = tf.reduce_sum(tf.nn.conv2d(x, w, stride, "SAME") ** 2)
                return tape.gradient(loss, sources)

            return function

        return forward, gradient

    return _measure_all(make_functions, tf.constant, shapes, repeats, split)


def worker_torch(shapes, repeats, split):
    """PyTorch's own layout (NCHW), as the native twin and Keras's torch backend run it."""
    import torch
    import torch.nn.functional as F

    def to_tensor(array):
        # NHWC -> NCHW, HWIO -> OIHW.
        order = (0, 3, 1, 2) if array.shape[0] == BATCH else (3, 2, 0, 1)
        return torch.from_numpy(array).permute(order).contiguous()

    def make_functions(stride):
        def forward(x, w):
            with torch.no_grad():
                return F.conv2d(x, w, stride=stride, padding=1)

        def gradient(wrt_input, wrt_kernel):
            def function(x, w):
                x = x.detach().requires_grad_(wrt_input)
                w = w.detach().requires_grad_(wrt_kernel)
                sources = [t for t, wanted in zip((x, w), (wrt_input, wrt_kernel)) if wanted]
                loss = (F.conv2d(x, w, stride=stride, padding=1) ** 2).sum()
                return torch.autograd.grad(loss, sources)

            return function

        return forward, gradient

    return _measure_all(make_functions, to_tensor, shapes, repeats, split)


WORKERS = {"jax": worker_jax, "tensorflow": worker_tensorflow, "torch": worker_torch}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--worker", choices=sorted(WORKERS), help=argparse.SUPPRESS)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--width", type=float, default=0.25, help="Channel multiplier.")
    parser.add_argument("--strides", default="1", help="Comma-separated: 1, 2 or 1,2.")
    parser.add_argument(
        "--stages", type=int, default=None, help="Stages (default 3 at width 0.25, else 4)."
    )
    parser.add_argument("--engines", default="jax,tensorflow", help="jax, tensorflow, torch.")
    parser.add_argument(
        "--split-gradients",
        action="store_true",
        help="Also time the input's and the kernel's gradients alone.",
    )
    args = parser.parse_args(argv)
    strides = set(comma_list(args.strides, int))
    stages = args.stages or (3 if args.width == 0.25 else 4)
    shapes = conv_shapes(args.width, strides, stages)
    if args.worker:
        rows = WORKERS[args.worker](shapes, args.repeats, args.split_gradients)
        print("RESULT " + json.dumps(rows))
        return 0
    print(f"CPUs this process may use: {len(os.sched_getaffinity(0))}")
    for engine in comma_list(args.engines):
        env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
        command = [sys.executable, os.path.abspath(__file__), "--worker", engine]
        command += ["--repeats", str(args.repeats), "--width", str(args.width)]
        command += ["--strides", args.strides, "--stages", str(stages)]
        command += ["--split-gradients"] if args.split_gradients else []
        output = subprocess.run(command, capture_output=True, text=True, env=env, check=True)
        line = next(x for x in output.stdout.splitlines() if x.startswith("RESULT "))
        for row in json.loads(line[len("RESULT ") :]):
            batch, size, _, channels_in, channels_out, stride = row["shape"]
            shape = f"{batch}x{size}x{size}x{channels_in}->{channels_out} s{stride}"
            times = f"forward {row['forward_ms']:8.2f} ms  gradient {row['gradient_ms']:8.2f} ms"
            if args.split_gradients:
                times += (
                    f"  (input alone {row['input_gradient_ms']:8.2f} ms, "
                    f"kernel alone {row['kernel_gradient_ms']:8.2f} ms)"
                )
            print(f"{engine:10s} {shape:22s} {times}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
