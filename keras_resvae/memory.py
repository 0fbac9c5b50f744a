"""Memory estimates, so that evaluation can size its work and refuse what cannot fit."""

import math
import os

import keras
import numpy as np

# Non-functional networks have no layer outputs to add up: assume this many
# image-sized activations per image.
UNKNOWN_NETWORK_IMAGES = 32


def activation_bytes_per_image(network):
    """Bytes of every layer output of `network` for one input: an upper bound on a
    forward pass's working set without gradients.

    Example:
    >>> activation_bytes_per_image(vae.decoder)  # 1.2 MB for a small ResNet-18
    """
    total = 0
    for layer in getattr(network, "layers", []):
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
    """Memory the system can still give this process (Linux), or None where unknown."""
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def check_batch_fits(vae, batch_size, option="--batch-size"):
    """Refuses a batch whose forward pass would need more memory than is available.

    Raises:
        ValueError: naming `option` and a batch size that fits.

    Example:
    >>> check_batch_fits(vae, 64)
    """
    per_image = activation_bytes_per_image(vae.encoder) + activation_bytes_per_image(vae.decoder)
    available = available_bytes()
    needed = per_image * int(batch_size)
    if available is None or needed <= available:
        return
    fits = max(1, available // (2 * per_image))
    raise ValueError(
        f"{option} {batch_size} needs about {needed / 2**30:.1f} GB for one forward pass, "
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
