"""Package-level promises: the public API, every module importable, every import declared,
no TensorFlow in the core, and a quiet `resvae` on a machine without a GPU."""

import ast
import importlib
import importlib.metadata
import importlib.util
import json
import os
import pkgutil
import re
import subprocess
import sys
from pathlib import Path

import keras
import keras_resvae.cli
import numpy as np
import pytest

import keras_resvae
from keras_resvae import startup
from keras_resvae.images import save_png

ROOT = Path(__file__).resolve().parent.parent
# Imports that only the optional extras provide; everything else must be core.
OPTIONAL_IMPORTS = {"jax", "torch", "keras_cv", "tf2onnx", "onnx", "onnxruntime", "pythae"}


def test_public_api_is_listed():
    for name in keras_resvae.__all__:
        assert hasattr(keras_resvae, name), name
    assert keras_resvae.__version__


def package_modules():
    names = []
    for package in (keras_resvae, keras_resvae.cli):
        for module in pkgutil.walk_packages(package.__path__, package.__name__ + "."):
            if not module.name.endswith("__main__"):  # entry points: importing runs them
                names.append(module.name)
    return names


def test_every_module_of_the_package_imports():
    names = package_modules()
    assert {"keras_resvae.report", "keras_resvae.cli.main", "keras_resvae.export.exporter"} <= set(
        names
    )
    for name in names:
        importlib.import_module(name)


@pytest.mark.parametrize("folder", ["examples", "benchmarks", "tests"])
def test_scripts_import_names_the_package_has(folder):
    # Scripts are not imported by the tests, so a moved function would break them unseen.
    for path in (ROOT / folder).rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("keras_resvae"):
                module = importlib.import_module(node.module)
                for alias in node.names:
                    assert hasattr(module, alias.name) or importlib.util.find_spec(
                        f"{node.module}.{alias.name}"
                    ), f"{path.name}: {node.module} has no {alias.name}"


def third_party_imports(folder):
    """Top-level names of every non-stdlib import in the .py files under `folder`."""
    local = {path.stem for path in folder.rglob("*.py")} | {"keras_resvae", "conftest"}
    found = {}
    for path in folder.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                names = [node.module]
            else:
                continue
            for name in names:
                top = name.split(".")[0]
                if top not in sys.stdlib_module_names and top not in local:
                    found.setdefault(top, path.relative_to(ROOT))
    return found


def declared_requirements():
    """{extra or "core": {distribution names}} from the installed package's metadata."""
    declared = {}
    for line in importlib.metadata.requires("keras-resvae"):
        name = re.match(r"[A-Za-z0-9._-]+", line).group(0)
        extra = re.search(r"extra == ['\"]([^'\"]+)['\"]", line)
        declared.setdefault(extra.group(1) if extra else "core", set()).add(normalise(name))
    return declared


def normalise(name):
    return re.sub(r"[-_.]+", "-", name).lower()


@pytest.mark.parametrize(
    "folder, allowed",
    [
        ("keras_resvae", {"core"}),
        ("cli", {"core"}),
        ("examples", {"core"}),
        ("benchmarks", {"core"}),
        ("tests", {"core", "test"}),
    ],
)
def test_every_import_is_a_declared_dependency(folder, allowed):
    # A missing declaration once hid behind a package installed by hand (matplotlib).
    declared = declared_requirements()
    extras = set().union(*(names for extra, names in declared.items() if extra != "core"))
    allowed_names = set().union(*(declared.get(extra, set()) for extra in allowed))
    distributions = importlib.metadata.packages_distributions()
    for module, where in third_party_imports(ROOT / folder).items():
        providers = {normalise(name) for name in distributions.get(module, [module])}
        if module in OPTIONAL_IMPORTS:
            assert providers & extras, f"{module} ({where}) is in no extra"
        else:
            assert providers & allowed_names, f"{module} ({where}) is not declared in {allowed}"


