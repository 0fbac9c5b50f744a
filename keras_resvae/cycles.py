"""Tensors freed when they are done with, on the PyTorch backend too.

On the torch backend, `keras.tree` is built on `torch.utils._pytree`, whose
`tree_flatten` defines a recursive inner function (a reference cycle through
its own closure), and Keras hands it an `is_leaf` lambda that closes over the
structure being flattened. Every structure Keras flattens, the inputs and
outputs of every layer call among them, is then held by a reference cycle:
its tensors are freed by Python's cyclic garbage collector, not when their
last reference goes. Between full collections they pile up, and the process
keeps the memory they took: evaluating the full-width ResNet-18 VAE with
K = 16 importance samples held 88 MB of such tensors after six batches at
width 0.125, and its peak memory climbed batch after batch at width 1 (see
benchmarks/RESULTS.md). TensorFlow and JAX use `optree`, which makes no cycles.

`collecting_cycles` frees that garbage at points the caller chooses (after
each evaluation batch), cheaply: what was alive on entry is frozen out of the
collector's scans (`gc.freeze`), so each collection looks only at the objects
made since, milliseconds instead of the 0.3 s a full scan of a process that
imported TensorFlow takes.
"""

import contextlib
import gc

import keras


@contextlib.contextmanager
def collecting_cycles():
    """Yields a function that frees the cyclic garbage made since entry (torch backend).

    Elsewhere the function does nothing. On exit the frozen objects are
    handed back to the collector. A process that froze objects itself (a
    server before it forks) keeps them frozen: then nothing is frozen or
    unfrozen here, and each collection scans what was made since its freeze.

    Example:
    >>> with collecting_cycles() as collect:
    ...     for batch in batches:
    ...         total += score(vae, batch)
    ...         collect()
    """
    if keras.backend.backend() != "torch":
        yield lambda: None
        return
    ours = gc.get_freeze_count() == 0
    if ours:
        gc.collect()
        gc.freeze()
    try:
        yield gc.collect
    finally:
        if ours:
            gc.unfreeze()
