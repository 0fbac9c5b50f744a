"""Exported models (SavedModel, ONNX) answer like the Keras model, without keras_resvae."""

import json
import os
import stat
import subprocess
import sys
import textwrap
from pathlib import Path

import keras
import numpy as np
import pytest
from click.testing import CliRunner
from conftest import blob_images, tiny_vae, to_numpy
from keras_resvae.cli.main import main

import keras_resvae
from keras_resvae.export import ENDPOINTS, METADATA_FILE, endpoint_functions, export_vae
from keras_resvae.export.exporter import _check_destination, _replace_folder

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
BATCH_SIZES = (1, 7)
TOLERANCE = 1e-5  # float32, the same graph on another backend's kernels
# A consumer has TensorFlow but not our package: make importing it fail.
WITHOUT_KERAS_RESVAE = "import sys; sys.modules['keras_resvae'] = None\n"


def fresh_inputs(vae, seed=123):
    """Random inputs no test has used, per endpoint and batch size, in the model's range."""
    rng = np.random.default_rng(seed)
    low, high = (0.0, 1.0) if vae.output_activation == "sigmoid" else (-1.0, 1.0)
    inputs = {}
    for name, (_, kind, _) in ENDPOINTS.items():
        for batch in BATCH_SIZES:
            if kind == "image":
                value = rng.uniform(low, high, size=(batch, *vae.image_shape))
            else:
                value = rng.normal(size=(batch, vae.latent_dim))
            inputs[f"{name}/{batch}"] = value.astype("float32")
    return inputs


def keras_outputs(vae, inputs):
    functions = endpoint_functions(vae)
    outputs = {}
    for key, value in inputs.items():
        for output, tensor in functions[key.split("/")[0]](value).items():
            outputs[f"{key}/{output}"] = to_numpy(tensor)
    return outputs


def assert_close(exported, expected):
    assert sorted(exported) == sorted(expected)
    for key, value in expected.items():
        assert exported[key].shape == value.shape, key
        assert exported[key].dtype == np.float32, key
        assert np.abs(exported[key] - value).max() <= TOLERANCE, key


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    """A run directory holding a tiny ResNet-18 VAE (batch norm) trained one epoch."""
    keras.utils.set_random_seed(0)
    vae = tiny_vae("resnet18", use_batch_norm=True)
    vae.compile(optimizer=keras.optimizers.Adam(3e-3))
    vae.fit(blob_images(64), epochs=1, batch_size=16, verbose=0)
    folder = tmp_path_factory.mktemp("run")
    vae.save(folder / "model.keras")
    (folder / "config.json").write_text(json.dumps({"backend": keras.backend.backend()}))
    return folder, vae


