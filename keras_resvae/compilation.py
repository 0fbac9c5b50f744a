"""How the training step is compiled: Keras's `jit_compile`, chosen per backend.

`"auto"` (the default) lets Keras choose, which measured fastest on every
backend we could time (`benchmarks/RESULTS.md`, 2 CPU cores):

- JAX: always XLA (`jax.jit`); there is no uncompiled alternative worth having.
- TensorFlow: a `tf.function` graph without XLA on a CPU-only machine (with
  XLA this ResNet-18 VAE trained at 201.7 images/s against 258.8 without it,
  and 131.3 against 354.5 in a second run), and with XLA when a GPU is visible.
- PyTorch: eager. `torch.compile` (`jit_compile=True`) trains correctly but took
  102 s to compile and then ran at 194.9 against 240.2 images/s on CPU; it is an
  option for GPUs, where fewer kernel launches can pay for the compilation.
"""

JIT_COMPILE_CHOICES = {"auto": "auto", "on": True, "off": False}


def check_jit_compile(jit_compile):
    """Returns `jit_compile` as Keras takes it ("auto", True, False), or raises a ValueError.

    Accepts the CLI's spellings "on" and "off" too.

    Example:
    >>> vae.compile(optimizer="adam", jit_compile=check_jit_compile("off"))
    """
    if isinstance(jit_compile, bool):
        return jit_compile
    if jit_compile in JIT_COMPILE_CHOICES:
        return JIT_COMPILE_CHOICES[jit_compile]
    raise ValueError(
        f"`jit_compile` must be one of {list(JIT_COMPILE_CHOICES)} (or True/False). "
        f"Received: jit_compile={jit_compile!r}"
    )
