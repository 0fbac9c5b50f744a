"""The examples run as a user would run them."""

import os
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


@pytest.mark.slow
def test_train_with_fit_example(tmp_path):
    env = {**os.environ, "KERAS_BACKEND": keras.backend.backend(), "TF_CPP_MIN_LOG_LEVEL": "3"}
    result = subprocess.run(
        [
            sys.executable,
            str(EXAMPLES / "train_with_fit.py"),
            "--epochs",
            "1",
            "--latent-dim",
            "4",
            "--out",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert (
        "1) fit on NumPy arrays" in result.stdout and "2) fit on a tf.data.Dataset" in result.stdout
    )
    model = keras.models.load_model(tmp_path / "vae.keras")
    assert model.image_shape == (28, 28, 1)
    png = (tmp_path / "samples.png").read_bytes()
    assert png.startswith(b"\x89PNG")
    assert np.isfinite(float(result.stdout.split("'loss': ")[1].split(",")[0]))
