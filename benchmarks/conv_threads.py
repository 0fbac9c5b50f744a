"""One 3x3 convolution's forward and gradient time on JAX (XLA:CPU) and TensorFlow (oneDNN).

Never part of the test suite. It explains the JAX row of benchmarks/RESULTS.md:
run it on every core and on one (`taskset -c 0`), and compare how each engine
scales. Each engine runs in its own process.

Examples:
    python benchmarks/conv_threads.py
    taskset -c 0 python benchmarks/conv_threads.py
"""

import argparse
import json
import os
import subprocess
import sys
import time

# (batch, height/width, channels): stages of the width-0.25 ResNet-18 VAE at 32x32.
SHAPES = [(64, 32, 16), (64, 16, 32), (64, 8, 64)]


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


def _row(shape, forward, gradient, x, w, repeats):
    """Median times of `forward(x, w)` and `gradient(x, w)`, waiting for their results."""
    import numpy as np

    def wait(outputs):
        return [
            np.asarray(output)
            for output in (outputs if isinstance(outputs, (list, tuple)) else [outputs])
        ]

    return {
        "shape": list(shape),
        "forward_ms": _median_ms(lambda: forward(x, w), wait, repeats),
        "gradient_ms": _median_ms(lambda: gradient(x, w), wait, repeats),
    }


def _measure_all(forward, gradient, to_tensor, repeats):
    """Times `forward` and `gradient` at every shape of `SHAPES`, on seeded random inputs."""
    import numpy as np

    results = []
    for batch, size, channels in SHAPES:
        rng = np.random.default_rng(0)
        x = to_tensor(rng.random((batch, size, size, channels), dtype=np.float32))
        w = to_tensor(rng.random((3, 3, channels, channels), dtype=np.float32))
        results.append(_row((batch, size, size, channels), forward, gradient, x, w, repeats))
    return results


def worker_jax(repeats):
    import jax
    import jax.numpy as jnp

    def conv(x, w):
        return jax.lax.conv_general_dilated(
            x, w, (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC")
        )

    forward = jax.jit(conv)
    gradient = jax.jit(jax.grad(lambda x, w: jnp.sum(conv(x, w) ** 2), argnums=(0, 1)))
    return _measure_all(forward, gradient, jnp.asarray, repeats)


def worker_tensorflow(repeats):
    import tensorflow as tf

    forward = tf.function(lambda x, w: tf.nn.conv2d(x, w, 1, "SAME"))

    @tf.function
    def gradient(x, w):
        with tf.GradientTape() as tape:
            tape.watch([x, w])
            loss = tf.reduce_sum(tf.nn.conv2d(x, w, 1, "SAME") ** 2)
        return tape.gradient(loss, [x, w])

    return _measure_all(forward, gradient, tf.constant, repeats)


WORKERS = {"jax": worker_jax, "tensorflow": worker_tensorflow}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--worker", choices=sorted(WORKERS), help=argparse.SUPPRESS)
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args(argv)
    if args.worker:
        print("RESULT " + json.dumps(WORKERS[args.worker](args.repeats)))
        return 0
    print(f"CPUs this process may use: {len(os.sched_getaffinity(0))}")
    for engine in WORKERS:
        env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
        command = [sys.executable, os.path.abspath(__file__), "--worker", engine]
        command += ["--repeats", str(args.repeats)]
        output = subprocess.run(command, capture_output=True, text=True, env=env, check=True)
        line = next(x for x in output.stdout.splitlines() if x.startswith("RESULT "))
        for row in json.loads(line[len("RESULT ") :]):
            shape = "x".join(map(str, row["shape"]))
            print(
                f"{engine:10s} {shape:12s} forward {row['forward_ms']:6.2f} ms  "
                f"gradient {row['gradient_ms']:6.2f} ms",
                flush=True,
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
