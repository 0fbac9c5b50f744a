"""Memory estimates, so that evaluation can size its work and refuse what cannot fit."""

import math

import keras
import numpy as np

# Non-functional networks have no layer outputs to add up: assume this many
# image-sized activations per image.
UNKNOWN_NETWORK_IMAGES = 32

CGROUP = "/sys/fs/cgroup"


def activation_bytes_per_image(network):
    """The bytes of every layer output of `network` for one input.

    An upper bound on the working set of a forward pass without gradients.

    Example:
    >>> activation_bytes_per_image(vae.decoder)  # 9.3 MB: ResNet-18, width 1, 32x32x3
    """
    total = 0
    for layer in getattr(network, "layers", []):
        if isinstance(layer, keras.Model) and layer.layers:
            # A network inside the network (a hierarchical VAE's cells, a backbone).
            total += activation_bytes_per_image(layer)
            continue
        try:
            outputs = keras.tree.flatten(layer.output)
        except (AttributeError, ValueError):
            continue  # not called in the graph, or called more than once
        for output in outputs:
            shape = getattr(output, "shape", None)
            if shape is None or any(size is None for size in shape[1:]):
                continue
            total += math.prod(shape[1:]) * np.dtype(output.dtype).itemsize
    if total == 0:
        outputs = keras.tree.flatten(getattr(network, "outputs", None) or [])
        sizes = [math.prod(output.shape[1:]) for output in outputs if None not in output.shape[1:]]
        total = UNKNOWN_NETWORK_IMAGES * 4 * max(sizes or [1])
    return int(total)


def available_bytes():
    """Memory this process can still get on Linux, in bytes, or None where unknown.

    The kernel's MemAvailable (free memory plus the page cache it can drop),
    capped by the container's cgroup limit when there is one.

    Example:
    >>> available_bytes() / 2**30  # GB
    """
    try:
        with open("/proc/meminfo") as file:
            fields = dict(line.split(":", 1) for line in file)
        available = int(fields["MemAvailable"].split()[0]) * 1024
    except (OSError, KeyError, ValueError):
        return None
    try:
        with (
            open("/sys/fs/cgroup/memory.max") as limit,
            open("/sys/fs/cgroup/memory.current") as used,
        ):
            available = min(available, int(limit.read()) - int(used.read()))
    except (OSError, ValueError):
        pass  # no cgroup v2 limit ("max", or no file)
    return available


def uses_accelerator():
    """Whether Keras's backend computes on a GPU (or another accelerator) rather than the CPU."""
    if keras.backend.backend() == "torch":
        import torch

        return torch.cuda.is_available() or torch.backends.mps.is_available()
    return any(not device.lower().startswith("cpu") for device in keras.distribution.list_devices())


def check_batch_fits(vae, batch_size, option="--batch-size"):
    """Refuses a batch whose forward pass may need more memory than is available.

    The estimate is every layer output of the encoder and decoder for the
    batch: an upper bound on inference, which frees most of them as it goes.
    Checked on CPU only; on an accelerator, the backend's out-of-memory error
    names the problem.

    Raises:
        ValueError: naming `option` and a batch size that fits.

    Example:
    >>> check_batch_fits(vae, 64)
    """
    if uses_accelerator():
        return  # the activations live in device memory, which the backend reports itself
    per_image = activation_bytes_per_image(vae.encoder) + activation_bytes_per_image(vae.decoder)
    available = available_bytes()
    needed = per_image * int(batch_size)
    if available is None or needed <= available:
        return
    fits = max(1, available // (2 * per_image))
    raise ValueError(
        f"{option} {batch_size} may need up to {needed / 2**30:.1f} GB for one forward pass, "
        f"more than the {available / 2**30:.1f} GB of memory available: lower {option} "
        f"(for example {option} {fits})."
    )


# How each backend reports an allocation that failed.
OUT_OF_MEMORY_ERRORS = ("MemoryError", "OutOfMemoryError", "ResourceExhaustedError")


def is_out_of_memory(error):
    """Whether `error` is a failed allocation: Python's, PyTorch's, TensorFlow's or XLA's.

    Example:
    >>> is_out_of_memory(MemoryError())
    True
    """
    names = {cls.__name__ for cls in type(error).__mro__}
    if names & set(OUT_OF_MEMORY_ERRORS):
        return True
    return "RESOURCE_EXHAUSTED" in str(error) or "out of memory" in str(error).lower()


def first_line(error):
    """The first line of an error's message, or its type's name when it has none."""
    lines = str(error).strip().splitlines()
    return lines[0][:200] if lines else type(error).__name__
