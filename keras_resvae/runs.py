"""Run directories: train, resume and evaluate a VAE with everything written to disk.

A run directory holds:

    config.json           the resolved configuration, written before training
    checkpoints/          the latest checkpoint (whole model + optimizer), atomic
    history.csv           one row per epoch, no gaps after a resume
    logs/                 TensorBoard logs
    images/               reconstructions_epochNNNN.png, samples_epochNNNN.png
    model.keras           the trained model (written at the end)
    metrics.json          final test metrics
    reconstructions.png   test originals and their reconstructions
    samples.png           samples from the prior

Every file is written atomically, so an interruption never leaves a truncated one.
"""

import csv
import json
import math
import os
import shutil
import zipfile

import keras
import numpy as np

from keras_resvae import inputs, losses, torch_parallel
from keras_resvae.architectures.registry import resolve_architecture
from keras_resvae.atomic import atomic_path
from keras_resvae.build import build_vae
from keras_resvae.callbacks import (
    AtomicCheckpoint,
    DivergenceGuard,
    EpochTimer,
    ImageGrids,
    TrainingDiverged,
    latest_checkpoint,
    reconstruction_grid,
    samples_grid,
    save_model_atomically,
    write_json_atomically,
)
from keras_resvae.compilation import check_jit_compile
from keras_resvae.datasets import ArrayBatches, load_dataset
from keras_resvae.distribute import data_parallel, local_devices, shard_batches
from keras_resvae.images import save_png
from keras_resvae.memory import check_batch_fits
from keras_resvae.metrics import evaluate_vae, image_batches
from keras_resvae.precision import check_precision, precision_scope
from keras_resvae.run_folder import RunFolder
from keras_resvae.stall import STALL_COLUMNS, MeanImageStall
from keras_resvae.tensorboard_logs import EpochScalars
from keras_resvae.tensorflow_free import keras_without_tensorflow, set_random_seed
from keras_resvae.vae import FREE_BITS_MEANING, VAE

CONFIG = "config.json"
MODEL = "model.keras"
HISTORY = "history.csv"
METRICS = "metrics.json"
CHECKPOINTS = "checkpoints"
# Test images the end-of-run metrics use (the whole split of digits, MNIST, CIFAR-10).
EVAL_IMAGES = 10000
# Images per forward pass of the test-set metrics.
EVAL_BATCH_SIZE = 64
# What `fit_run(evaluation=...)` passes on to its end-of-run `evaluate_model`.
EVALUATION_OPTIONS = ("max_images", "iwae_samples", "features", "seed", "batch_size")
# Test images whose reconstructions are checked after each epoch for a stall.
STALL_IMAGES = 256
ARCH_OPTIONS = (
    "use_batch_norm",
    "skip",
    "width",
    "stem",
    "upsampling",
    "pooling",
    "num_scales",
    "groups_per_scale",
)

# What `fit_run` takes, with its defaults (the CLI's defaults come from here too).
FIT_DEFAULTS = dict(
    arch="basic",
    use_batch_norm=None,
    skip=False,
    latent_dim=32,
    width=1.0,
    stem=None,
    upsampling=None,
    pooling=None,
    num_scales=None,
    groups_per_scale=None,
    dataset="digits",
    data_dir=None,
    center=False,
    image_size=64,
    limit=None,
    epochs=10,
    batch_size=64,
    # 3e-4 trains every architecture; at 1e-3 a ResNet VAE without batch norm
    # saturated its output within ~10 steps (see README).
    lr=3e-4,
    beta=1.0,
    kl_warmup=0,
    # Training stability (off by default: every architecture trains without them
    # at the defaults; see README): free bits per latent dimension, the optimizer's
    # global clipping norm, and the gradient norm above which a step is skipped.
    free_bits=0.0,
    grad_clip=None,
    grad_skip=None,
    likelihood="gaussian_learned",
    precision="float32",
    jit_compile="auto",
    distribute=False,
    seed=0,
)


