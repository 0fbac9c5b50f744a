"""Training stuck at the mean image: a decoder whose output no longer depends on its input.

A VAE can settle where the posterior equals the prior and the decoder puts out
one image for every input: the data's mean image, or a saturated, almost
uniform one. The loss stops moving, the reconstructions all look alike, and
nothing says why. It is detected from what the model does rather than from the
loss: the reconstructions of a fixed set of test images barely vary from image
to image, while the images do.
"""

import sys

import keras
import numpy as np

from keras_resvae.callbacks import to_unit_numpy

# Reconstructions that vary across images less than this fraction of the
# images' own variance are taken as stuck. On the built-in digits (ResNet-18
# and ResNet-50, with and without batch norm, sigmoid and tanh, on TF), every
# run that trained was at 0.040 or more after epoch 4, while runs with batch
# norm were still at 0.007-0.028 after epoch 3; a stalled run stayed between
# 0.0004 and 0.0043 for all 8 epochs.
STALL_SPREAD = 0.01
# Even a run that trains puts out about the mean image for its first epochs
# (three with batch norm), so a run is judged from the end of this epoch on.
FIRST_JUDGED_EPOCH = 4
# The columns the detector adds to history.csv.
STALL_COLUMNS = ("reconstruction_spread", "stalled")


def reconstruction_spread(vae, images):
    """How much the reconstructions vary across images, relative to the images themselves.

    spread = sum over pixels of Var_i(reconstruction_i) / sum over pixels of
    Var_i(image_i), both on the [0, 1] scale, with Var_i the variance over the
    images. 1 means the outputs vary as much as the data does; 0 means every
    input gets the same output, the mean image of a stalled VAE.

    Args:
        vae: a `keras_resvae.VAE`.
        images: `(n, H, W, C)` NumPy images in the model's pixel range, n >= 2,
            not all equal.

    Returns:
        A float >= 0.

    Example:
    >>> reconstruction_spread(vae, x_test[:256])  # near 1 for a trained VAE
    """
    images = np.asarray(images, "float32")
    if len(images) < 2:
        raise ValueError(f"reconstruction_spread needs at least 2 images; got {len(images)}.")
    activation = vae.output_activation
    originals = to_unit_numpy(images, activation)
    # In batches, so a full-width model's activations stay small.
    outputs = np.concatenate(
        [
            to_unit_numpy(vae.reconstruct(images[start : start + 64]), activation)
            for start in range(0, len(images), 64)
        ]
    )
    data_variance = float(np.sum(np.var(originals.astype("float64"), axis=0)))
    if data_variance == 0.0:
        raise ValueError("reconstruction_spread needs images that differ from one another.")
    return float(np.sum(np.var(outputs.astype("float64"), axis=0))) / data_variance


class MeanImageStall(keras.callbacks.Callback):
    """Says, once, when training is stuck at the mean image, and logs it every epoch.

    After each epoch it adds `reconstruction_spread` (see that function) and
    `stalled` (1.0 when the spread is below `threshold` from epoch
    `first_judged_epoch` on, else 0.0) to the epoch's logs, so a `CSVLogger`
    placed after it writes them to the history. The first stalled epoch
    prints one line with what to try. With fewer than 2 distinct images there
    is nothing to compare: the spread is logged as NaN.

    Args:
        images: a fixed batch of test images (at least 2, in the model's range).
        advice: str. What to try, for the message.
        threshold: float. The spread below which the run counts as stuck.
        first_judged_epoch: int. The first epoch (counting from 1) judged.

    Example:
    >>> vae.fit(data.train, epochs=8, callbacks=[MeanImageStall(x_test[:256])])
    """

    def __init__(
        self,
        images,
        advice="another --seed",
        threshold=STALL_SPREAD,
        first_judged_epoch=FIRST_JUDGED_EPOCH,
    ):
        super().__init__()
        self.images = np.asarray(images, "float32")
        # Nothing to compare with a single image, or with identical ones.
        self.usable = len(self.images) >= 2 and bool(np.any(self.images != self.images[:1]))
        self.advice = advice
        self.threshold = float(threshold)
        self.first_judged_epoch = int(first_judged_epoch)
        self.warned = False

    def on_epoch_end(self, epoch, logs=None):
        if logs is None:
            return
        spread = reconstruction_spread(self.model, self.images) if self.usable else float("nan")
        judged = epoch + 1 >= self.first_judged_epoch
        stalled = judged and spread < self.threshold  # False for NaN
        logs["reconstruction_spread"] = spread
        logs["stalled"] = float(stalled)
        if stalled and not self.warned:
            self.warned = True
            print(stall_message(epoch + 1, spread, self.advice), file=sys.stdout, flush=True)


def stall_message(epoch, spread, advice):
    """The one line printed for a run stuck at the mean image."""
    return (
        f"Training is stuck at the mean image (one output for every input): after epoch "
        f"{epoch} the reconstructions vary across images {100 * spread:.2g}% as much as the "
        f"images do. Try {advice}."
    )
