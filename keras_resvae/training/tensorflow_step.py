"""The VAE's train and test steps on the TensorFlow backend."""

import contextlib

import tensorflow as tf
from keras import ops

from keras_resvae.training.common import (
    all_finite,
    is_finite,
    small_enough,
    unpack_batch,
    update_metrics,
    uses_loss_scaling,
)


def train_step(model, data):
    images, sample_weight = unpack_batch(data)
    variables = model.trainable_variables
    saved_state = [tf.identity(v.value) for v in model.non_trainable_variables]
    saved_weights = [tf.identity(v.value) for v in variables]
    with tf.GradientTape() as tape:
        loss, terms = model.compute_elbo(
            images, step=model.optimizer.iterations, training=True, sample_weight=sample_weight
        )
        # Gradients are summed over replicas under tf.distribute.
        replicas = tf.distribute.get_strategy().num_replicas_in_sync
        scaled_loss = model.optimizer.scale_loss(loss / replicas)
    grads = tape.gradient(scaled_loss, variables)
    grads = [tf.zeros_like(v) if g is None else g for g, v in zip(grads, variables)]
    finite = is_finite(loss, grads)
    if replicas > 1 and model.grad_skip_threshold is not None:
        # Each replica sees only its share of the gradient, so replicas could disagree
        # on skipping, and their weights would part.
        raise ValueError(
            "`grad_skip_threshold` is not supported with tf.distribute on several "
            "replicas. Train without --grad-skip, or on the JAX backend, whose data "
            "parallelism sees the whole gradient."
        )
    small = small_enough(model, grads)
    update = finite if small is None else tf.logical_and(finite, small)

    if replicas > 1 and not uses_loss_scaling(model.optimizer):
        # tf.distribute forbids the optimizer's cross-replica sum inside a cond, so
        # a skipped step applies zero gradients instead of none (Adam's momentum
        # still moves the weights slightly) and keeps the old batch-norm state.
        safe = [tf.where(update, grad, tf.zeros_like(grad)) for grad in grads]
        model.optimizer.apply(safe, variables)
        # Finite gradients can still give non-finite weights (an infinite learning rate).
        update = tf.logical_and(update, all_finite([v.value for v in variables]))
        for variable, value in zip(variables, saved_weights):
            variable.assign(tf.where(update, variable.value, value))
        for variable, value in zip(model.non_trainable_variables, saved_state):
            variable.assign(tf.where(update, variable.value, value))
        return update_metrics(model, images, loss, terms, skipped=ops.logical_not(update))

    def apply_update():
        model.optimizer.apply(grads, variables)

    def lower_loss_scale():
        model.optimizer.apply(grads, variables)  # non-finite: lowers the loss scale only

    def skip_update():
        if not uses_loss_scaling(model.optimizer):
            return
        if small is None:
            lower_loss_scale()
        else:
            # A finite step skipped for its size must not touch the loss scale.
            ops.cond(finite, lambda: None, lower_loss_scale)

    ops.cond(update, apply_update, skip_update)
    # Finite gradients can still give non-finite weights (an infinite learning rate).
    update = tf.logical_and(update, all_finite([v.value for v in variables]))

    def restore_state():
        for variable, value in zip(variables, saved_weights):
            variable.assign(value)
        # A skipped batch leaves the batch-norm statistics as they were (a
        # non-finite one may have pushed NaNs into them).
        for variable, value in zip(model.non_trainable_variables, saved_state):
            variable.assign(value)

    ops.cond(update, lambda: None, restore_state)
    return update_metrics(model, images, loss, terms, skipped=ops.logical_not(update))


def test_step(model, data):
    images, sample_weight = unpack_batch(data)
    loss, terms = model.compute_elbo(images, training=False, sample_weight=sample_weight)
    return update_metrics(model, images, loss, terms)


def state_kept_on_error(model):
    """Nothing to do: this backend's loops keep the variables attached (see jax_step)."""
    return contextlib.nullcontext()