def _read_json(path):
    try:
        with open(path) as file:
            return json.load(file)
    except json.JSONDecodeError as error:
        raise ValueError(f"{path} is not valid JSON ({error}): the run is damaged.") from error


def load_data_for(config, batch_size=None):
    """The dataset pipelines a run's configuration describes."""
    return load_dataset(
        config["dataset"],
        batch_size=batch_size or config["batch_size"],
        center=config["center"],
        data_dir=config["data_dir"],
        image_size=config["image_size"],
        limit=config.get("limit"),
        seed=config["seed"],
    )


def resolve_fit_config(**options):
    """Fills defaults and validates a fit configuration (without loading data).

    Unknown option names are an error. Returns a JSON-serialisable dict.
    """
    unknown = sorted(set(options) - set(FIT_DEFAULTS))
    if unknown:
        raise ValueError(f"Unknown fit options {unknown}. Known: {sorted(FIT_DEFAULTS)}")
    config = {**FIT_DEFAULTS, **options}
    losses.check_likelihood(config["likelihood"])
    check_precision(config["precision"])
    config["jit_compile"] = check_jit_compile(config["jit_compile"])
    for name in ("epochs", "batch_size"):
        if int(config[name]) < 1:
            raise ValueError(f"`{name}` must be at least 1. Received: {config[name]!r}")
    if isinstance(config["seed"], bool) or not isinstance(config["seed"], int):
        raise ValueError(f"`seed` must be an integer. Received: {config['seed']!r}")
    if not 0 <= config["seed"] < 2**32:
        raise ValueError(f"`seed` must be between 0 and 2**32 - 1. Received: {config['seed']!r}")
    for name in ("lr", "beta", "width"):
        if not isinstance(config[name], (int, float)) or not math.isfinite(config[name]):
            raise ValueError(f"`{name}` must be a finite number. Received: {config[name]!r}")
    if not config["lr"] > 0:
        raise ValueError(f"`lr` must be positive. Received: {config['lr']!r}")
    if config["beta"] < 0:
        raise ValueError(f"`beta` must be at least 0. Received: {config['beta']!r}")
    _check_stability_options(config)
    config["backend"] = keras.backend.backend()
    config["keras_version"] = keras.__version__
    return config


def _check_stability_options(config):
    config["free_bits"] = inputs.check_non_negative(
        config["free_bits"], "free_bits", FREE_BITS_MEANING
    )
    for name in ("grad_clip", "grad_skip"):
        config[name] = inputs.check_positive_or_none(config[name], name, "a gradient norm")


def _arch_options(config):
    # .get: a run saved before an option existed has the option's default.
    return {name: config.get(name) for name in ARCH_OPTIONS}


def _build_model(config, image_shape):
    with precision_scope(config.get("precision", "float32")):
        vae = build_vae(
            config["arch"],
            image_shape,
            config["latent_dim"],
            **_arch_options(config),
            likelihood=config["likelihood"],
            output_activation="tanh" if config["center"] else "sigmoid",
            beta=config["beta"],
            kl_warmup_steps=config["kl_warmup"],
            free_bits=config.get("free_bits", 0.0),
            grad_skip_threshold=config.get("grad_skip"),
            seed=config["seed"],
        )
        # Inside the scope: a mixed_float16 model gets a LossScaleOptimizer here.
        vae.compile(
            optimizer=keras.optimizers.Adam(config["lr"], global_clipnorm=config.get("grad_clip")),
            jit_compile=config.get("jit_compile", "auto"),
        )
    return vae


def _trim_history(path, completed_epochs, columns=()):
    """Drops history rows of epochs that the checkpoint does not include.

    A history written before `columns` were logged gets them, empty, so the
    rows a resumed run appends line up with the header (Keras's `CSVLogger`
    writes `epoch`, then the logged keys sorted).
    """
    if not os.path.exists(path):
        return
    with open(path, newline="") as file:
        rows = list(csv.reader(file))
    if not rows:
        return
    header, body = rows[0], rows[1:]
    kept = [row for row in body if row and int(row[0]) < completed_epochs]
    missing = [column for column in columns if column not in header]
    if missing:
        new_header = ["epoch", *sorted(header[1:] + missing)]
        kept = [[dict(zip(header, row)).get(key, "") for key in new_header] for row in kept]
        header = new_header
    temporary = f"{path}.tmp"
    with open(temporary, "w", newline="") as file:
        csv.writer(file).writerows([header, *kept])
    os.replace(temporary, path)