def test_the_core_imports_without_tensorflow(tmp_path):
    backend = keras.backend.backend()
    if backend == "tensorflow":
        pytest.skip("TensorFlow is the backend here")
    # Building a model and writing its samples as a PNG file import no TensorFlow.
    code = (
        "import sys, keras_resvae, keras_resvae.datasets, keras_resvae.runs\n"
        "from keras_resvae.images import image_grid, save_png\n"
        "vae = keras_resvae.build_vae('basic', (16, 16, 1), 2)\n"
        "save_png(sys.argv[1], image_grid(vae.sample(4, seed=0)))\n"
        "print('tensorflow' in sys.modules)"
    )
    env = {**os.environ, "KERAS_BACKEND": backend}
    png = tmp_path / "samples.png"
    result = subprocess.run(
        [sys.executable, "-c", code, str(png)], env=env, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip().splitlines()[-1] == "False"
    assert png.read_bytes().startswith(b"\x89PNG")


NUMPY_FIT = """
import sys
sys.argv[0] = "resvae"  # the command, as its entry point starts it
from keras_resvae.cli.main import main
arguments = sys.argv[1:]
main([*arguments, "--epochs", "1"], standalone_mode=False)
main(["fit", "--out", arguments[arguments.index("--out") + 1], "--resume", "--epochs", "2"],
     standalone_mode=False)
import keras
from keras_resvae import startup
if keras.backend.backend() == "jax":  # the command gave JAX one CPU device per core
    print("jax devices:", len(keras.distribution.list_devices()), startup.usable_cores())
print("tensorflow imported:", "tensorflow" in sys.modules)
"""


def test_resvae_fit_on_in_memory_data_never_imports_tensorflow(tmp_path):
    # TensorFlow's import is about 0.45 GB resident; on JAX and PyTorch a run on
    # digits, photos or a .npz needs none of it: training, checkpoints, resume,
    # TensorBoard logs, evaluation, pictures and the saved model.
    backend = keras.backend.backend()
    if backend == "tensorflow":
        pytest.skip("TensorFlow is the backend here")
    out = tmp_path / "run"
    arguments = ["fit", "--backend", backend, "--arch", "basic", "--width", "0.125"]
    arguments += ["--latent-dim", "2", "--limit", "64", "--batch-size", "32", "--out", str(out)]
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    result = subprocess.run(
        [sys.executable, "-c", NUMPY_FIT, *arguments],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    lines = result.stdout.strip().splitlines()
    assert lines[-1] == "tensorflow imported: False"
    if backend == "jax":
        devices, cores = lines[-2].split(":")[1].split()
        assert devices == cores
    assert not [line for line in result.stderr.splitlines() if startup.START_UP_NOISE.search(line)]
    assert (out / "model.keras").exists() and (out / "metrics.json").exists()
    assert len(list((out / "logs" / "train").iterdir())) == 2  # one event file per fit


@pytest.mark.parametrize("channels", [1, 2, 3, 4])
def test_a_png_file_holds_exactly_the_image(tmp_path, channels):
    from PIL import Image

    image = np.random.default_rng(0).integers(0, 256, (5, 7, channels), dtype="uint8")
    path = save_png(str(tmp_path / "image.png"), image)
    with Image.open(path) as written:
        read = np.asarray(written)
    np.testing.assert_array_equal(read.reshape(image.shape), image)
    bad = tmp_path / "bad.png"
    with pytest.raises(ValueError, match=r"uint8 image of shape \(H, W, C\) with C from 1 to 4"):
        save_png(str(bad), image.astype("float32"))
    with pytest.raises(ValueError, match=r"Received: dtype uint8, shape \(5, 7, 5\)"):
        save_png(str(bad), np.zeros((5, 7, 5), "uint8"))
    assert not bad.exists()


def resvae(*args, backend=None):
    """Runs the installed `resvae` command as a user would, in a clean environment."""
    env = {
        k: v for k, v in os.environ.items() if k not in ("KERAS_BACKEND", "TF_CPP_MIN_LOG_LEVEL")
    }
    if backend:
        env["KERAS_BACKEND"] = backend
    command = Path(sys.executable).parent / "resvae"
    return subprocess.run(
        [str(command), *map(str, args)], capture_output=True, text=True, env=env, timeout=600
    )


@pytest.mark.slow
def test_resvae_starts_on_the_asked_backend_without_tensorflow_noise(tmp_path):
    # The default backend (KERAS_BACKEND unset) is TensorFlow: --backend must win
    # before Keras starts, and TensorFlow's start-up lines must not reach the user.
    backend = keras.backend.backend()
    result = resvae("fit", "--backend", backend, "--dry-run", "--out", tmp_path / "run")
    assert result.returncode == 0, result.stderr[-3000:]
    assert f'"backend": "{backend}"' in result.stdout
    noise = [line for line in result.stderr.splitlines() if startup.START_UP_NOISE.search(line)]
    assert not noise
    assert "cuInit" not in result.stderr and "cuda" not in result.stderr.lower()
    assert not result.stderr.strip(), result.stderr


def test_a_failing_resvae_prints_one_line_and_exits_with_1(tmp_path):
    # A real process: TensorFlow's start-up lines would come before the error here.
    backend = keras.backend.backend()
    result = resvae("fit", "--backend", backend, "--arch", "foo", "--out", tmp_path / "run")
    assert result.returncode == 1
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("Error: Invalid value for '--arch': 'foo' is not one of 'basic'")
    assert line.endswith("(see 'resvae fit --help').")
    assert not result.stdout


def test_the_command_line_backend_is_read_before_keras():
    assert startup.command_line_backend(["fit", "--backend", "jax", "--out", "x"]) == "jax"
    assert startup.command_line_backend(["fit", "--backend=torch"]) == "torch"
    assert startup.command_line_backend(["fit", "--backend", "numpy"]) is None
    assert startup.command_line_backend(["fit", "--out", "x"]) is None
    assert startup.configured_backend({"KERAS_BACKEND": "jax"}) == "jax"


def test_the_stderr_filter_drops_only_known_start_up_noise(capfd):
    noise = (
        "I0000 00:00:1 cudart_stub.cc:31] Could not find cuda drivers on your machine, GPU will "
        "not be used.\nE0000 00:00:1 cuda_platform.cc:52] failed call to cuInit: INTERNAL: CUDA "
        "error: Failed call to cuInit: UNKNOWN ERROR (303)\n"
    )
    with startup.native_stderr_filtered():
        os.write(2, noise.encode())
        os.write(2, b"a real problem\n")
    assert capfd.readouterr().err == "a real problem\n"


def test_importing_the_package_leaves_tensorflow_devices_configurable():
    # GPU users set memory growth or virtual devices after their imports; that
    # fails once TensorFlow has started its devices, so only `resvae` starts them.
    if keras.backend.backend() != "tensorflow":
        pytest.skip("TensorFlow is imported by the package only on its own backend")
    code = (
        "import keras_resvae, tensorflow as tf\n"
        "cpu = tf.config.list_physical_devices('CPU')[0]\n"
        "two = [tf.config.LogicalDeviceConfiguration()] * 2\n"
        "tf.config.set_logical_device_configuration(cpu, two)\n"
        "print(len(tf.config.list_logical_devices('CPU')))"
    )
    env = {**os.environ, "KERAS_BACKEND": "tensorflow"}
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip().splitlines()[-1] == "2"


@pytest.mark.slow
def test_the_gpu_check_runs_on_the_cpu(tmp_path):
    # The script a CUDA machine runs as one command: its checks and its speed table
    # must work before a GPU is lent, so they run here on the CPU, small.
    backend = keras.backend.backend()
    report = tmp_path / "gpu.json"
    command = [sys.executable, str(ROOT / "benchmarks" / "gpu_check.py"), "--cpu"]
    command += ["--backends", backend, "--width", "0.0625", "--speed-width", "0.0625"]
    command += ["--images", "256", "--epochs", "2", "--batch-sizes", "64"]
    command += ["--precisions", "float32", "--json", str(report)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    assert f"ok   {backend} on the CPU" in result.stdout
    assert "30 x 50,000 images:" in result.stdout
    found = json.loads(report.read_text())
    assert [row["backend"] for row in found["checks"]] == [backend]
    # The checks train in the precisions asked for, like the speed table.
    assert [key for key in found["checks"][0] if key.startswith("losses_")] == ["losses_float32"]
    speeds = {row["backend"]: row for row in found["speed"] if row["kind"] == "train"}
    assert set(speeds) == {backend, "native-torch"}
    assert all(row["images_per_second"] > 0 for row in speeds.values())


def test_the_benchmarks_read_comma_lists_alike():
    # Every benchmark script parses its comma-separated options with this one helper.
    spec = importlib.util.spec_from_file_location(
        "comma_lists", ROOT / "benchmarks" / "comma_lists.py"
    )
    comma_lists = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(comma_lists)
    assert comma_lists.comma_list(" jax, torch ,,") == ["jax", "torch"]
    assert comma_lists.comma_list("64,128", int) == [64, 128]
    assert comma_lists.comma_list(0.25, float) == [0.25]
    assert comma_lists.comma_list("") == []
    for path in (ROOT / "benchmarks").glob("*.py"):
        if path.name != "comma_lists.py":
            assert 'split(",")' not in path.read_text(), f"{path.name} splits a list itself"


def test_the_sample_quality_score_tells_digits_from_noise(tmp_path):
    # benchmarks/sample_quality.py's digit score is what the README's prior-sample
    # table reports: it must rank the test digits far above noise, and score a model.
    spec = importlib.util.spec_from_file_location(
        "sample_quality", ROOT / "benchmarks" / "sample_quality.py"
    )
    sample_quality = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(sample_quality)
    model = tmp_path / "tiny.keras"
    keras_resvae.build_vae("basic", (28, 28, 1), 2, seed=0).save(model)
    report = tmp_path / "scores.json"
    assert sample_quality.main([str(model), "--samples", "300", "--json", str(report)]) == 0
    found = json.loads(report.read_text())
    assert found["classifier_accuracy"] > 0.9
    rows = found["rows"]
    assert rows["test digits"]["digit_score"] > 6 > 2 > rows["uniform noise"]["digit_score"]
    model_row = rows[f"{model} (T=1)"]
    assert sum(model_row["classes"]) == 300
    # An untrained decoder's samples are all alike: no digit at all.
    assert 1 <= model_row["digit_score"] < 2
