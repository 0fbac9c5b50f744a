"""Training precision: float32, or mixed precision with float32 variables.

Under `mixed_bfloat16` and `mixed_float16` the layers compute in 16 bits and
keep float32 weights. The latent head, the decoder's output logits and the
loss stay in float32 (see `LatentHead` and the decoder's `logits` layer), and
with `mixed_float16` Keras's `compile` wraps the optimizer in a
`LossScaleOptimizer`, whose `scale_loss` our training steps call.
"""

import contextlib

import keras

PRECISIONS = ("float32", "mixed_bfloat16", "mixed_float16")


def check_precision(precision):
    """Raises a ValueError unless `precision` is one of `PRECISIONS`."""
    if precision not in PRECISIONS:
        raise ValueError(
            f"`precision` must be one of {list(PRECISIONS)}. Received: precision={precision!r}"
        )


@contextlib.contextmanager
def precision_scope(precision):
    """Builds layers under `precision` and restores the global dtype policy afterwards.

    Example:
    >>> with precision_scope("mixed_bfloat16"):
    ...     vae = build_vae("resnet18", (32, 32, 3))
    >>> vae.compile(optimizer="adam")  # a mixed_float16 model gets loss scaling here
    """
    check_precision(precision)
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(precision)
    try:
        yield
    finally:
        keras.config.set_dtype_policy(previous)
