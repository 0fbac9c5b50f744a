"""Pieces of the training step shared by every backend."""

import keras
from keras import ops
from keras.utils import unpack_x_y_sample_weight


def uses_loss_scaling(optimizer):
    """True for a `LossScaleOptimizer` (mixed_float16).

    Such an optimizer must see the non-finite steps too: that is when it lowers
    its loss scale (and applies nothing). Skipping them ourselves would leave
    the scale too high forever, and every later step would overflow.
    """
    return isinstance(optimizer, keras.optimizers.LossScaleOptimizer)


def unpack_batch(data):
    """`(images, sample_weight)` of a batch: `x`, `(x,)`, `(x, y)` or `(x, y, w)`.

    Targets are ignored (a VAE reconstructs `x`); `compute_elbo` checks the images.
    """
    images, _, sample_weight = unpack_x_y_sample_weight(data)
    return images, sample_weight


def is_finite(loss, grads):
    """True (a boolean tensor) when the loss and every gradient are finite."""
    return all_finite([loss, *grads])


def all_finite(values):
    """True (a boolean tensor) when every value in every tensor is finite.

    The steps check the updated weights with it too: finite gradients can still
    give non-finite weights (an infinite learning rate, an overflowing moment).
    """
    finite = ops.convert_to_tensor(True)
    for value in values:
        finite = ops.logical_and(finite, ops.all(ops.isfinite(value)))
    return finite


def gradient_norm(optimizer, grads):
    """The global L2 norm of the gradients of the unscaled loss (a float32 scalar).

    A loss-scale optimizer's gradients are those of the scaled loss: dividing
    by its current scale gives the norm `grad_skip_threshold` is measured in.
    """
    squares = [ops.sum(ops.square(ops.cast(grad, "float32"))) for grad in grads]
    norm = ops.sqrt(sum(squares[1:], squares[0]))
    if uses_loss_scaling(optimizer):
        norm = norm / ops.cast(optimizer.dynamic_scale, "float32")
    return norm


def small_enough(model, grads):
    """None when the model skips no large steps, else True (a boolean tensor) when the
    gradient norm is at most `model.grad_skip_threshold` (False for a non-finite norm)."""
    threshold = getattr(model, "grad_skip_threshold", None)
    if threshold is None:
        return None
    if uses_loss_scaling(model.optimizer) and not model.optimizer.built:
        # Its scale is a variable made when it is built, which `apply` would do
        # only later in the step (TensorFlow traces the step before any build).
        model.optimizer.build(model.trainable_variables)
    return ops.less_equal(gradient_norm(model.optimizer, grads), threshold)


def update_metrics(model, images, loss, terms, skipped=None):
    """Updates the VAE's trackers with one batch; returns the logs dict."""
    batch_size = ops.shape(images)[0]
    trackers = [
        (model.loss_tracker, loss),
        (model.reconstruction_tracker, terms["reconstruction_loss"]),
        (model.kl_tracker, terms["kl_loss"]),
        (model.mse_tracker, terms["mse"]),
    ]
    trackers += [(tracker, terms[tracker.name]) for tracker in model.extra_trackers]
    for tracker, value in trackers:
        tracker.update_state(value, sample_weight=batch_size)
    if skipped is not None:
        model.skipped_tracker.update_state(ops.cast(skipped, "float32"))
        trackers.append((model.skipped_tracker, None))
    return {tracker.name: tracker.result() for tracker, _ in trackers}