def fit_run(out, resume=False, dry_run=False, verbose="auto", evaluation=None, **options):
    """Trains a VAE into the run directory `out`, or resumes an interrupted run.

    The folder is claimed first (see `RunFolder`): a folder that is not a run
    of ours, or one that another process is training into, is refused. A run
    that fails before its first checkpoint leaves the folder as it found it.
    Training that diverges stops with a `TrainingDiverged` error, and
    `model.keras` is then the last checkpoint that was still usable.

    Args:
        out: str. The run directory.
        resume: bool. Continue the run in `out` from its last completed epoch,
            with its saved configuration (only `epochs` may be changed).
        dry_run: bool. Resolve and return the configuration; train nothing.
        verbose: passed to `fit` (Keras's progress bar by default).
        evaluation: dict or None. Arguments of the end-of-run `evaluate_model`
            (`max_images`, `iwae_samples`, `features`, `seed`, `batch_size`);
            None uses its defaults.
        **options: see `FIT_DEFAULTS`.

    Returns:
        `(config, metrics)`: the resolved configuration and the final test metrics
        (None for a dry run).

    Example:
    >>> config, metrics = fit_run("runs/r18", arch="resnet18", use_batch_norm=False,
    ...                           dataset="digits", epochs=5)
    """
    evaluation = dict(evaluation or {})
    unknown = sorted(set(evaluation) - set(EVALUATION_OPTIONS))
    if unknown:
        raise ValueError(
            f"Unknown evaluation options {unknown}. Known: {sorted(EVALUATION_OPTIONS)}"
        )
    if dry_run:
        config = _resumed_config(out, options) if resume else _new_config(out, options)
        _seeded_data(config)  # checks the data and the architecture
        return config, None
    if _distributed(out, resume, options) and keras.backend.backend() == "torch":
        # One process per device (torchrun): process 0 claims and writes the
        # folder; the others train beside it and write nothing.
        torch_parallel.start()
        if not torch_parallel.is_writer():
            return _train_run(out, resume, verbose, options, evaluation)
    with RunFolder(out, marker=CONFIG) as folder:
        try:
            return _train_run(out, resume, verbose, options, evaluation)
        except BaseException:
            folder.discard_on_exit = _never_started(out, resume, folder)
            raise


def _distributed(out, resume, options):
    """Whether the run trains data-parallel: as asked, or as the resumed run did."""
    if "distribute" in options or not resume:
        return bool(options.get("distribute"))
    try:
        return bool(_read_json(os.path.join(out, CONFIG)).get("distribute"))
    except (OSError, ValueError):  # no run there: _resumed_config says so
        return False


def _never_started(out, resume, folder):
    """True when a failed run leaves nothing worth keeping: no epoch of it finished.

    A resumed run's folder held the run before this call, so it is kept unless
    this call created it (resuming a folder that did not exist).
    """
    try:
        if latest_checkpoint(os.path.join(out, CHECKPOINTS)) is not None:
            return False
    except ValueError:  # a damaged checkpoint state: keep everything for the user to see
        return False
    return folder.created or not resume


def _resumed_config(out, options):
    """The saved configuration of the run in `out`, with a new number of epochs."""
    config_path = os.path.join(out, CONFIG)
    if not os.path.exists(config_path):
        raise ValueError(f"Cannot resume: {out} holds no run ({CONFIG} is missing).")
    config = _read_json(config_path)
    changed = {k: v for k, v in options.items() if k != "epochs" and config.get(k) != v}
    if changed:
        raise ValueError(
            f"--resume continues the run with its saved configuration; only the number "
            f"of epochs may change. Remove these options: {sorted(changed)}"
        )
    config["epochs"] = options.get("epochs", config["epochs"])
    config["backend"] = keras.backend.backend()
    return config


