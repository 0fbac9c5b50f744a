"""The VAE's train and test steps on the PyTorch backend."""

import contextlib

import torch

from keras_resvae.training.common import (
    all_finite,
    is_finite,
    unpack_batch,
    update_metrics,
    uses_loss_scaling,
)


def train_step(model, data):
    images, sample_weight = unpack_batch(data)
    variables = model.trainable_variables
    saved_state = [v.value.detach().clone() for v in model.non_trainable_variables]
    # Gradients accumulate in torch unless cleared.
    model.zero_grad()
    loss, terms = model.compute_elbo(
        images, step=model.optimizer.iterations, training=True, sample_weight=sample_weight
    )
    model.optimizer.scale_loss(loss).backward()
    grads = [torch.zeros_like(v.value) if v.value.grad is None else v.value.grad for v in variables]
    finite = bool(is_finite(loss.detach(), grads))
    with torch.no_grad():
        if finite:
            before = [v.value.detach().clone() for v in variables]
            model.optimizer.apply(grads, variables)
            # Finite gradients can still give non-finite weights (an infinite learning rate).
            finite = bool(all_finite([v.value for v in variables]))
            if not finite:
                for variable, value in zip(variables, before):
                    variable.assign(value)
        elif uses_loss_scaling(model.optimizer):
            model.optimizer.apply(grads, variables)  # lowers the loss scale only
        if not finite:
            # A non-finite batch may have pushed NaNs into the batch-norm statistics.
            for variable, value in zip(model.non_trainable_variables, saved_state):
                variable.assign(value)
    terms = {name: value.detach() for name, value in terms.items()}
    return update_metrics(model, images, loss.detach(), terms, skipped=not finite)


def test_step(model, data):
    images, sample_weight = unpack_batch(data)
    loss, terms = model.compute_elbo(images, training=False, sample_weight=sample_weight)
    return update_metrics(model, images, loss, terms)


def state_kept_on_error(model):
    """Nothing to do: this backend's loops keep the variables attached (see jax_step)."""
    return contextlib.nullcontext()
