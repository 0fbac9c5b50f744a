"""Data-parallel training on PyTorch: one process per device, started by `torchrun`.

Keras has no data-parallel engine for the torch backend, so this module uses
PyTorch's own (`torch.distributed`), as DistributedDataParallel does, inside
the VAE's custom training step: every process trains the same model on its own
share of each global batch, and after the backward pass the gradients are
averaged over the processes with one all-reduce, so every process applies the
same update and the weights stay equal. What DistributedDataParallel does on
top (the initial broadcast of the weights, keeping the batch-norm statistics
alike) is done here too; its forward-pass hooks cannot be used, because the
VAE's step calls its encoder and decoder itself rather than `model(x)`.

The processes are started by `torchrun` (one per GPU, or several on a CPU),
which also stops all of them when one fails:

    torchrun --standalone --nproc-per-node 2 --no-python \\
        resvae fit --backend torch --distribute --batch-size 128 ...

Each process reads `RANK`, `WORLD_SIZE` and `LOCAL_RANK` from `torchrun`'s
environment; process 0 alone writes the run folder.
"""

import os
import shlex
import sys

import keras

# Set by torchrun in every process it starts.
ENVIRONMENT = ("RANK", "WORLD_SIZE", "LOCAL_RANK")


def launched_by_torchrun():
    """True in a process that `torchrun` started (its environment names a rank)."""
    return all(name in os.environ for name in ENVIRONMENT)


def torchrun_command(argv=None):
    """The command line that runs this program under `torchrun`, one process per GPU.

    Example:
    >>> torchrun_command(["/venv/bin/resvae", "fit", "--distribute"])
    'torchrun --standalone --nproc-per-node 2 --no-python resvae fit --distribute'
    >>> torchrun_command(["train.py", "--epochs", "3"])
    'torchrun --standalone --nproc-per-node 2 train.py --epochs 3'
    """
    argv = list(sys.argv if argv is None else argv)
    processes = max(_cuda_device_count(), 2)
    command = f"torchrun --standalone --nproc-per-node {processes} "
    if argv[0].endswith(".py"):  # a Python script: torchrun runs it with Python
        return command + shlex.join(argv)
    # An installed command such as resvae: torchrun must run it as it is.
    return command + "--no-python " + shlex.join([os.path.basename(argv[0]), *argv[1:]])


def _cuda_device_count():
    import torch

    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def start():
    """Joins the process group `torchrun` set up; returns the number of processes.

    Uses NCCL with one GPU per process when CUDA is available, else gloo on
    the CPU. Raises a ValueError with the command to run when this process was
    not started by `torchrun`.
    """
    import torch
    import torch.distributed as dist

    if not launched_by_torchrun():
        raise ValueError(
            "--distribute on the PyTorch backend trains one process per device, started by "
            f"torchrun. Run: {torchrun_command()}"
        )
    if not dist.is_initialized():
        if torch.cuda.is_available():
            # Before any tensor is made: Keras puts its tensors on the current device.
            torch.cuda.set_device(int(os.environ["LOCAL_RANK"]))
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    return dist.get_world_size()


def active():
    """True while this process trains data-parallel with others."""
    if keras.backend.backend() != "torch":
        return False
    import torch.distributed as dist

    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank():
    """This process's rank (0 when not data-parallel)."""
    if not active():
        return 0
    import torch.distributed as dist

    return dist.get_rank()


def is_writer():
    """True in the one process that writes files: process 0, or the only process."""
    return rank() == 0


def world_size():
    """The number of processes training together (1 when not data-parallel)."""
    if not active():
        return 1
    import torch.distributed as dist

    return dist.get_world_size()


def shard_batches(dataset, rank, world_size):
    """This process's share of every global batch of a batched `tf.data.Dataset`.

    Process `rank` keeps the images `rank, rank + world_size, ...` of each
    batch, so the processes' shares together are the global batch, and every
    process has the same number of steps. The global batch must split evenly.

    Example:
    >>> train = shard_batches(data.train, rank=1, world_size=2)  # 64 -> 32 images
    """
    return dataset.map(lambda images: images[rank::world_size])


def average(tensors):
    """The mean over the processes of each tensor, with one all-reduce; returns new tensors."""
    import torch
    import torch.distributed as dist

    flat = torch.cat([tensor.detach().reshape(-1).float() for tensor in tensors])
    dist.all_reduce(flat)
    flat /= dist.get_world_size()
    averaged, start = [], 0
    for tensor in tensors:
        size = tensor.numel()
        averaged.append(flat[start : start + size].view_as(tensor).to(tensor.dtype))
        start += size
    return averaged


def all_agree(flag):
    """True only when `flag` is true in every process."""
    import torch
    import torch.distributed as dist

    value = torch.tensor([1 if flag else 0], dtype=torch.int32)
    if torch.cuda.is_available():
        value = value.cuda()
    dist.all_reduce(value, op=dist.ReduceOp.MIN)
    return bool(value.item())


def synchronize_start(model):
    """Makes every process start from process 0's model, with noise of its own.

    Broadcasts process 0's weights, non-trainable state and optimizer state
    (a resumed run loaded the same checkpoint everywhere; this also covers a
    model built differently per process), then moves each process's sampling
    noise to a stream of its own: with equal seeds, every share of the batch
    would otherwise get the same noise.
    """
    import torch.distributed as dist

    with_state = list(model.variables)
    if model.optimizer is not None and model.optimizer.built:
        with_state += list(model.optimizer.variables)
    for variable in with_state:
        value = variable.value.detach().clone()
        dist.broadcast(value, src=0)
        variable.assign(value)
    for generator in _seed_generators(model):
        generator.state.assign(_shifted_seed_state(generator.state, dist.get_rank()))


# Odd, and about 2**32 / golden ratio: the ranks' streams land far apart modulo 2**32.
_STREAM_STRIDE = 0x9E3779B9


def _shifted_seed_state(state, rank):
    """A seed state `rank` streams away, in the 32-bit arithmetic the backend seeds with.

    The torch backend seeds each draw with (first word + second word) mod 2**32,
    the second word counting draws; moving the first word by a large odd stride
    puts each process's draws far from every other's.
    """
    words = keras.ops.convert_to_numpy(state.value).astype("int64") & 0xFFFFFFFF
    words[0] = (words[0] + rank * _STREAM_STRIDE) & 0xFFFFFFFF
    if "uint" not in str(state.dtype):  # int32 on torch: the same bits, signed
        words = (words ^ 0x80000000) - 0x80000000
    return words.astype(str(state.dtype).split(".")[-1])


def _seed_generators(model):
    seen, generators = set(), []
    for layer in model._flatten_layers(include_self=True):
        generator = getattr(layer, "seed_generator", None)
        if isinstance(generator, keras.random.SeedGenerator) and id(generator) not in seen:
            seen.add(id(generator))
            generators.append(generator)
    return generators


def batch_statistics(model):
    """The float non-trainable variables (batch-norm moving statistics) to keep alike.

    Seed-generator states are integers, so each process keeps its own noise stream.
    """
    return [v for v in model.non_trainable_variables if "float" in str(v.dtype)]
