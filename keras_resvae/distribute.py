"""Data-parallel training over every local accelerator, on Keras's own engines.

JAX: `keras.distribution.DataParallel` (the batch is sharded over devices and
the weights replicated). TensorFlow: `tf.distribute.MirroredStrategy`. Both
split the global batch (`batch_size`) evenly across devices. Without GPUs the
devices are the CPUs JAX or TensorFlow expose, which is how the tests run two
virtual devices on one machine.

PyTorch: Keras has no built-in data parallelism for the torch backend, so
`--distribute` refuses it; wrap your own loop in `torch.nn.parallel.
DistributedDataParallel` (started with `torchrun`) instead.
"""

import contextlib

import keras


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
    raise ValueError(
        "Data-parallel training (--distribute) needs the JAX or TensorFlow backend. Keras has "
        "no built-in data parallelism on PyTorch: use torchrun with DistributedDataParallel "
        "around your own loop, or run with --backend jax."
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

    Example:
    >>> with data_parallel() as replicas:
    ...     vae = build_vae("resnet18", (32, 32, 3))
    ...     vae.compile(optimizer="adam")
    ...     vae.fit(dataset, epochs=10)  # each batch split over `replicas` devices
    """
    if not enabled:
        yield 1
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
