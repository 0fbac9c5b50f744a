"""Training and inference throughput of keras-resvae on every backend, and of native PyTorch.

Never part of the test suite. Each measurement runs in its own process, because
Keras picks its backend once per process. Synthetic data of CIFAR-10's (or
MNIST's) shape, in memory, so the model is what is measured; the input pipeline
is measured on its own (`--pipeline`).

Examples:
    # ResNet-18 VAE without batch norm, every backend and native PyTorch, CPU:
    python benchmarks/throughput.py --backends tensorflow,jax,torch,native-torch
    # The hierarchical VAE's cost per image against the ResNet-18 VAE's; at one
    # width they have about the same parameter count (1.62 M each at 0.25), PyTorch:
    python benchmarks/throughput.py --backends torch --arch resnet18,hvae \
        --width 0.25 --latent-dim 16
    # Mixed precision on a GPU, two batch sizes, results as JSON:
    python benchmarks/throughput.py --precisions float32,mixed_bfloat16 \\
        --batch-sizes 128,512 --images 50000 --json benchmarks/gpu.json
    # Each backend's step compiled and not (XLA on TensorFlow, torch.compile on PyTorch):
    python benchmarks/throughput.py --jit-compile auto,on,off

Reported per run: images/s (training: the median of the timed epochs after a
warm-up epoch that includes compilation), ms per step, peak memory (host RSS on
CPU; device memory on GPU), and how many times the training step was compiled
again after the warm-up epoch (0 = no recompilation; TensorFlow and JAX count
traces of `train_step`, torch.compile counts the graphs Dynamo compiled; eager
PyTorch compiles nothing). The label says how the step ran (graph, XLA, eager,
torch.compile), with * on the default setting (jit_compile="auto"). With several
`--arch` names, each architecture's rows follow, then every architecture's cost
per training image (s/image) and per image and million parameters, relative to
the first.
"""

import argparse
import itertools
import json
import os
import resource
import statistics
import subprocess
import sys
import time

from comma_lists import comma_list

HERE = os.path.dirname(os.path.abspath(__file__))
SHAPES = {"cifar10": (32, 32, 3), "mnist": (28, 28, 1)}
KERAS_BACKENDS = ("tensorflow", "jax", "torch")
NATIVE = "native-torch"


# ------------------------------------------------------------------- workers


def _peak_memory_mb(backend):
    """Peak device memory on a GPU, else the process's peak resident memory."""
    try:
        if backend in ("torch", NATIVE):
            import torch

            if torch.cuda.is_available():
                return torch.cuda.max_memory_allocated() / 2**20
        if backend == "jax":
            import jax

            device = jax.devices()[0]
            if device.platform == "gpu":
                return device.memory_stats()["peak_bytes_in_use"] / 2**20
        if backend == "tensorflow":
            import tensorflow as tf

            if tf.config.list_logical_devices("GPU"):
                return tf.config.experimental.get_memory_info("GPU:0")["peak"] / 2**20
    except Exception:  # memory statistics are best effort
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _synthetic(args, dtype="float32"):
    import numpy as np

    rng = np.random.default_rng(0)
    return rng.uniform(size=(args.images, *SHAPES[args.shape])).astype(dtype)


def _summary(epoch_seconds, images, batch_size):
    timed = epoch_seconds[1:] or epoch_seconds
    median = statistics.median(timed)
    steps = images // batch_size
    return {
        "images_per_second": steps * batch_size / median,
        "ms_per_step": 1000 * median / steps,
        "warmup_seconds": epoch_seconds[0],
        "epoch_seconds": epoch_seconds,
    }


def _build(args, precision):
    import keras

    import keras_resvae
    from keras_resvae.compilation import check_jit_compile

    keras.utils.set_random_seed(0)
    keras.config.set_dtype_policy(precision)
    vae = keras_resvae.build_vae(
        args.arch,
        SHAPES[args.shape],
        args.latent_dim,
        use_batch_norm=args.bn,
        width=args.width,
        seed=0,
    )
    vae.compile(
        optimizer=keras.optimizers.Adam(3e-4), jit_compile=check_jit_compile(args.jit_compile)
    )
    return vae


