"""`export_vae`: one call exports a VAE trained on any backend.

The graphs are traced on the TensorFlow backend. A model on JAX or PyTorch is
saved as `.keras` and exported by a TensorFlow-backend subprocess, because
Keras's own SavedModel export needs torch_xla on PyTorch, and JAX graphs
reach TensorFlow as XlaCallModule ops that no ONNX converter reads.
"""

import json
import os
import shutil
import subprocess
import sys
import tempfile

import keras

from keras_resvae.export.endpoints import METADATA_FILE, export_metadata

EXPORT_FORMATS = ("saved_model", "onnx")


def check_export_format(export_format):
    """Raises a ValueError that lists the formats unless `export_format` is one."""
    if export_format not in EXPORT_FORMATS:
        raise ValueError(
            f"Unknown export format {export_format!r}. Choose one of: {', '.join(EXPORT_FORMATS)}."
        )


def export_vae(model, out, export_format="saved_model"):
    """Exports a VAE for inference without keras_resvae.

    Args:
        model: a `keras_resvae.VAE`, a `.keras` file or a run directory.
        out: str. The folder to write. It is written whole or not at all, and it
            replaces an earlier export there.
        export_format: "saved_model" (signatures `encode`, `decode`,
            `reconstruct`, `sample`, `serving_default`) or "onnx" (one
            `<endpoint>.onnx` file per endpoint).

    Returns:
        The export's metadata (also written to `<out>/resvae_export.json`):
        image shape, latent size, pixel range and every endpoint's inputs and
        outputs.

    Example:
    >>> export_vae("runs/quickstart", "exports/quickstart")
    >>> served = tf.saved_model.load("exports/quickstart")
    >>> served.signatures["reconstruct"](images=x)["reconstructions"]
    """
    from keras_resvae.runs import load_model, resolve_model_path

    check_export_format(export_format)
    out = os.path.abspath(out)
    _check_destination(out)
    if isinstance(model, (str, os.PathLike)):
        source = resolve_model_path(os.fspath(model))
        trained_backend = _run_backend(os.fspath(model))
        if keras.backend.backend() != "tensorflow":
            return _export_in_subprocess(source, out, export_format, source, trained_backend)
        vae = load_model(source)
    else:
        vae, source, trained_backend = model, None, keras.backend.backend()
        if trained_backend != "tensorflow":
            with tempfile.TemporaryDirectory() as folder:
                path = os.path.join(folder, "model.keras")
                vae.save(path)
                return _export_in_subprocess(path, out, export_format, None, trained_backend)
    return write_export(vae, out, export_format, source, trained_backend)


def write_export(vae, out, export_format, source=None, trained_backend=None):
    """Writes the export of a VAE on the TensorFlow backend (`export_vae` does the rest)."""
    from keras_resvae.export import tensorflow_export
    from keras_resvae.vae import VAE

    if not isinstance(vae, VAE):
        raise ValueError(f"Only keras_resvae VAE models export; received {type(vae).__name__}.")
    metadata = export_metadata(vae, export_format, source, trained_backend)
    staging = tempfile.mkdtemp(prefix=".tmp-export-", dir=os.path.dirname(out))
    try:
        # mkdtemp's folder is private (0700); the export is an ordinary folder.
        os.chmod(staging, 0o777 & ~_umask())
        if export_format == "saved_model":
            tensorflow_export.write_saved_model(vae, staging)
        else:
            tensorflow_export.write_onnx(vae, staging)
        with open(os.path.join(staging, METADATA_FILE), "w") as file:
            json.dump(metadata, file, indent=2)
        _replace_folder(staging, out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return metadata


def _umask():
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _check_destination(out):
    if os.path.isfile(out):
        raise ValueError(f"{out} is a file; give a folder to export to.")
    if os.path.isdir(out) and os.listdir(out):
        if not os.path.exists(os.path.join(out, METADATA_FILE)):
            raise ValueError(
                f"{out} is not empty and holds no earlier export; choose a new folder."
            )
    os.makedirs(os.path.dirname(out), exist_ok=True)


def _replace_folder(new, out):
    # A crash leaves either the old export or the new one, never a mix.
    old = None
    if os.path.exists(out):
        old = tempfile.mkdtemp(prefix=".tmp-old-export-", dir=os.path.dirname(out))
        os.rename(out, os.path.join(old, "export"))
    os.rename(new, out)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def _run_backend(path):
    config_path = os.path.join(path, "config.json")
    if os.path.isdir(path) and os.path.exists(config_path):
        with open(config_path) as file:
            return json.load(file).get("backend")
    return None


def _export_in_subprocess(path, out, export_format, source, trained_backend):
    env = {**os.environ, "KERAS_BACKEND": "tensorflow", "TF_CPP_MIN_LOG_LEVEL": "3"}
    command = [sys.executable, "-m", "keras_resvae.export", path, out, "--format", export_format]
    command += ["--source", source or "", "--trained-backend", trained_backend or ""]
    result = subprocess.run(command, env=env, capture_output=True, text=True)
    if result.returncode != 0:
        lines = [line for line in result.stderr.strip().splitlines() if line.strip()]
        raise ValueError(lines[-1].removeprefix("Error: ") if lines else "export failed")
    with open(os.path.join(out, METADATA_FILE)) as file:
        return json.load(file)
