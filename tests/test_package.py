"""Package-level promises: the public API, and no TensorFlow import in the core."""

import os
import subprocess
import sys

import keras
import pytest

import keras_resvae


def test_public_api_is_listed():
    for name in keras_resvae.__all__:
        assert hasattr(keras_resvae, name), name
    assert keras_resvae.__version__


def test_the_core_imports_without_tensorflow():
    backend = keras.backend.backend()
    if backend == "tensorflow":
        pytest.skip("TensorFlow is the backend here")
    code = (
        "import sys, keras_resvae, keras_resvae.datasets, keras_resvae.runs\n"
        "vae = keras_resvae.build_vae('basic', (16, 16, 1), 2)\n"
        "print('tensorflow' in sys.modules)"
    )
    env = {**os.environ, "KERAS_BACKEND": backend}
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip().splitlines()[-1] == "False"
