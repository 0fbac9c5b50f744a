"""Keras callbacks for run directories: epoch timing, divergence, atomic checkpoints, images."""

import json
import math
import os
import time

import keras
import numpy as np

from keras_resvae import losses
from keras_resvae.atomic import atomic_path
from keras_resvae.images import image_grid, save_png
from keras_resvae.tensorflow_free import keras_without_tensorflow

CHECKPOINT_STATE = "checkpoint.json"


def write_json_atomically(path, data):
    """Writes `data` as JSON to `path`, atomically."""
    with atomic_path(path) as temporary, open(temporary, "w") as file:
        json.dump(data, file, indent=2, sort_keys=True)
        file.write("\n")


def save_model_atomically(model, path):
    """`model.save(path)`, but the file appears complete or not at all.

    A model with a non-finite weight is refused (a ValueError), so no file of a
    run ever holds one.
    """
    broken = non_finite_weights(model)
    if broken:
        raise ValueError(
            f"Not saving {path}: the model has non-finite weights ({', '.join(broken[:3])}"
            f"{', ...' if len(broken) > 3 else ''})."
        )
    with atomic_path(path) as temporary, keras_without_tensorflow():
        model.save(temporary)
    return path


def non_finite_weights(model):
    """The paths of the model's floating-point weights that hold a NaN or an infinity."""
    broken = []
    for weight in model.weights:
        if "float" in str(weight.dtype):
            if not np.all(np.isfinite(keras.ops.convert_to_numpy(weight))):
                broken.append(weight.path)
    return broken


def latest_checkpoint(folder):
    """The `(path, completed_epochs)` of the newest checkpoint in `folder`, or None."""
    state_path = os.path.join(folder, CHECKPOINT_STATE)
    if not os.path.exists(state_path):
        return None
    try:
        with open(state_path) as file:
            state = json.load(file)
        name, epoch = state["file"], int(state["epoch"])
    except (ValueError, KeyError, TypeError) as error:
        raise ValueError(
            f"{state_path} is damaged ({type(error).__name__}: {error}), so the run cannot "
            "tell which checkpoint is its latest. Start a new run with a new --out."
        ) from None
    path = os.path.join(folder, name)
    if not os.path.exists(path):
        raise ValueError(
            f"{state_path} names {state['file']}, which is missing: the run directory "
            "is damaged. Start a new run with a new --out."
        )
    return path, epoch


class EpochTimer(keras.callbacks.Callback):
    """Adds `epoch_seconds`, the wall-clock time of the epoch's training steps, to the logs.

    The clock stops when validation starts (or at the end of the epoch without
    validation), so the number is training alone. Put it before CSVLogger.

    Example:
    >>> vae.fit(x, epochs=3, callbacks=[EpochTimer(), keras.callbacks.CSVLogger("h.csv")])
    """

    def on_epoch_begin(self, epoch, logs=None):
        self._start, self._seconds = time.perf_counter(), None

    def on_test_begin(self, logs=None):
        if getattr(self, "_seconds", 0) is None:
            self._seconds = time.perf_counter() - self._start

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            logs["epoch_seconds"] = self._seconds or time.perf_counter() - self._start


class TrainingDiverged(ValueError):
    """Training reached a point where the model is no longer usable (NaN or infinite)."""