class _CompileCounter:
    """How many times the training step has been compiled so far, or None if eager.

    TensorFlow and JAX run the Python `train_step` only while tracing a new
    graph, so counting its calls counts compilations. torch.compile's Dynamo
    keeps its own count of compiled graphs.
    """

    def __init__(self, vae):
        import keras

        self.backend, self.jit = keras.backend.backend(), vae.jit_compile
        self.calls = 0
        if self.backend != "torch":
            step = vae.train_step

            def counted(*args):
                self.calls += 1
                return step(*args)

            vae.train_step = counted

    def count(self):
        if self.backend != "torch":
            return self.calls
        if not self.jit:
            return None
        from torch._dynamo.utils import counters

        return counters["stats"]["unique_graphs"]


def worker_train(args):
    import keras

    from keras_resvae.distribute import data_parallel

    backend = keras.backend.backend()
    with data_parallel(args.cpu_devices > 1 and backend == "jax", args.batch_size):
        return _train(args, backend)


def _train(args, backend):
    import keras

    vae = _build(args, args.precision)
    x = _synthetic(args)
    vae.initialize_output_bias(x[:256])
    counter = _CompileCounter(vae)
    epoch_seconds, compilations = [], []

    class Timer(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self.start = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            epoch_seconds.append(time.perf_counter() - self.start)
            compilations.append(counter.count())

    history = vae.fit(
        x,
        batch_size=args.batch_size,
        epochs=args.epochs,
        shuffle=False,
        callbacks=[Timer()],
        verbose=0,
    )
    result = _summary(epoch_seconds, len(x), args.batch_size)
    recompiles = None if compilations[0] is None else compilations[-1] - compilations[0]
    trainable = sum(int(keras.ops.size(w)) for w in vae.trainable_weights)
    result.update(
        final_loss=float(history.history["loss"][-1]),
        recompiles_after_warmup=recompiles,
        trainable_parameters=trainable,
        step=_step_kind(backend, vae.jit_compile) + _devices_note(backend, args),
        peak_memory_mb=_peak_memory_mb(backend),
    )
    return result


def _devices_note(backend, args):
    if backend == "jax" and args.cpu_devices > 1:
        import keras

        return f" on {len(keras.distribution.list_devices())} CPU devices"
    return ""


def _step_kind(backend, jit_compile):
    """How the training step actually ran, in words."""
    if backend == "tensorflow":
        return "XLA" if jit_compile else "graph"
    if backend == "jax":
        return "XLA"
    return "torch.compile" if jit_compile else "eager"


def worker_native(args):
    import torch

    sys.path.insert(0, HERE)
    from native_torch import ResNet18VAE, make_train_step

    if args.arch != "resnet18":
        raise SystemExit("The native PyTorch baseline is the ResNet-18 VAE.")
    device = "cuda" if torch.cuda.is_available() else "cpu"
    torch.manual_seed(0)
    model = ResNet18VAE(SHAPES[args.shape], args.latent_dim, args.width, bool(args.bn)).to(device)
    trainable = sum(p.numel() for p in model.parameters())
    if args.jit_compile == "on":
        model = torch.compile(model)
    autocast = {"float32": None, "mixed_bfloat16": torch.bfloat16, "mixed_float16": torch.float16}
    step = make_train_step(
        model, torch.optim.Adam(model.parameters(), 3e-4), autocast[args.precision], device
    )
    x = torch.from_numpy(_synthetic(args)).permute(0, 3, 1, 2).contiguous().to(device)
    steps = len(x) // args.batch_size
    epoch_seconds = []
    for _ in range(args.epochs):
        start = time.perf_counter()
        for index in range(steps):
            loss = step(x[index * args.batch_size : (index + 1) * args.batch_size])
        loss.item()  # waits for the device
        epoch_seconds.append(time.perf_counter() - start)
    result = _summary(epoch_seconds, len(x), args.batch_size)
    result.update(
        step=_step_kind(NATIVE, args.jit_compile == "on"),
        final_loss=float(loss),
        trainable_parameters=trainable,
        peak_memory_mb=_peak_memory_mb(NATIVE),
    )
    return result


def worker_inference(args):
    import keras
    import numpy as np

    backend = keras.backend.backend()
    vae = _build(args, args.precision)
    x = _synthetic(args)
    results = {}
    z = np.random.default_rng(1).normal(size=(len(x), vae.latent_dim)).astype("float32")
    for name, data, function in [
        ("encode", x, lambda batch: vae.encode(batch)),
        ("decode", z, lambda batch: vae.decode(batch)),
        ("reconstruct", x, lambda batch: vae.reconstruct(batch)),
    ]:
        results[f"keras_{name}"] = _time_batches(function, data, args, keras.ops.convert_to_numpy)
    if backend == "tensorflow":
        import tempfile

        import tensorflow as tf

        from keras_resvae.export import export_vae

        with tempfile.TemporaryDirectory() as folder:
            export_vae(vae, os.path.join(folder, "export"))
            served = tf.saved_model.load(os.path.join(folder, "export"))
            for name, data, key in [("encode", x, "images"), ("decode", z, "z")]:
                signature = served.signatures[name]
                results[f"saved_model_{name}"] = _time_batches(
                    lambda batch, s=signature, k=key: s(**{k: tf.constant(batch)}), data, args
                )
            signature = served.signatures["reconstruct"]
            results["saved_model_reconstruct"] = _time_batches(
                lambda batch: signature(images=tf.constant(batch)), x, args
            )
    return results


def _time_batches(function, data, args, finish=None):
    """Images per second of `function` over `data` in batches: median of timed passes."""
    finish = finish or (lambda outputs: outputs)
    seconds = []
    for _ in range(args.epochs):
        start = time.perf_counter()
        for index in range(len(data) // args.batch_size):
            outputs = function(data[index * args.batch_size : (index + 1) * args.batch_size])
        if isinstance(outputs, dict):
            outputs = list(outputs.values())
        finish(outputs[0] if isinstance(outputs, (tuple, list)) else outputs)
        seconds.append(time.perf_counter() - start)
    return _summary(seconds, len(data), args.batch_size)["images_per_second"]


def worker_pipeline(args):
    """The tf.data pipeline alone: images per second it delivers, cached and uncached."""
    import numpy as np

    from keras_resvae.datasets.pipeline import make_splits
    from keras_resvae.startup import import_tensorflow

    tf = import_tensorflow()
    rng = np.random.default_rng(0)
    raw = rng.integers(0, 256, size=(args.images, *SHAPES[args.shape]), dtype=np.uint8)
    dataset = tf.data.Dataset.from_tensor_slices(raw)
    splits = make_splits(
        dataset, dataset.take(args.batch_size), SHAPES[args.shape], "synthetic",
        batch_size=args.batch_size, num_train=len(raw), num_test=args.batch_size,
    )  # fmt: skip
    seconds = []
    for _ in range(args.epochs):
        start = time.perf_counter()
        for _ in splits.train:
            pass
        seconds.append(time.perf_counter() - start)
    return _summary(seconds, len(raw), args.batch_size)


WORKERS = {
    "train": worker_train,
    "native": worker_native,
    "inference": worker_inference,
    "pipeline": worker_pipeline,
}


# ---------------------------------------------------------------- the driver


def _run_worker(kind, backend, args, batch_size, precision, jit_compile="auto"):
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    env["KERAS_BACKEND"] = "torch" if backend == NATIVE else backend
    if backend == "jax" and args.cpu_devices > 1:
        # XLA:CPU runs each small convolution on one core; several CPU devices,
        # data-parallel, put every core to work (see benchmarks/RESULTS.md).
        flag = f"--xla_force_host_platform_device_count={args.cpu_devices}"
        env["XLA_FLAGS"] = f"{env.get('XLA_FLAGS', '')} {flag}".strip()
    command = [sys.executable, os.path.abspath(__file__), "--worker", kind]
    command += ["--arch", args.arch, "--shape", args.shape, "--images", str(args.images)]
    command += ["--epochs", str(args.epochs), "--latent-dim", str(args.latent_dim)]
    command += ["--width", str(args.width), "--batch-sizes", str(batch_size)]
    command += ["--precisions", precision, "--bn" if args.bn else "--no-bn"]
    command += ["--jit-compile", jit_compile, "--cpu-devices", str(args.cpu_devices)]
    result = subprocess.run(command, capture_output=True, text=True, env=env)
    lines = [line for line in result.stdout.splitlines() if line.startswith("RESULT ")]
    if result.returncode != 0 or not lines:
        tail = (result.stderr or result.stdout).strip().splitlines()[-3:]
        return {"error": " | ".join(tail) or f"exit code {result.returncode}"}
    return json.loads(lines[-1][len("RESULT ") :])


def _machine():
    import platform

    return {
        "date": time.strftime("%Y-%m-%d"),
        "machine": platform.machine(),
        "processor": platform.processor(),
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
    }


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--worker", choices=sorted(WORKERS), help=argparse.SUPPRESS)
    parser.add_argument(
        "--arch",
        default="resnet18",
        help="an architecture of the registry (basic, resnet18, resnet50, hvae), or "
        "several, comma-separated, to compare their cost",
    )
    parser.add_argument("--bn", action=argparse.BooleanOptionalAction, default=False)
    parser.add_argument("--shape", default="cifar10", choices=sorted(SHAPES))
    parser.add_argument("--backends", default="tensorflow,jax,torch,native-torch")
    parser.add_argument("--batch-sizes", default="128")
    parser.add_argument("--precisions", default="float32")
    parser.add_argument(
        "--jit-compile",
        default="auto",
        help="comma-separated settings among auto,on,off (Keras's jit_compile; "
        "on = XLA on TensorFlow/JAX, torch.compile on PyTorch and native PyTorch)",
    )
    parser.add_argument("--images", type=int, default=2048, help="images per epoch")
    parser.add_argument("--epochs", type=int, default=4, help="1 warm-up + timed epochs")
    parser.add_argument("--latent-dim", type=int, default=128)
    parser.add_argument(
        "--width", default="1.0", help="filter multiplier; one per --arch, comma-separated"
    )
    parser.add_argument(
        "--cpu-devices",
        type=int,
        default=1,
        help="JAX only: split the CPU into this many devices and train data-parallel "
        "over them (keras.distribution.DataParallel)",
    )
    parser.add_argument("--pipeline", action="store_true", help="also time the tf.data pipeline")
    parser.add_argument("--inference", action="store_true", help="also time inference")
    parser.add_argument("--json", help="write the results here")
    args = parser.parse_args(argv)

    if args.worker:
        args.width = float(args.width)
        args.batch_size = int(args.batch_sizes)
        args.precision = args.precisions
        print("RESULT " + json.dumps(WORKERS[args.worker](args)))
        return 0

    archs = comma_list(args.arch)
    widths = comma_list(args.width, float)
    if len(widths) == 1:
        widths *= len(archs)
    if len(widths) != len(archs):
        parser.error(f"--width takes one value, or one per --arch ({len(archs)})")
    rows = []
    for arch, width in zip(archs, widths):
        rows += _measure(argparse.Namespace(**{**vars(args), "arch": arch, "width": width}))
    if len(archs) > 1:
        _print_costs(rows, archs)
    if args.json:
        with open(args.json, "w") as file:
            json.dump({"machine": _machine(), "args": vars(args), "results": rows}, file, indent=2)
    return 0


def _measure(args):
    """Every backend, batch size and precision for one architecture; prints and returns the rows."""
    rows = []
    backends = comma_list(args.backends)
    jit_settings = comma_list(args.jit_compile)
    print(f"\n{args.arch} (width {args.width:g}, latent dim {args.latent_dim})", flush=True)
    for precision in comma_list(args.precisions):
        for batch_size in comma_list(args.batch_sizes, int):
            for backend, jit_compile in itertools.product(backends, jit_settings):
                if backend == "jax" and (
                    jit_compile == "off" or (jit_compile == "on" and "auto" in jit_settings)
                ):
                    continue  # an un-jitted JAX step is no real option; auto is on
                if backend == NATIVE and args.arch != "resnet18":
                    continue  # the native twin is the ResNet-18 VAE
                kind = "native" if backend == NATIVE else "train"
                result = _run_worker(kind, backend, args, batch_size, precision, jit_compile)
                setting = {"arch": args.arch, "width": args.width, "backend": backend}
                setting.update(batch_size=batch_size, precision=precision)
                setting["jit_compile"] = jit_compile
                rows.append({**setting, "kind": "train", **result})
                _print_row(rows[-1])
                if args.inference and backend in KERAS_BACKENDS and jit_compile == jit_settings[0]:
                    result = _run_worker("inference", backend, args, batch_size, precision)
                    rows.append({**setting, "kind": "inference", **result})
                    _print_row(rows[-1])
            if args.pipeline:
                result = _run_worker("pipeline", "tensorflow", args, batch_size, precision)
                setting = {"arch": args.arch, "width": args.width, "backend": "tf.data"}
                setting.update(batch_size=batch_size, precision="-")
                rows.append({**setting, "kind": "pipeline", **result})
                _print_row(rows[-1])
    _print_ratios(rows)
    return rows


def _label(row):
    """The backend and how its step ran, marked * when that is the default (auto)."""
    if "step" not in row:
        return row["backend"]
    default = "*" if row.get("jit_compile") == "auto" else ""
    return f"{row['backend']} {row['step']}{default}"


def _print_row(row):
    head = f"{row['kind']:9s} {_label(row):27s} batch {row['batch_size']:4d}"
    head += f" {row['precision']:14s}"
    if "error" in row:
        print(f"{head} ERROR {row['error']}", flush=True)
    elif row["kind"] == "inference":
        endpoints = ("encode", "decode", "reconstruct")
        cells = ", ".join(f"{k} {v:,.0f}" for k, v in row.items() if k.endswith(endpoints))
        print(f"{head} images/s: {cells}", flush=True)
    else:
        extra = ""
        if "trainable_parameters" in row:
            extra = f"  params {row['trainable_parameters']:,}  loss {row['final_loss']:.1f}"
            extra += f"  recompiles {row.get('recompiles_after_warmup')}"
        print(
            f"{head} {row['images_per_second']:9,.1f} img/s  {row['ms_per_step']:8.1f} ms/step  "
            f"peak {row.get('peak_memory_mb', float('nan')):7,.0f} MB  "
            f"warm-up {row['warmup_seconds']:.1f} s" + extra,
            flush=True,
        )


def _print_costs(rows, archs):
    """Each architecture's cost per training image, and per image and million parameters,
    relative to the first architecture's, per backend, batch size and precision."""
    trains = [r for r in rows if r["kind"] == "train" and "error" not in r]
    print(f"\nCost per training image relative to {archs[0]}:")
    for row in trains:
        base = next(
            (
                r
                for r in trains
                if r["arch"] == archs[0]
                and all(
                    r.get(k) == row.get(k) for k in ("backend", "batch_size", "precision", "step")
                )
            ),
            None,
        )
        if base is None:
            continue
        cost = base["images_per_second"] / row["images_per_second"]
        params = row["trainable_parameters"] / base["trainable_parameters"]
        print(
            f"  {row['arch']:9s} width {row['width']:<5g} {_label(row):27s} "
            f"batch {row['batch_size']:4d} {row['precision']:14s} "
            f"{row['trainable_parameters']:>12,} params  {1e3 / row['images_per_second']:7.2f} "
            f"ms/image  {cost:.2f}x the cost  {cost / params:.2f}x per parameter"
        )


def _print_ratios(rows):
    """Every backend's speed relative to native PyTorch and to the fastest backend."""
    trains = [r for r in rows if r["kind"] == "train" and "error" not in r]
    groups = {}
    for row in trains:
        groups.setdefault((row["batch_size"], row["precision"]), []).append(row)
    for (batch_size, precision), group in groups.items():
        # The baseline is eager native PyTorch (the way it is usually written).
        natives = [r for r in group if r["backend"] == NATIVE]
        native = next((r for r in natives if r.get("step") == "eager"), None)
        best = max(group, key=lambda r: r["images_per_second"])
        counts = {r["trainable_parameters"] for r in group}
        # The comparison only means something for the same network.
        assert len(counts) == 1, f"parameter counts differ between backends: {counts}"
        print(f"\nbatch {batch_size}, {precision} ({counts.pop():,} parameters everywhere):")
        for row in sorted(group, key=lambda r: -r["images_per_second"]):
            versus_native = (
                f"{row['images_per_second'] / native['images_per_second']:.2f}x native"
                if native
                else ""
            )
            slower = best["images_per_second"] / row["images_per_second"]
            print(
                f"  {_label(row):27s} {row['images_per_second']:9,.1f} img/s  "
                f"{versus_native:>12s}  {slower:.2f}x slower than the best  "
                f"30 x 50,000 images: {_duration(STUDY_IMAGES / row['images_per_second'])}"
            )


# 30 epochs of CIFAR-10's 50,000 training images: the issue's yardstick for a GPU.
STUDY_IMAGES = 30 * 50_000


def _duration(seconds):
    """Seconds as `42 s`, `12.5 min` or `3.2 h`."""
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


if __name__ == "__main__":
    sys.exit(main())