def _new_config(out, options):
    # Under torchrun, process 0 may already have written this run's config.
    if torch_parallel.is_writer() and os.path.exists(os.path.join(out, CONFIG)):
        raise ValueError(
            f"{out} already holds a run. Pass --resume to continue it, or choose a new --out."
        )
    return resolve_fit_config(**options)


def _train_run(out, resume, verbose, options, evaluation):
    checkpoint = None
    if resume:
        config = _resumed_config(out, options)
        checkpoint = latest_checkpoint(os.path.join(out, CHECKPOINTS))
        done = checkpoint[1] if checkpoint else 0
        if config["epochs"] < done:
            raise ValueError(
                f"{out} has already trained {done} epochs, more than --epochs "
                f"{config['epochs']}; nothing was changed. Pass a larger --epochs to train on."
            )
    else:
        config = _new_config(out, options)

    data = _seeded_data(config)
    # Any read of an image file from here on names the file that cannot be decoded.
    # Nothing in a run on in-memory data needs TensorFlow off its backend.
    with data.reading_files(), keras_without_tensorflow():
        return _train(out, config, data, checkpoint, verbose, evaluation)


def _seeded_data(config):
    """Seeds everything from the run's seed, then loads its data and checks its architecture."""
    # Before the data: TensorFlow's global seed also shapes the pipeline's
    # shuffling, so a run must not depend on what ran before it in the process.
    # Then the initial weights, noise and order all follow from the seed.
    set_random_seed(config["seed"])
    data = load_data_for(config)
    resolve_architecture(
        config["arch"], data.image_shape, config["latent_dim"], **_arch_options(config)
    )
    return data


def _train(out, config, data, checkpoint, verbose, evaluation):
    """Builds or restores the model, trains it, and writes the run's files."""
    with data_parallel(config.get("distribute", False), config["batch_size"]) as replicas:
        if replicas > 1 and torch_parallel.is_writer():
            print(f"Data-parallel over {replicas} devices: {', '.join(map(str, local_devices()))}")
        initial_epoch = 0
        if checkpoint:
            # Under the run's precision, as a new run is built (the VAE's own policy).
            with precision_scope(config.get("precision", "float32")):
                vae = load_model(checkpoint[0])
            initial_epoch = checkpoint[1]
        else:
            vae = _build_model(config, data.image_shape)
            vae.initialize_output_bias(data.first_train_images(1024))
        test_sample = data.first_test_images(STALL_IMAGES)
        preview = test_sample[:16]
        writer = torch_parallel.is_writer()
        if writer:
            write_json_atomically(os.path.join(out, CONFIG), config)
            _trim_history(os.path.join(out, HISTORY), initial_epoch, STALL_COLUMNS)
        callbacks = _fit_callbacks(out, config, test_sample, preview, writer)
        train, validation = data.train, data.test
        if torch_parallel.active():
            # One process per device: each trains on its share of every global
            # batch, and validates on the whole test split (the same numbers in
            # every process, so they all stop, or not, alike).
            train = shard_batches(train)
        elif replicas > 1:
            # Every batch must split evenly over the devices, so validation leaves
            # out fewer than `replicas` images; the final evaluation below (outside
            # the scope) still sees the whole test split.
            validation = data.test_split_over(replicas)
        if isinstance(train, ArrayBatches):
            # A resumed run reads the batches an uninterrupted one would have.
            train.start_epoch(initial_epoch)
        if initial_epoch < config["epochs"]:
            try:
                vae.fit(
                    train,
                    validation_data=validation,
                    epochs=config["epochs"],
                    initial_epoch=initial_epoch,
                    shuffle=False,  # the pipeline shuffles itself
                    callbacks=callbacks,
                    verbose=verbose if writer else 0,
                )
            except TrainingDiverged as error:
                if writer:
                    _keep_last_good_checkpoint(out, error)
                raise
    if not writer:  # process 0 saves, evaluates and draws the figures
        return config, None
    save_model_atomically(vae, os.path.join(out, MODEL))
    metrics = evaluate_model(vae, data, verbose=verbose, **evaluation)
    write_json_atomically(os.path.join(out, METRICS), metrics)
    save_png(os.path.join(out, "reconstructions.png"), reconstruction_grid(vae, preview))
    save_png(os.path.join(out, "samples.png"), samples_grid(vae, seed=config["seed"]))
    return config, metrics


