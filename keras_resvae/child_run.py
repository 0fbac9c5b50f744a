"""`fit_run` in a child process, so that a long series of runs does not grow in memory.

TensorFlow keeps the graphs it traced for every model of a process alive
(tensorflow/tensorflow#61791): about 0.17 GB per ResNet-18 run at width 0.25,
with neither `keras.backend.clear_session()` nor garbage collection freeing
them, so a comparison or a seed sweep of dozens of runs in one process grows
until it is killed. A child process per run hands everything back to the
system when the run ends, on every backend.

The child is `python -m keras_resvae.child_run REQUEST RESULT`: it reads the
run's arguments from the pickle file REQUEST, calls `fit_run`, and writes
`(config, metrics)` or the error it raised to RESULT. Its output is relayed to
this process's `sys.stdout` as it comes, so progress bars and messages appear
where they would without the child (also under click's `CliRunner`).
"""

import codecs
import os
import pickle
import signal
import subprocess
import sys
import tempfile
import traceback

import keras

# How long an interrupted parent waits for its child to stop cleanly: its
# checkpoints are atomic, so ending it later loses at most the current epoch.
_STOP_SECONDS = 30


class ChildRunFailed(RuntimeError):
    """The child process training a run ended without a result (it crashed or was killed)."""


def fit_run_in_child(out, **fit_run_arguments):
    """`fit_run(out, **fit_run_arguments)`, run in a fresh Python process.

    The child runs on this process's Keras backend. Its errors are raised here
    as they were raised there (a `ValueError` stays a `ValueError`), so callers
    treat them as they treat `fit_run`'s.

    Args:
        out: str. The run directory.
        **fit_run_arguments: `fit_run`'s arguments; they must pickle. An
            `InceptionFeatures` in `evaluation["features"]` is rebuilt in the
            child from its weights file.

    Returns:
        `(config, metrics)`, as `fit_run` returns them.

    Raises:
        ChildRunFailed: the child ended without a result: a crash (its
            traceback is on stderr above) or a signal such as the kernel's
            out-of-memory killer. The run folder keeps its last checkpoint.

    Example:
    >>> config, metrics = fit_run_in_child("runs/r18", arch="resnet18", epochs=5)
    """
    evaluation = dict(fit_run_arguments.get("evaluation") or {})
    features = evaluation.get("features")
    if features is not None:
        evaluation["features"] = _FeaturesSpec(features.weights_path, features.batch_size)
        fit_run_arguments = {**fit_run_arguments, "evaluation": evaluation}
    with tempfile.TemporaryDirectory(prefix="resvae-run-") as folder:
        request = os.path.join(folder, "request.pickle")
        result = os.path.join(folder, "result.pickle")
        with open(request, "wb") as file:
            pickle.dump((out, fit_run_arguments), file)
        returncode = _run_relaying_output(
            [sys.executable, "-m", "keras_resvae.child_run", request, result], _child_environment()
        )
        if os.path.exists(result):
            with open(result, "rb") as file:
                outcome = pickle.load(file)
            if outcome["error"] is not None:
                raise outcome["error"]
            return outcome["value"]
    raise ChildRunFailed(_failure_message(out, returncode))


def _child_environment():
    import keras_resvae

    environment = dict(os.environ, KERAS_BACKEND=keras.backend.backend())
    # The child imports this same copy of the package, installed or not.
    source = os.path.dirname(os.path.dirname(os.path.abspath(keras_resvae.__file__)))
    environment["PYTHONPATH"] = os.pathsep.join(
        [source, *filter(None, [os.environ.get("PYTHONPATH")])]
    )
    environment.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    return environment


def _run_relaying_output(command, environment):
    """Runs `command`, copying its stdout to `sys.stdout` as it comes; returns its exit code."""
    sys.stdout.flush()
    child = subprocess.Popen(
        command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, env=environment
    )
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    try:
        while chunk := os.read(child.stdout.fileno(), 65536):
            sys.stdout.write(decoder.decode(chunk))
            sys.stdout.flush()
        sys.stdout.write(decoder.decode(b"", final=True))
        return child.wait()
    except BaseException:
        # Interrupted here (Ctrl-C reaches the child too): let it stop on its own first.
        try:
            child.wait(timeout=_STOP_SECONDS)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()
        raise
    finally:
        child.stdout.close()


def _failure_message(out, returncode):
    if returncode < 0:
        name = signal.Signals(-returncode).name if -returncode in signal.valid_signals() else ""
        cause = f"was killed by signal {-returncode} {name}".rstrip()
        if -returncode == signal.SIGKILL:
            cause += (
                " (most often the kernel's out-of-memory killer: lower --batch-size, "
                "--eval-images or --iwae-samples)"
            )
    elif returncode == 0:
        cause = "ended without writing its result"
    else:
        cause = f"exited with code {returncode} (its traceback is above)"
    return (
        f"Training {out} in its own process failed: the process {cause}. The run folder "
        "keeps its last checkpoint; run the same command again to continue."
    )


class _FeaturesSpec:
    """What the child needs to rebuild an `InceptionFeatures`: a model does not pickle."""

    def __init__(self, weights_path, batch_size):
        self.weights_path = weights_path
        self.batch_size = batch_size

    def build(self):
        from keras_resvae.metrics.fid import InceptionFeatures

        return InceptionFeatures(weights=self.weights_path, batch_size=self.batch_size)


def _picklable(error):
    """`error` if it survives pickling, else a `RuntimeError` with its type and message."""
    try:
        pickle.loads(pickle.dumps(error))
        return error
    except Exception:
        return RuntimeError(f"{type(error).__name__}: {error}")


def _child_main(request, result):
    from keras_resvae.atomic import atomic_path
    from keras_resvae.runs import fit_run

    with open(request, "rb") as file:
        out, arguments = pickle.load(file)
    evaluation = arguments.get("evaluation") or {}
    if isinstance(evaluation.get("features"), _FeaturesSpec):
        arguments["evaluation"] = {**evaluation, "features": evaluation["features"].build()}
    outcome = {"value": None, "error": None}
    try:
        outcome["value"] = fit_run(out, **arguments)
    except Exception as error:
        # Raised again in the parent, as if the run had been trained there; a
        # traceback does not pickle, so where it came from travels as a note
        # (printed under an uncaught error, left out of the CLI's one-line errors).
        where = "".join(traceback.format_exception(error)).rstrip()
        outcome["error"] = _picklable(error.with_traceback(None))
        outcome["error"].add_note(f"In the run's own process:\n{where}")
    sys.stdout.flush()
    with atomic_path(result) as temporary, open(temporary, "wb") as file:
        pickle.dump(outcome, file)


if __name__ == "__main__":
    # Through the imported module, so that the request's classes are the ones it defines.
    from keras_resvae.child_run import _child_main as child_main

    try:
        child_main(*sys.argv[1:3])
    except KeyboardInterrupt:
        # Ctrl-C reaches the parent too, which says so; the checkpoints are kept.
        sys.exit(130)
