"""Before Keras is imported: the `resvae` command's backend, and a quiet TensorFlow.

Keras reads `KERAS_BACKEND` once, when it is imported, and `import keras_resvae`
imports Keras. So the `resvae` command's `--backend` option is read here, from
the command line, before that import; otherwise the command would start Keras
on the default backend first.

TensorFlow's native code writes start-up lines to stderr that say nothing is
wrong ("Could not find cuda drivers", "failed call to cuInit: ... UNKNOWN ERROR
(303)" on every machine without a GPU, oneDNN and CPU-instruction notices).
Since TensorFlow 2.19 `TF_CPP_MIN_LOG_LEVEL` no longer hides them, because they
come before absl's logging is initialised. `import_tensorflow` imports
TensorFlow (and, for the `resvae` command, starts its devices) with the
process's stderr caught, drops those known lines and passes every other line on.
"""

import contextlib
import json
import os
import re
import sys
import tempfile

BACKENDS = ("tensorflow", "jax", "torch")

# Start-up lines of TensorFlow that carry no information for a user; matched
# one line at a time, so anything else TensorFlow says still gets through.
START_UP_NOISE = re.compile(
    "|".join(
        (
            r"All log messages before absl::InitializeLog\(\) is called are written to STDERR",
            r"Could not find cuda drivers on your machine",
            r"failed call to cuInit",
            r"oneDNN custom operations are on",
            r"cpu_feature_guard\.cc",
            r"^To enable the following instructions: .* rebuild TensorFlow",
            r"Unable to register cu(DNN|FFT|BLAS) factory",
            r"computation placer already registered",
            r"TF-TRT Warning: Could not find TensorRT",
        )
    )
)

_tensorflow_started = False

# XLA's flag for the number of CPU devices JAX sees (one by default).
CPU_DEVICE_COUNT_FLAG = "--xla_force_host_platform_device_count"


@contextlib.contextmanager
def native_stderr_filtered(noise=START_UP_NOISE):
    """Catches what is written to file descriptor 2 and passes on all but `noise` lines.

    Native libraries write to the descriptor, not to `sys.stderr`, so it is
    redirected to a temporary file for the duration and read back afterwards.

    Example:
    >>> with native_stderr_filtered():
    ...     import tensorflow
    """
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError):  # no usable descriptor 2: nothing to filter
        yield
        return
    with tempfile.TemporaryFile() as caught:
        os.dup2(caught.fileno(), 2)
        try:
            yield
        finally:
            with contextlib.suppress(OSError, ValueError):
                sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            caught.seek(0)
            text = caught.read().decode("utf-8", errors="replace")
            kept = [line for line in text.splitlines(True) if not noise.search(line)]
            if kept:
                sys.stderr.write("".join(kept))
                sys.stderr.flush()


def import_tensorflow(start_devices=False):
    """Imports TensorFlow without its start-up noise.

    Unless Keras runs on TensorFlow, TensorFlow is kept off the GPU: it only
    feeds tf.data to the JAX or PyTorch backend there, and would otherwise
    reserve the GPU's memory. That is only possible before TensorFlow has
    started its devices; later it is skipped.

    Args:
        start_devices: bool. Also start TensorFlow's devices now, which is when
            CUDA reports its absence ("failed call to cuInit"). Afterwards a
            program can no longer configure them (memory growth, visible or
            virtual devices), so only a process that owns TensorFlow, such as
            the `resvae` command, asks for it.

    Returns:
        The `tensorflow` module.

    Example:
    >>> tf = import_tensorflow()
    """
    global _tensorflow_started
    # The command owns its process: its devices start with the import, inside
    # the filter, rather than at the first tf.data op, where CUDA's lines get out.
    start_devices = start_devices or (not _tensorflow_started and is_resvae_command())
    if _tensorflow_started and not start_devices:
        import tensorflow as tf

        return tf
    with native_stderr_filtered():
        import tensorflow as tf

        if not _tensorflow_started and keras_backend() != "tensorflow":
            with contextlib.suppress(RuntimeError):  # devices already started
                tf.config.set_visible_devices([], "GPU")
        if start_devices:
            tf.config.list_logical_devices()
        if not _tensorflow_started:
            _seed_like_keras(tf)
    _tensorflow_started = True
    return tf