class DivergenceGuard(keras.callbacks.Callback):
    """Stops `fit` with `TrainingDiverged` when an epoch ends with no usable model.

    An epoch has diverged when its validation loss or a weight is not finite,
    or when every one of its steps was skipped as non-finite (the model is not
    learning any more). Under mixed_float16 a run's first steps overflow and
    are skipped while the loss scale falls: that only counts once the scale
    has fallen below 1 (the unscaled loss itself overflows) or did not fall
    (the steps were skipped for another reason).

    Put it before the callbacks that save the epoch: the exception stops the
    epoch's remaining callbacks, so a diverged epoch writes no checkpoint.

    Args:
        advice: str. What the user can do, appended to the message.

    Example:
    >>> vae.fit(x, epochs=10, callbacks=[DivergenceGuard(), checkpoint])
    """

    def __init__(self, advice="lower the learning rate"):
        super().__init__()
        self.advice = advice

    def on_epoch_begin(self, epoch, logs=None):
        self._steps = 0
        self._scale_before = self._loss_scale()

    def on_train_batch_end(self, batch, logs=None):
        self._steps += 1

    def on_epoch_end(self, epoch, logs=None):
        reason = self._reason(logs or {})
        if reason:
            raise TrainingDiverged(
                f"Training diverged at epoch {epoch + 1}: {reason}; {self.advice}."
            )

    def _reason(self, logs):
        steps, skipped = getattr(self, "_steps", 0), float(logs.get("skipped_steps", 0.0))
        if steps and skipped >= steps and self._all_skipped_is_divergence():
            threshold = getattr(self.model, "grad_skip_threshold", None)
            if threshold is not None:
                return (
                    "every step of the epoch was skipped, as non-finite or with a gradient "
                    f"norm above grad_skip_threshold={threshold:g} (raise it if the loss "
                    "is finite)"
                )
            return "every step of the epoch was non-finite"
        if "val_loss" in logs and not math.isfinite(float(logs["val_loss"])):
            return "the validation loss is not finite"
        if non_finite_weights(self.model):
            return "some weights are not finite"
        return None

    def _all_skipped_is_divergence(self):
        before, after = self._scale_before, self._loss_scale()
        return before is None or after < 1.0 or after >= before

    def _loss_scale(self):
        optimizer = getattr(self.model, "optimizer", None)
        if not isinstance(optimizer, keras.optimizers.LossScaleOptimizer):
            return None
        scale = getattr(optimizer, "dynamic_scale", None)  # created when it is built
        if scale is None:
            return float(optimizer.initial_scale)
        return float(keras.ops.convert_to_numpy(scale))


class AtomicCheckpoint(keras.callbacks.Callback):
    """Saves the whole model (weights, optimizer, RNG state) after every epoch.

    Each checkpoint goes to a new file, written atomically; then a small state file
    is atomically pointed at it, and the previous checkpoint is deleted. An
    interruption at any moment leaves the state file naming a complete checkpoint.

    Args:
        folder: str. Where checkpoints and `checkpoint.json` live.
    """

    def __init__(self, folder):
        super().__init__()
        self.folder = folder

    def on_epoch_end(self, epoch, logs=None):
        previous = latest_checkpoint(self.folder)
        name = f"epoch{epoch + 1:04d}.keras"
        save_model_atomically(self.model, os.path.join(self.folder, name))
        write_json_atomically(
            os.path.join(self.folder, CHECKPOINT_STATE), {"epoch": epoch + 1, "file": name}
        )
        if previous and os.path.basename(previous[0]) != name:
            os.remove(previous[0])


def to_unit_numpy(images, output_activation):
    """Backend tensor or array in the model's range -> NumPy array in [0, 1]."""
    return keras.ops.convert_to_numpy(losses.to_unit_interval(images, output_activation))


def reconstruction_grid(vae, images, columns=8):
    """Originals and their reconstructions in alternating rows, uint8."""
    images = np.asarray(images)[: columns * 2]
    reconstructions = to_unit_numpy(vae.reconstruct(images), vae.output_activation)
    originals = to_unit_numpy(images, vae.output_activation)
    rows = []
    for start in range(0, len(images), columns):
        rows += [originals[start : start + columns], reconstructions[start : start + columns]]
    return image_grid(np.concatenate(rows), columns=columns)


def samples_grid(vae, n=64, seed=0, columns=8, temperature=1.0):
    """Decoded draws from the prior (at `temperature`, see `VAE.sample`), uint8."""
    samples = vae.sample(n, seed=seed, temperature=temperature)
    return image_grid(to_unit_numpy(samples, vae.output_activation), columns)


class ImageGrids(keras.callbacks.Callback):
    """Writes PNG grids of test reconstructions and prior samples after each epoch.

    Files: `reconstructions_epochNNNN.png` (rows of originals, then their
    reconstructions) and `samples_epochNNNN.png` (the same prior draws each epoch,
    so epochs can be compared).
    """

    def __init__(self, folder, images, seed=0):
        super().__init__()
        self.folder = folder
        self.images = np.asarray(images)
        self.seed = seed

    def on_epoch_end(self, epoch, logs=None):
        tag = f"epoch{epoch + 1:04d}"
        save_png(
            os.path.join(self.folder, f"reconstructions_{tag}.png"),
            reconstruction_grid(self.model, self.images),
        )
        save_png(
            os.path.join(self.folder, f"samples_{tag}.png"),
            samples_grid(self.model, seed=self.seed),
        )
