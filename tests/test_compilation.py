"""Compiled training steps: each `jit_compile` setting trains, and nothing recompiles."""

import keras
import numpy as np
import pytest
from conftest import blob_images, tiny_vae

from keras_resvae.compilation import check_jit_compile, portable_compile_config


class TraceCounter:
    """Counts calls of the model's Python `train_step`.

    TensorFlow and JAX run the Python body only while tracing a new graph, so
    the count is the number of compilations; eager PyTorch runs it every step.
    """

    def __init__(self, vae):
        self.count = 0
        step = vae.train_step

        def counted(*args):
            self.count += 1
            return step(*args)

        vae.train_step = counted


def per_epoch_traces(vae, images, epochs, batch_size):
    counter = TraceCounter(vae)
    counts = []
    callback = keras.callbacks.LambdaCallback(
        on_epoch_end=lambda epoch, logs: counts.append(counter.count)
    )
    history = vae.fit(
        images, epochs=epochs, batch_size=batch_size, verbose=0, shuffle=False, callbacks=[callback]
    )
    return np.diff([0, *counts]), history.history


@pytest.mark.skipif(keras.backend.backend() == "torch", reason="eager: no graph to retrace")
def test_no_recompilation_after_the_first_epoch():
    vae = tiny_vae()
    vae.compile(optimizer=keras.optimizers.Adam(1e-3))
    # 40 images in batches of 16: the last batch of each epoch is smaller, which
    # may compile once more in the first epoch but never again.
    traces, _ = per_epoch_traces(vae, blob_images(40), epochs=3, batch_size=16)
    assert traces[0] >= 1
    assert list(traces[1:]) == [0, 0]


@pytest.mark.parametrize("jit_compile", [True, False])
def test_each_jit_compile_setting_trains(jit_compile):
    if keras.backend.backend() == "jax" and not jit_compile:
        pytest.skip("JAX always compiles the step; Keras runs it un-jitted only when eager.")
    vae = tiny_vae()
    vae.compile(optimizer=keras.optimizers.Adam(3e-3), jit_compile=jit_compile)
    assert vae.jit_compile is jit_compile
    images = blob_images(32)
    vae.initialize_output_bias(images)
    history = vae.fit(images, epochs=3, batch_size=16, verbose=0, shuffle=False).history
    assert np.all(np.isfinite(history["loss"]))
    assert history["loss"][-1] < history["loss"][0]
    assert history["skipped_steps"] == [0.0, 0.0, 0.0]


def test_auto_resolves_to_the_measured_default():
    vae = tiny_vae()
    vae.compile(optimizer="adam")
    # On this CPU-only test machine: XLA on JAX, a plain graph on TensorFlow
    # (Keras turns XLA off without a GPU), eager on PyTorch.
    expected = {"jax": True, "tensorflow": False, "torch": False}[keras.backend.backend()]
    assert vae.jit_compile is expected


@pytest.mark.parametrize(
    "given, expected", [("auto", "auto"), ("on", True), ("off", False), (True, True)]
)
def test_check_jit_compile_accepts_keras_and_cli_spellings(given, expected):
    assert check_jit_compile(given) == expected


def test_unknown_jit_compile_is_a_clear_error():
    with pytest.raises(ValueError, match="must be one of"):
        check_jit_compile("xla")


def test_compile_configs_are_saved_portably():
    torch_adam = {
        "module": "keras.src.backend.torch.optimizers.torch_adam",
        "class_name": "Adam",
        "config": {"learning_rate": 0.001},
        "registered_name": "Adam",
    }
    config = {
        "optimizer": {
            "module": "keras.optimizers",
            "class_name": "LossScaleOptimizer",
            "config": {"inner_optimizer": torch_adam, "initial_scale": 32768.0},
            "registered_name": None,
        },
        "loss": None,
        "jit_compile": True,
    }
    portable = portable_compile_config(config, auto_jit_compile=True)
    inner = portable["optimizer"]["config"]["inner_optimizer"]
    assert inner["module"] == "keras.optimizers" and inner["registered_name"] is None
    assert inner["config"] == {"learning_rate": 0.001}
    assert portable["jit_compile"] == "auto"
    assert config["jit_compile"] is True and torch_adam["module"].startswith("keras.src")
    optimizer = keras.saving.deserialize_keras_object(portable["optimizer"])
    # This backend's own Adam, whatever backend saved it.
    assert type(optimizer.inner_optimizer) is type(keras.optimizers.Adam())
    assert portable_compile_config(config, auto_jit_compile=False)["jit_compile"] is True