def _seed_like_keras(tf):
    """Seeds TensorFlow with Keras's global seed, if one was set before it was imported.

    `tensorflow_free.set_random_seed` leaves TensorFlow out on JAX and PyTorch; a
    `tf.data` pipeline made later must still shuffle as the seed says.
    """
    if "keras" not in sys.modules:
        return
    try:
        from keras.src.utils.rng_utils import get_random_seed
    except ImportError:
        return
    seed = get_random_seed()
    if seed is not None:
        tf.random.set_seed(seed)


def keras_backend():
    """Keras's backend: the running one once Keras is imported, else `configured_backend()`."""
    keras = sys.modules.get("keras")
    backend = getattr(keras, "backend", None)
    if backend is not None and hasattr(backend, "backend"):
        return backend.backend()
    return configured_backend()


def configured_backend(environ=None):
    """The backend Keras will start with: `KERAS_BACKEND`, else `keras.json`, else tensorflow."""
    environ = os.environ if environ is None else environ
    if environ.get("KERAS_BACKEND"):
        return environ["KERAS_BACKEND"]
    keras_home = environ.get("KERAS_HOME") or os.path.join(os.path.expanduser("~"), ".keras")
    with contextlib.suppress(OSError, ValueError, AttributeError):
        with open(os.path.join(keras_home, "keras.json")) as file:
            return json.load(file).get("backend", "tensorflow")
    return "tensorflow"


def is_resvae_command():
    """True when this process is the `resvae` command (or `python -m keras_resvae.cli`)."""
    if sys.argv and os.path.basename(sys.argv[0]) in ("resvae", "resvae.exe"):
        return True
    original = getattr(sys, "orig_argv", [])
    return any(
        flag == "-m" and module == "keras_resvae.cli"
        for flag, module in zip(original, original[1:])
    )


def command_line_backend(arguments):
    """The value of a `--backend` option in `arguments`, if it names a backend."""
    for index, argument in enumerate(arguments):
        if argument == "--backend" and index + 1 < len(arguments):
            value = arguments[index + 1]
        elif argument.startswith("--backend="):
            value = argument.split("=", 1)[1]
        else:
            continue
        return value if value in BACKENDS else None
    return None


def usable_cores():
    """The CPU cores this process may run on (its affinity mask, where the OS has one)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def split_cpu_for_jax(environ=None):
    """Gives JAX one CPU device per usable core, unless `XLA_FLAGS` already sets a count.

    JAX reads `XLA_FLAGS` when it starts its backend, so this must run before.
    Without `--distribute` JAX computes on the first device as before (on a
    GPU when there is one); `resvae fit --distribute` on a CPU trains
    data-parallel over them, with no `XLA_FLAGS` to set by hand.

    Returns:
        The number of devices set, or None when nothing was changed (one core,
        or a count already in `XLA_FLAGS`).

    Example:
    >>> split_cpu_for_jax({"XLA_FLAGS": ""})  # on 2 cores
    2
    """
    environ = os.environ if environ is None else environ
    flags = environ.get("XLA_FLAGS", "")
    cores = usable_cores()
    if CPU_DEVICE_COUNT_FLAG in flags or cores < 2:
        return None
    environ["XLA_FLAGS"] = f"{flags} {CPU_DEVICE_COUNT_FLAG}={cores}".strip()
    return cores


def prepare_keras_import():
    """Runs before `import keras` in `keras_resvae/__init__.py`.

    For the `resvae` command: sets `KERAS_BACKEND` from `--backend`, hides
    TensorFlow's INFO and WARNING logs and, on JAX, splits the CPU into one
    device per core (`split_cpu_for_jax`). When Keras will start on TensorFlow,
    imports it quietly first, so Keras finds it imported; the command also
    starts its devices then, while a program's own script leaves them for it
    to configure. On JAX and PyTorch nothing imports TensorFlow until a
    `tf.data` pipeline needs it (`import_tensorflow`, quiet as well): runs on
    in-memory data never do. Once Keras is imported, nothing here can change it.
    """
    if "keras" in sys.modules:
        return
    command = is_resvae_command()
    if command:
        backend = command_line_backend(sys.argv[1:])
        if backend:
            os.environ["KERAS_BACKEND"] = backend
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        if configured_backend() == "jax":
            split_cpu_for_jax()
    if configured_backend() == "tensorflow":
        import_tensorflow(start_devices=command)