@pytest.fixture(scope="module")
def saved_model(run_dir, tmp_path_factory):
    """The run exported by `resvae export`, on whatever backend the tests run."""
    folder, vae = run_dir
    out = tmp_path_factory.mktemp("export") / "saved_model"
    result = CliRunner().invoke(main, ["export", str(folder), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "Exported encode, decode, reconstruct, sample (saved_model)" in result.output
    return out, vae


@pytest.mark.slow
def test_saved_model_signatures_match_keras_in_a_process_without_keras_resvae(
    saved_model, tmp_path
):
    out, vae = saved_model
    inputs = fresh_inputs(vae)
    np.savez(tmp_path / "inputs.npz", **inputs)
    consumer = WITHOUT_KERAS_RESVAE + textwrap.dedent(
        f"""
        import numpy as np, tensorflow as tf
        served = tf.saved_model.load({str(out)!r})
        inputs = dict(np.load({str(tmp_path / "inputs.npz")!r}))
        outputs = {{}}
        for key, value in inputs.items():
            name = key.split("/")[0]
            signature = served.signatures[name]
            (input_name,) = signature.structured_input_signature[1]
            for output, tensor in signature(**{{input_name: tf.constant(value)}}).items():
                outputs[key + "/" + output] = tensor.numpy()
            if name == "reconstruct":
                default = served.signatures["serving_default"](images=tf.constant(value))
                outputs[key + "/default"] = default["reconstructions"].numpy()
        np.savez({str(tmp_path / "outputs.npz")!r}, **outputs)
        """
    )
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "CUDA_VISIBLE_DEVICES": ""}
    env.pop("KERAS_BACKEND", None)
    result = subprocess.run(
        [sys.executable, "-c", consumer], capture_output=True, text=True, env=env
    )
    assert result.returncode == 0, result.stderr[-3000:]
    exported = dict(np.load(tmp_path / "outputs.npz"))
    expected = keras_outputs(vae, inputs)
    for batch in BATCH_SIZES:
        key = f"reconstruct/{batch}"
        expected[f"{key}/default"] = expected[f"{key}/reconstructions"]
    assert_close(exported, expected)


@pytest.mark.slow
def test_saved_model_cli_lists_the_signatures_and_metadata_describes_them(saved_model):
    out, vae = saved_model
    result = subprocess.run(
        ["saved_model_cli", "show", "--dir", str(out), "--tag_set", "serve"],
        capture_output=True,
        text=True,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
    )
    assert result.returncode == 0, result.stderr[-2000:]
    for name in [*ENDPOINTS, "serving_default"]:
        assert f'SignatureDef key: "{name}"' in result.stdout
    metadata = json.loads((out / METADATA_FILE).read_text())
    assert metadata["pixel_range"] == [0.0, 1.0]
    assert metadata["image_shape"] == [16, 16, 1] and metadata["latent_dim"] == 4
    assert metadata["trained_backend"] == keras.backend.backend()
    assert metadata["endpoints"]["sample"] == {
        "input": {"name": "noise", "shape": [None, 4]},
        "outputs": ["samples"],
    }


@pytest.mark.slow
def test_onnx_files_match_keras_for_a_tanh_model(tmp_path):
    onnxruntime = pytest.importorskip("onnxruntime")
    vae = tiny_vae("basic", output_activation="tanh")
    vae.compile(optimizer=keras.optimizers.Adam(3e-3))
    vae.fit(blob_images(32) * 2 - 1, epochs=1, batch_size=16, verbose=0)
    metadata = export_vae(vae, tmp_path / "onnx", "onnx")
    assert metadata["pixel_range"] == [-1.0, 1.0] and metadata["source"] is None

    inputs = fresh_inputs(vae)
    exported = {}
    for name in ENDPOINTS:
        session = onnxruntime.InferenceSession(str(tmp_path / "onnx" / f"{name}.onnx"))
        (onnx_input,) = session.get_inputs()
        assert onnx_input.name == ENDPOINTS[name][0] and onnx_input.shape[0] == "batch"
        output_names = [output.name for output in session.get_outputs()]
        for batch in BATCH_SIZES:
            key = f"{name}/{batch}"
            values = session.run(None, {onnx_input.name: inputs[key]})
            exported.update({f"{key}/{o}": v for o, v in zip(output_names, values)})
    assert_close(exported, keras_outputs(vae, inputs))
    samples = exported["sample/7/samples"]
    assert samples.min() >= -1 and samples.max() <= 1


@pytest.mark.slow
def test_serve_saved_model_example_runs_without_keras_resvae(saved_model, tmp_path):
    out, _ = saved_model
    png = tmp_path / "served.png"
    runner = WITHOUT_KERAS_RESVAE + (
        "import runpy; sys.argv = sys.argv[1:]; runpy.run_path(sys.argv[0], run_name='__main__')"
    )
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "CUDA_VISIBLE_DEVICES": ""}
    command = [sys.executable, "-c", runner, str(EXAMPLES / "serve_saved_model.py")]
    result = subprocess.run(
        [*command, str(out), "--out", str(png), "-n", "6"], capture_output=True, text=True, env=env
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert png.read_bytes().startswith(b"\x89PNG")
    assert "reconstruction MSE" in result.stdout


def error_lines(output):
    return [line for line in output.splitlines() if line.startswith("Error:")]


@pytest.mark.parametrize(
    "make_source, args, message",
    [
        (lambda tmp: tmp / "missing-run", [], "no such run directory"),
        (lambda tmp: tmp / "empty-run", [], "config.json is missing"),
        (lambda tmp: tmp / "corrupt.keras", [], "cannot load this model file"),
        (lambda tmp: tmp / "corrupt.keras", ["--format", "tflite"], "Unknown export format"),
    ],
    ids=["missing", "not-a-run", "corrupt", "unknown-format"],
)
def test_bad_exports_are_one_clear_line(tmp_path, make_source, args, message):
    (tmp_path / "empty-run").mkdir()
    (tmp_path / "corrupt.keras").write_bytes(b"PK\x03\x04 truncated")
    source = make_source(tmp_path)
    result = CliRunner().invoke(main, ["export", str(source), "--out", str(tmp_path / "x"), *args])
    assert result.exit_code == 1
    (line,) = error_lines(result.output)
    assert message in line, line
    assert not (tmp_path / "x").exists()


def test_export_never_overwrites_a_folder_it_did_not_write(tmp_path):
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    with pytest.raises(ValueError, match="holds no earlier export"):
        _check_destination(str(tmp_path / "mine"))
    (tmp_path / "file").write_text("")
    with pytest.raises(ValueError, match="is a file"):
        _check_destination(str(tmp_path / "file"))


def test_an_export_folder_has_ordinary_permissions(saved_model):
    out, _ = saved_model
    mask = os.umask(0o022)
    os.umask(mask)
    assert stat.S_IMODE(os.stat(out).st_mode) == 0o777 & ~mask


def test_a_new_export_replaces_the_old_one_whole(tmp_path):
    old, new = tmp_path / "export", tmp_path / "staging"
    for folder, marker in [(old, "old.pb"), (new, "new.pb")]:
        folder.mkdir()
        (folder / marker).write_text("")
        (folder / METADATA_FILE).write_text("{}")
    _check_destination(str(old))
    _replace_folder(str(new), str(old))
    assert sorted(os.listdir(old)) == ["new.pb", METADATA_FILE]
    assert sorted(os.listdir(tmp_path)) == ["export"]


@pytest.mark.slow
def test_a_hierarchical_vae_exports_like_the_others(tmp_path):
    import tensorflow as tf

    keras.utils.set_random_seed(0)
    vae = keras_resvae.build_vae("hvae", (16, 16, 1), 2, width=0.125, num_scales=2, seed=1)
    vae.compile(optimizer=keras.optimizers.Adam(3e-3))
    vae.fit(blob_images(32), epochs=1, batch_size=16, verbose=0)
    metadata = export_vae(vae, tmp_path / "saved_model", "saved_model")
    assert metadata["latent_dim"] == vae.latent_dim == 4 * 4 * 2 + 8 * 8 * 2
    served = tf.saved_model.load(str(tmp_path / "saved_model"))
    inputs = fresh_inputs(vae)
    exported = {}
    for key, value in inputs.items():
        signature = served.signatures[key.split("/")[0]]
        (input_name,) = signature.structured_input_signature[1]
        for output, tensor in signature(**{input_name: tf.constant(value)}).items():
            exported[f"{key}/{output}"] = tensor.numpy()
    assert_close(exported, keras_outputs(vae, inputs))
