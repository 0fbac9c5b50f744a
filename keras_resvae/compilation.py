"""How the training step is compiled (Keras's `jit_compile`, per backend), and how that is saved.

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


def portable_compile_config(config, auto_jit_compile=None):
    """A `.keras` compile config that compiles and trains on every backend.

    Keras saves what `compile` received as this backend has it, and two parts
    of that do not travel:

    - On PyTorch, `keras.optimizers.Adam` is a torch-specific subclass, saved
      under its module `keras.src.backend.torch.optimizers.torch_adam`. Loaded
      under TensorFlow or JAX, that module gives back the torch class, whose
      update fails there (`expected Tensor ... but got ResourceVariable`). Every
      optimizer saved under a `keras.src.backend.*` module is saved as its
      public `keras.optimizers` class instead, which each backend resolves to
      its own; the optimizer's variables are the same on every backend, so its
      state loads as it was.
    - `jit_compile` is saved resolved for this backend (True on JAX), which
      would switch on torch.compile on PyTorch. When it is just this backend's
      default (`auto_jit_compile`), "auto" is saved.

    Files saved before this existed are fixed the same way when they load.

    Args:
        config: dict from `Model.get_compile_config()` (or a `.keras` file).
        auto_jit_compile: what "auto" resolves to on this backend, or None.

    Returns:
        A new dict; `config` is left as it was.

    Example:
    >>> portable_compile_config(vae.get_compile_config())["optimizer"]["module"]
    'keras.optimizers'
    """
    import keras

    def portable(value):
        if isinstance(value, dict):
            value = {key: portable(item) for key, item in value.items()}
            module, name = value.get("module"), value.get("class_name")
            if (
                isinstance(module, str)
                and module.startswith("keras.src.backend.")
                and isinstance(getattr(keras.optimizers, str(name), None), type)
            ):
                value["module"] = "keras.optimizers"
                value["registered_name"] = None
            return value
        if isinstance(value, list):
            return [portable(item) for item in value]
        return value

    config = portable(config or {})
    if config and auto_jit_compile is not None and config.get("jit_compile") == auto_jit_compile:
        config["jit_compile"] = "auto"
    return config
