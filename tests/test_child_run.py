"""Runs trained in a child process of their own (`resvae compare`'s default)."""

import pickle
import signal
import sys
import types

import pytest

from keras_resvae import child_run
from keras_resvae.child_run import ChildRunFailed, fit_run_in_child


def test_the_child_s_output_is_relayed_and_its_exit_code_returned(capsys):
    script = "import sys; print('épochs', flush=True); sys.stdout.write('\\r1/2'); sys.exit(3)"
    assert child_run._run_relaying_output([sys.executable, "-c", script], None) == 3
    assert capsys.readouterr().out == "épochs\n\r1/2"


def test_a_killed_child_is_named_with_what_to_do(capsys):
    script = "import os, signal; print('started', flush=True); os.kill(os.getpid(), 9)"
    code = child_run._run_relaying_output([sys.executable, "-c", script], None)
    assert code == -signal.SIGKILL and capsys.readouterr().out == "started\n"
    message = child_run._failure_message("runs/r18", code)
    assert "runs/r18" in message and "signal 9 SIGKILL" in message
    assert "out-of-memory killer" in message and "run the same command again" in message
    assert "exited with code 1" in child_run._failure_message("runs/r18", 1)
    assert issubclass(ChildRunFailed, RuntimeError)


def test_the_child_s_errors_are_raised_here_as_they_were_there(tmp_path):
    with pytest.raises(ValueError, match="resnet19") as raised:
        fit_run_in_child(str(tmp_path / "run"), arch="resnet19", epochs=1)
    assert not (tmp_path / "run").exists()
    # Where it was raised in the child comes along, for an uncaught error's traceback.
    (note,) = raised.value.__notes__
    assert note.startswith("In the run's own process:\nTraceback") and "fit_run" in note


def test_inception_features_reach_the_child_as_their_weights_file(tmp_path, monkeypatch):
    # A Keras model does not pickle: the child rebuilds it from the same file.
    requests = []

    def capture(command, environment):
        with open(command[-2], "rb") as file:
            requests.append(pickle.load(file))
        return 0

    monkeypatch.setattr(child_run, "_run_relaying_output", capture)
    features = types.SimpleNamespace(weights_path="/weights/inception.h5", batch_size=8)
    evaluation = {"max_images": 32, "features": features}
    with pytest.raises(ChildRunFailed, match="ended without writing its result"):
        fit_run_in_child(str(tmp_path / "run"), evaluation=evaluation, epochs=1)
    ((out, arguments),) = requests
    spec = arguments["evaluation"]["features"]
    assert out == str(tmp_path / "run") and arguments["epochs"] == 1
    assert (spec.weights_path, spec.batch_size) == ("/weights/inception.h5", 8)
    assert arguments["evaluation"]["max_images"] == 32 and evaluation["features"] is features
