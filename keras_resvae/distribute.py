"""Data-parallel training over every local accelerator, on Keras's own engines.

JAX: `keras.distribution.DataParallel` (the batch is sharded over devices and
the weights replicated). TensorFlow: `tf.distribute.MirroredStrategy`. Both
split the global batch (`batch_size`) evenly across devices. Without GPUs the
devices are the CPUs JAX or TensorFlow expose, which is how the tests run two
virtual devices on one machine.

PyTorch: Keras has no data-parallel engine for the torch backend, so it is
PyTorch's own, one process per device started by `torchrun`, with the
gradients averaged in the VAE's training step (see `torch_parallel`). Each
process then trains on its share of every global batch (`shard_batches`).

On a CPU, JAX sees one device unless `XLA_FLAGS` asks for more; the `resvae`
command gives it one per core (`startup.split_cpu_for_jax`). XLA:CPU runs
many of a residual network's convolutions on one thread, and one device per
core puts every core to work (benchmarks/RESULTS.md). JAX shards the one
global computation, so batch norm still sees the whole batch and the losses
match one device up to float rounding; but each device holds its own copy of
the weights and the optimizer's state, in the one memory a CPU has, so it is
not the default.
"""

import contextlib

import keras

from keras_resvae import torch_parallel
from keras_resvae.datasets.array_batches import ArrayBatches


def local_devices():
    """The devices `data_parallel` would use: every GPU, else every CPU device."""
    backend = keras.backend.backend()
    if backend == "jax":
        return keras.distribution.list_devices()
    if backend == "tensorflow":
        from keras_resvae.startup import import_tensorflow

        tf = import_tensorflow()
        devices = tf.config.list_logical_devices("GPU") or tf.config.list_logical_devices("CPU")
        return [device.name for device in devices]
    if torch_parallel.active():
        return [f"process {rank}" for rank in range(torch_parallel.world_size())]
    raise ValueError(
        "On the PyTorch backend the devices are processes started by torchrun: "
        f"{torch_parallel.torchrun_command()}"
    )


def check_batch_size(batch_size, num_devices):
    """The global batch must split evenly over the devices."""
    if batch_size % num_devices:
        raise ValueError(
            f"--batch-size {batch_size} does not split evenly over {num_devices} devices; "
            f"use a multiple of {num_devices}."
        )


@contextlib.contextmanager
def data_parallel(enabled=True, batch_size=None):
    """Builds and trains models inside it data-parallel over `local_devices()`.

    Yields the number of devices (1 when `enabled` is False, and nothing changes).
    On PyTorch the devices are the processes `torchrun` started; each must
    then fit on its own share of the batches (`shard_batches`).

    Example:
    >>> with data_parallel() as replicas:
    ...     vae = build_vae("resnet18", (32, 32, 3))
    ...     vae.compile(optimizer="adam")
    ...     vae.fit(dataset, epochs=10)  # each batch split over `replicas` devices
    """
    if not enabled:
        yield 1
        return
    if keras.backend.backend() == "torch":
        replicas = torch_parallel.start()
        if batch_size is not None:
            check_batch_size(int(batch_size), replicas)
        yield replicas
        return
    devices = local_devices()
    if batch_size is not None:
        check_batch_size(int(batch_size), len(devices))
    if keras.backend.backend() == "jax":
        previous = keras.distribution.distribution()
        keras.distribution.set_distribution(keras.distribution.DataParallel(devices=devices))
        try:
            yield len(devices)
        finally:
            keras.distribution.set_distribution(previous)
    else:
        from keras_resvae.startup import import_tensorflow

        strategy = import_tensorflow().distribute.MirroredStrategy(devices)
        with strategy.scope():
            yield len(devices)


def shard_batches(dataset):
    """This process's share of each batch of `dataset` when PyTorch trains data-parallel.

    The identity everywhere else: JAX and TensorFlow split each batch over
    their devices themselves.

    Example:
    >>> with data_parallel(batch_size=128):
    ...     vae.fit(shard_batches(train), epochs=10)  # 64 images per process with 2
    """
    if not torch_parallel.active():
        return dataset
    rank, world_size = torch_parallel.rank(), torch_parallel.world_size()
    if isinstance(dataset, ArrayBatches):
        return dataset.sharded(rank, world_size)
    return torch_parallel.shard_batches(dataset, rank, world_size)