def _fit_callbacks(out, config, test_sample, preview, writer):
    """`fit`'s callbacks; a process that writes no files (torchrun's others) gets the
    ones that only judge the run, so it stops when process 0 does."""
    # The checkpoint comes last: when it names epoch N, the history already has
    # row N, and a resume trims any rows past the checkpoint. The guard comes
    # before the images and the checkpoint, so a diverged epoch saves neither.
    judges = [
        EpochTimer(),
        MeanImageStall(test_sample, advice=_stall_advice(config)),
        DivergenceGuard(advice=_divergence_advice(config)),
    ]
    if not writer:
        judges[1].warned = True  # process 0 prints the stall message, once
        return judges
    return [
        judges[0],
        judges[1],
        keras.callbacks.CSVLogger(os.path.join(out, HISTORY), append=True),
        EpochScalars(os.path.join(out, "logs")),
        judges[2],
        ImageGrids(os.path.join(out, "images"), preview, seed=config["seed"]),
        AtomicCheckpoint(os.path.join(out, CHECKPOINTS)),
    ]


def _stall_advice(config):
    advice = f"another --seed, a lower --lr (this run: {config['lr']:g})"
    if not config.get("kl_warmup"):
        advice += ", --kl-warmup 1000"
    if config.get("use_batch_norm") is False:
        advice += ", --bn"
    return advice


def _divergence_advice(config):
    advice = f"lower --lr (this run: {config['lr']:g})"
    if config.get("precision") == "mixed_float16":
        advice += ", or train with --precision mixed_bfloat16 or float32"
    return advice + ", and start a new run"


def _keep_last_good_checkpoint(out, error):
    """Makes the newest checkpoint (every one written is usable) the run's model."""
    checkpoint = latest_checkpoint(os.path.join(out, CHECKPOINTS))
    if checkpoint is None:
        error.args = (f"{error.args[0]} Nothing was saved: no epoch ended with a usable model.",)
        return
    path, epoch = checkpoint
    with atomic_path(os.path.join(out, MODEL)) as temporary:
        shutil.copyfile(path, temporary)
    error.args = (
        f"{error.args[0]} {os.path.join(out, MODEL)} is the model after epoch {epoch}, the "
        "last usable one.",
    )


def load_model(path):
    """Loads a keras-resvae `.keras` file with a clear error when it is missing or corrupt."""
    if not os.path.exists(path):
        raise ValueError(f"{path}: no such model file.")
    if not zipfile.is_zipfile(path):
        raise ValueError(
            f"{path}: cannot load this model file: it is not a .keras archive (a zip file); "
            "it may be truncated or another kind of file."
        )
    try:
        model = keras.models.load_model(path)
    except Exception as error:
        raise ValueError(
            f"{path}: cannot load this model file ({type(error).__name__}: {error}). "
            "It may be truncated or not a keras-resvae model."
        ) from error
    if not isinstance(model, VAE):
        raise ValueError(
            f"{path} holds a {type(model).__name__}, not a keras-resvae VAE: load it with "
            "keras.models.load_model."
        )
    return model


def load_vae(path):
    """Loads a trained VAE from a `.keras` file or a run directory, on the running backend.

    Unlike a bare `keras.models.load_model`, this needs nothing imported first
    (Keras finds the `VAE` class only once `keras_resvae` is imported), takes
    a run directory (its `model.keras`, else its latest checkpoint), and says
    clearly what is wrong with a missing or damaged file. The model comes back
    compiled, with its optimizer state, ready to `fit` further on any backend.

    Args:
        path: str. A `.keras` file, or a run directory of `resvae fit`.

    Returns:
        A `keras_resvae.VAE`.

    Example:
    >>> vae = keras_resvae.load_vae("runs/quickstart")
    >>> vae.fit(x_train, epochs=2)  # continues with the saved optimizer state
    """
    return load_model(resolve_model_path(path))


