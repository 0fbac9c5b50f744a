"""The VAE's stateless train and test steps on the JAX backend.

JAX steps receive every variable as an argument and must return the new values,
including the non-trainable ones: the sampling layer's RNG state and the
batch-norm statistics live there.
"""

import contextlib

import jax
import jax.numpy as jnp
import keras

from keras_resvae.training.common import (
    all_finite,
    is_finite,
    small_enough,
    unpack_batch,
    update_metrics,
    uses_loss_scaling,
)


def _forward(model, trainable, non_trainable, images, sample_weight, step, training):
    """Runs `compute_elbo` statelessly; returns (loss, terms, new non-trainables)."""
    mapping = list(zip(model.trainable_variables, trainable))
    mapping += list(zip(model.non_trainable_variables, non_trainable))
    with keras.StatelessScope(state_mapping=mapping) as scope:
        loss, terms = model.compute_elbo(
            images, step=step, training=training, sample_weight=sample_weight
        )
    new_non_trainable = [
        _current(scope, ref, old) for ref, old in zip(model.non_trainable_variables, non_trainable)
    ]
    return loss, terms, new_non_trainable


def _current(scope, variable, default):
    value = scope.get_current_value(variable)
    return default if value is None else value


def _metrics(model, metrics_variables, images, loss, terms, skipped=None):
    mapping = list(zip(model.metrics_variables, metrics_variables))
    with keras.StatelessScope(state_mapping=mapping) as scope:
        logs = update_metrics(model, images, loss, terms, skipped)
    new_metrics = [
        _current(scope, ref, old) for ref, old in zip(model.metrics_variables, metrics_variables)
    ]
    return logs, new_metrics


def train_step(model, state, data):
    trainable, non_trainable, optimizer_vars, metrics_vars = state
    images, sample_weight = unpack_batch(data)
    optimizer_mapping = list(zip(model.optimizer.variables, optimizer_vars))
    with keras.StatelessScope(state_mapping=optimizer_mapping):
        step = model.optimizer.iterations.value

    def scaled_loss(trainable):
        loss, terms, new_non_trainable = _forward(
            model, trainable, non_trainable, images, sample_weight, step, training=True
        )
        with keras.StatelessScope(state_mapping=optimizer_mapping):
            scaled = model.optimizer.scale_loss(loss)
        return scaled, (loss, terms, new_non_trainable)

    grads, (loss, terms, new_non_trainable) = jax.grad(scaled_loss, has_aux=True)(trainable)
    new_trainable, new_optimizer_vars = model.optimizer.stateless_apply(
        optimizer_vars, grads, trainable
    )
    grads_finite = is_finite(loss, grads)
    # Finite gradients can still give non-finite weights (an infinite learning rate).
    update = jnp.logical_and(grads_finite, all_finite(new_trainable))
    with keras.StatelessScope(state_mapping=optimizer_mapping):
        small = small_enough(model, grads)
    if small is not None:
        update = jnp.logical_and(update, small)

    def keep_if(condition, new, old):
        # A skipped step leaves weights, optimizer and batch-norm state untouched.
        return [jnp.where(condition, n, o) for n, o in zip(new, old)]

    # A loss-scale optimizer keeps its own state right on a non-finite step (it
    # lowers the scale and skips the update); a step skipped for its size only
    # must leave that state alone too.
    optimizer_update = update
    if uses_loss_scaling(model.optimizer):
        optimizer_update = jnp.logical_or(update, jnp.logical_not(grads_finite))

    logs, metrics_vars = _metrics(
        model, metrics_vars, images, loss, terms, skipped=jnp.logical_not(update)
    )
    state = (
        keep_if(update, new_trainable, trainable),
        keep_if(update, new_non_trainable, non_trainable),
        keep_if(optimizer_update, new_optimizer_vars, optimizer_vars),
        metrics_vars,
    )
    return logs, state


def test_step(model, state, data):
    trainable, non_trainable, metrics_vars = state
    images, sample_weight = unpack_batch(data)
    loss, terms, non_trainable = _forward(
        model, trainable, non_trainable, images, sample_weight, step=None, training=False
    )
    logs, metrics_vars = _metrics(model, metrics_vars, images, loss, terms)
    return logs, (trainable, non_trainable, metrics_vars)


@contextlib.contextmanager
def state_kept_on_error(model):
    """Gives the model its variables back when `fit`, `evaluate` or `predict` stops with an error.

    Keras's JAX loops detach the variables' values while they run (to save
    memory) and attach the newest state only when they finish, so an error
    from the data (a failed input check, a broken generator) or Ctrl-C left
    every variable empty: the model could not even `predict` afterwards. This
    attaches the newest state Keras holds, else the values from before the
    call. It keeps only references, so it costs no memory.
    """
    variables = _all_variables(model)
    before = [variable._value for variable in variables]
    try:
        yield
    except BaseException:
        with contextlib.suppress(Exception):
            model.jax_state_sync()
        for variable, value in zip(variables, before):
            if variable._value is None and value is not None and not value.is_deleted():
                variable._value = value
        raise


def _all_variables(model):
    optimizer = getattr(model, "optimizer", None)
    optimizer_variables = list(optimizer.variables) if optimizer is not None else []
    return list(model.variables) + optimizer_variables + list(model.metrics_variables)
