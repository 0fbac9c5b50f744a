"""The VAE's train and test steps on the PyTorch backend."""

import contextlib

import torch

from keras_resvae import torch_parallel
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
    parallel = torch_parallel.active()
    if parallel and not getattr(model, "_replicas_synchronized", False):
        torch_parallel.synchronize_start(model)
        model._replicas_synchronized = True
    variables = model.trainable_variables
    saved_state = [v.value.detach().clone() for v in model.non_trainable_variables]
    # Gradients accumulate in torch unless cleared.
    model.zero_grad()
    loss, terms = model.compute_elbo(
        images, step=model.optimizer.iterations, training=True, sample_weight=sample_weight
    )
    model.optimizer.scale_loss(loss).backward()
    grads = [torch.zeros_like(v.value) if v.value.grad is None else v.value.grad for v in variables]
    if parallel:
        # As DistributedDataParallel does: the mean over the processes' shares of
        # the global batch, so every process applies the same update.
        grads = torch_parallel.average(grads)
    with torch.no_grad():
        finite = bool(is_finite(loss.detach(), grads))
        if parallel:  # a loss that overflowed in one process only
            finite = torch_parallel.all_agree(finite)
        small = small_enough(model, grads)
        applied = finite and (small is None or bool(small))
        if applied:
            before = [v.value.detach().clone() for v in variables]
            model.optimizer.apply(grads, variables)
            # Finite gradients can still give non-finite weights (an infinite learning rate).
            applied = bool(all_finite([v.value for v in variables]))
            if not applied:
                for variable, value in zip(variables, before):
                    variable.assign(value)
        elif not finite and uses_loss_scaling(model.optimizer):
            model.optimizer.apply(grads, variables)  # lowers the loss scale only
        if not applied:
            # A skipped batch leaves the batch-norm statistics as they were (a
            # non-finite one may have pushed NaNs into them).
            for variable, value in zip(model.non_trainable_variables, saved_state):
                variable.assign(value)
        elif parallel:
            # Each process's batch norm saw its own share: keep the moving statistics alike.
            statistics = torch_parallel.batch_statistics(model)
            if statistics:
                averaged = torch_parallel.average([variable.value for variable in statistics])
                for variable, value in zip(statistics, averaged):
                    variable.assign(value)
    terms = {name: value.detach() for name, value in terms.items()}
    loss = loss.detach()
    if parallel:
        # The logs (progress bar, history, the divergence guard) are the global
        # batch's, and the same in every process, so every process decides alike.
        names = sorted(terms)
        loss, *values = torch_parallel.average([loss, *(terms[name] for name in names)])
        terms = dict(zip(names, values))
    return update_metrics(model, images, loss, terms, skipped=not applied)


def test_step(model, data):
    images, sample_weight = unpack_batch(data)
    loss, terms = model.compute_elbo(images, training=False, sample_weight=sample_weight)
    return update_metrics(model, images, loss, terms)


def state_kept_on_error(model):
    """Nothing to do: this backend's loops keep the variables attached (see jax_step)."""
    return contextlib.nullcontext()