def resolve_model_path(path):
    """The `.keras` file that a run directory or model path stands for.

    For a run directory: its final `model.keras` if training finished, else the
    latest checkpoint. Raises a ValueError that names the problem otherwise.

    Example:
    >>> resolve_model_path("runs/quickstart")
    'runs/quickstart/model.keras'
    """
    if os.path.isdir(path):
        if not os.path.exists(os.path.join(path, CONFIG)):
            raise ValueError(f"{path} is not a run directory ({CONFIG} is missing).")
        model_path = os.path.join(path, MODEL)
        if os.path.exists(model_path):
            return model_path
        checkpoint = latest_checkpoint(os.path.join(path, CHECKPOINTS))
        if checkpoint is None:
            raise ValueError(f"{path} holds no trained model or checkpoint yet.")
        return checkpoint[0]
    if path.endswith(".keras"):
        if not os.path.exists(path):
            raise ValueError(f"{path}: no such model file.")
        return path
    if not os.path.exists(path):
        raise ValueError(f"{path}: no such run directory or model file.")
    raise ValueError(f"{path}: expected a run directory or a .keras model file.")


def load_run(path):
    """A trained model and its run configuration from a run directory or `.keras` file.

    Returns `(model, config)`; `config` is None for a bare `.keras` file.

    Example:
    >>> vae, config = load_run("runs/quickstart")
    """
    model = load_model(resolve_model_path(path))
    config = _read_json(os.path.join(path, CONFIG)) if os.path.isdir(path) else None
    return model, config


def test_images(data, max_images=None):
    """The test split as one NumPy array, in its fixed order, at most `max_images`."""
    return np.concatenate(list(image_batches(data.test, EVAL_BATCH_SIZE, max_images)))


def evaluate_model(
    vae,
    data,
    max_images=EVAL_IMAGES,
    iwae_samples=0,
    features=None,
    seed=0,
    batch_size=EVAL_BATCH_SIZE,
    verbose="auto",
):
    """Test-set metrics: the training objective, then `keras_resvae.metrics.evaluate_vae`.

    Args:
        vae: a trained VAE.
        data: `DatasetSplits` whose test split matches the model.
        max_images: int or None. How many test images the metrics use.
        iwae_samples: int. K for the importance-weighted NLL (0 skips it).
        features: an `InceptionFeatures` for FID/KID, or None.
        seed: int.
        batch_size: int. Images per forward pass of the metrics; a batch
            that cannot fit in the memory available is refused before any work.
        verbose: `"auto"`, 0 or 1: progress bars with an ETA.

    Returns:
        A dict: `loss`, `reconstruction_loss`, `kl_loss` (the objective on the
        whole test split, nats per image, as in training), then the deterministic
        metrics of `evaluate_vae` (`mse`, `psnr`, `ssim`, `blur`,
        `negative_elbo`, `bits_per_dim_8bit`, `active_units`, ...).

    Example:
    >>> metrics = evaluate_model(vae, load_dataset("digits"), iwae_samples=16)
    """
    check_batch_fits(vae, batch_size)
    results = vae.evaluate(data.test, verbose=verbose, return_dict=True)
    metrics = {name: float(results[name]) for name in ("loss", "reconstruction_loss", "kl_loss")}
    if max_images is not None and data.num_test is not None:
        max_images = min(max_images, data.num_test)
    # Streamed from the pipeline: the test split is never held whole in memory.
    metrics.update(
        evaluate_vae(
            vae,
            data.test,
            iwae_samples,
            features,
            batch_size,
            seed,
            verbose=verbose,
            max_images=max_images,
        )
    )
    return metrics
