"""`resvae`: train, inspect and use keras-resvae models from the shell.

Keras reads KERAS_BACKEND once, at import, and importing this module imports
keras_resvae and so Keras. `keras_resvae.startup` therefore reads `--backend`
from the command line before that import; the option's callback below only
checks that it took effect.
"""

import errno
import functools
import json
import math
import os
import shlex
import sys

import click
import numpy as np

# Importing keras_resvae.cli has imported keras_resvae (and Keras) already.
from keras_resvae.architectures import ARCHITECTURES
from keras_resvae.architectures.resnet import POOLING, STEMS, UPSAMPLING
from keras_resvae.compare import COMPARE_DEFAULTS, DEFAULT_VARIANTS
from keras_resvae.compilation import JIT_COMPILE_CHOICES
from keras_resvae.losses import LIKELIHOODS
from keras_resvae.memory import first_line, is_out_of_memory
from keras_resvae.precision import PRECISIONS
from keras_resvae.runs import EVAL_BATCH_SIZE, EVAL_IMAGES, FIT_DEFAULTS

BACKENDS = ("tensorflow", "jax", "torch")


def _set_backend(ctx, param, value):
    if value is None:
        return None
    os.environ["KERAS_BACKEND"] = value
    import keras  # importing keras_resvae.cli has imported it already

    if keras.backend.backend() != value:
        # Keras started on another backend (the command line was not read
        # before it was imported, e.g. under `python -m`): start again with it set.
        if ctx.find_root().info_name == "resvae" and not os.environ.get("_RESVAE_REEXEC"):
            os.environ["_RESVAE_REEXEC"] = "1"
            sys.stdout.flush()
            os.execv(sys.executable, [sys.executable, "-m", "keras_resvae.cli", *sys.argv[1:]])
        raise click.BadParameter(
            f"Keras is already running on {keras.backend.backend()!r} in this process; "
            f"set KERAS_BACKEND={value} before starting it."
        )
    return value


backend_option = click.option(
    "--backend",
    type=click.Choice(BACKENDS),
    callback=_set_backend,
    is_eager=True,
    expose_value=False,
    help="Keras backend (default: $KERAS_BACKEND, else tensorflow).",
)


class ResvaeGroup(click.Group):
    """The `resvae` group: every error, usage errors included, is one line and exit code 1.

    Click prints a usage error in four lines (usage, a hint, a blank line, the
    error) and exits with 2; the README promises one `Error:` line and 1 for
    every user error, whether click or the library finds it.
    """

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        try:
            result = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except click.exceptions.NoArgsIsHelpError as error:
            click.echo(error.ctx.get_help())  # `resvae` alone: its help, as `resvae --help`
            sys.exit(0)
        except click.UsageError as error:
            command = error.ctx.command_path if error.ctx is not None else "resvae"
            message = error.format_message().rstrip(".")
            click.echo(f"Error: {message} (see '{command} --help').", err=True)
            sys.exit(1)
        except click.ClickException as error:
            click.echo(f"Error: {error.format_message()}", err=True)
            sys.exit(1)
        except click.Abort:
            click.echo("Aborted!", err=True)
            sys.exit(1)
        sys.exit(result if isinstance(result, int) else 0)


def describe_os_error(error):
    """One line for a failed file operation: the path, the cause and what to do."""
    if error.filename is None:
        return str(error)  # raised with a message of its own
    path = error.filename
    if error.filename2:
        path = f"{path} -> {error.filename2}"
    cause = error.strerror or str(error)
    advice = {
        errno.ENOSPC: "free some space, then run the same command again (a fit: with --resume)",
        errno.EROFS: "choose a folder on a writable file system",
        errno.EACCES: "choose a folder you may write to, or change its permissions",
        errno.EEXIST: "choose another path",
        errno.ENOTDIR: "a part of the path is a file, not a folder; choose another path",
        errno.EISDIR: "the path is a folder; name a file",
    }.get(error.errno)
    return f"{path}: {cause}" + (f"; {advice}." if advice else ".")


def user_errors(command):
    """Turns the library's errors about bad input into one line and exit code 1."""

    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        from keras_resvae.callbacks import TrainingDiverged
        from keras_resvae.child_run import ChildRunFailed
        from keras_resvae.datasets import DatasetUnavailableError

        try:
            return command(*args, **kwargs)
        except (TrainingDiverged, ChildRunFailed) as error:
            click.echo()  # ends the progress bar's line
            raise click.ClickException(str(error)) from None
        except (ValueError, DatasetUnavailableError) as error:
            raise click.ClickException(str(error)) from None
        except OSError as error:
            # A missing file, a full disk, a read-only file system: not a bug.
            raise click.ClickException(describe_os_error(error)) from None
        except Exception as error:
            if not is_out_of_memory(error):
                raise
            click.echo()  # ends a progress bar's line
            raise click.ClickException(
                f"Out of memory ({first_line(error)}): lower --batch-size (evaluate and "
                "compare: or --iwae-samples; fit: or --width) and run again; an "
                "interrupted fit continues with --resume."
            ) from None

    return wrapper


class FiniteFloatRange(click.FloatRange):
    """A `click.FloatRange` that also refuses NaN and infinities.

    NaN passes every comparison of a plain range, so `--lr nan` or `--beta nan`
    would reach training and silently produce a model of NaNs.
    """

    def convert(self, value, param, ctx):
        value = super().convert(value, param, ctx)
        if not math.isfinite(value):
            self.fail(f"{value!r} is not a finite number.", param, ctx)
        return value


# Options that `fit` and `compare` share, declared once.
dataset_option = click.option(
    "--dataset",
    default=FIT_DEFAULTS["dataset"],
    show_default=True,
    help="digits or photos (built in, offline), mnist, fashion_mnist, cifar10, celeb_a, "
    "imagenet_resized/32x32, imagenet_resized/64x64, a .npz file or an image folder.",
)
data_dir_option = click.option(
    "--data-dir", default=None, help="tfds data directory prepared elsewhere."
)
image_size_option = click.option(
    "--image-size",
    type=click.IntRange(min=8),
    default=FIT_DEFAULTS["image_size"],
    show_default=True,
    help="Image folders: resize to this square size.",
)
limit_option = click.option(
    "--limit",
    type=click.IntRange(min=1),
    default=None,
    help="Use at most this many training images.",
)
batch_size_option = click.option(
    "--batch-size",
    type=click.IntRange(min=1),
    default=FIT_DEFAULTS["batch_size"],
    show_default=True,
)
lr_option = click.option(
    "--lr",
    type=FiniteFloatRange(min=0, min_open=True),
    default=FIT_DEFAULTS["lr"],
    show_default=True,
)
likelihood_option = click.option(
    "--likelihood",
    type=click.Choice(LIKELIHOODS),
    default=FIT_DEFAULTS["likelihood"],
    show_default=True,
)
num_scales_option = click.option(
    "--num-scales",
    type=click.IntRange(min=1),
    default=None,
    help="hvae: resolutions with latent groups, one per halving of the image side. [default: 3]",
)
groups_per_scale_option = click.option(
    "--groups-per-scale",
    type=click.IntRange(min=1),
    default=None,
    help="hvae: latent groups at each of those resolutions; each group's prior sees the "
    "groups drawn before it, so prior samples get more structure. [default: 1]",
)
# The seed seeds NumPy too, which takes 0 to 2**32 - 1.
SEED_RANGE = click.IntRange(0, 2**32 - 1)
seed_option = click.option(
    "--seed", type=SEED_RANGE, default=FIT_DEFAULTS["seed"], show_default=True
)


def epochs_option(default):
    return click.option("--epochs", type=click.IntRange(min=1), default=default, show_default=True)


def width_option(default, help):
    return click.option(
        "--width",
        type=FiniteFloatRange(min=0, min_open=True),
        default=default,
        show_default=True,
        help=help,
    )


def latent_dim_option(default):
    return click.option(
        "--latent-dim", type=click.IntRange(min=1), default=default, show_default=True
    )


@click.group(cls=ResvaeGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="keras-resvae")
def main():
    """Variational autoencoders with basic and ResNet networks (Keras 3)."""


@main.command()
@click.option(
    "--arch",
    type=click.Choice(sorted(ARCHITECTURES)),
    default=FIT_DEFAULTS["arch"],
    show_default=True,
)
@click.option(
    "--bn/--no-bn",
    "use_batch_norm",
    default=None,
    help="Batch norm on/off. [default: off for basic, on for ResNets]",
)
@click.option(
    "--skip", is_flag=True, help="Skip connections from every encoder stage into the latent head."
)
@latent_dim_option(FIT_DEFAULTS["latent_dim"])
@width_option(FIT_DEFAULTS["width"], "Multiplier on every filter count.")
@click.option(
    "--stem",
    type=click.Choice(STEMS),
    default=None,
    help="ResNet stem. [default: cifar up to 64 px, else imagenet]",
)
@click.option(
    "--upsampling",
    type=click.Choice(UPSAMPLING),
    default=None,
    help="ResNet decoder upsampling. [default: nearest]",
)
@click.option(
    "--pooling",
    type=click.Choice(POOLING),
    default=None,
    help="How the ResNet encoder's last feature map enters the latent head: averaged "
    "(the study's) or flattened, keeping every position. [default: average]",
)
@num_scales_option
@groups_per_scale_option
@dataset_option
@data_dir_option
@click.option(
    "--center", is_flag=True, help="Pixels in [-1, 1] with a tanh output (the study's finding)."
)
@image_size_option
@limit_option
@epochs_option(FIT_DEFAULTS["epochs"])
@batch_size_option
@lr_option
@click.option(
    "--beta",
    type=FiniteFloatRange(min=0),
    default=FIT_DEFAULTS["beta"],
    show_default=True,
    help="KL weight.",
)
@click.option(
    "--kl-warmup",
    type=click.IntRange(min=0),
    default=FIT_DEFAULTS["kl_warmup"],
    show_default=True,
    help="Steps of linear KL warm-up.",
)
@click.option(
    "--free-bits",
    type=FiniteFloatRange(min=0),
    default=FIT_DEFAULTS["free_bits"],
    show_default=True,
    help="Nats per latent dimension the objective charges each latent group at least "
    "(each unit; each resolution of hvae), against collapse onto the prior. 0: off.",
)
@click.option(
    "--grad-clip",
    type=FiniteFloatRange(min=0, min_open=True),
    default=FIT_DEFAULTS["grad_clip"],
    help="Clip the gradients' global norm to this (the optimizer's global_clipnorm). "
    "[default: off]",
)
@click.option(
    "--grad-skip",
    type=FiniteFloatRange(min=0, min_open=True),
    default=FIT_DEFAULTS["grad_skip"],
    help="Skip every step whose gradient norm is above this, as VDVAE does; skipped steps "
    "are counted in history.csv's skipped_steps. [default: off]",
)
@likelihood_option
@click.option(
    "--precision",
    type=click.Choice(PRECISIONS),
    default=FIT_DEFAULTS["precision"],
    show_default=True,
    help="Mixed precision computes in 16 bits with float32 weights, latent head and loss.",
)
@click.option(
    "--jit-compile",
    type=click.Choice(list(JIT_COMPILE_CHOICES)),
    default=FIT_DEFAULTS["jit_compile"],
    show_default=True,
    callback=lambda ctx, param, value: JIT_COMPILE_CHOICES[value],
    help="Compile the training step: auto = the fastest measured per backend (JAX: XLA; "
    "TensorFlow: XLA on GPU, a graph on CPU; PyTorch: eager); on = XLA / torch.compile.",
)
@click.option(
    "--distribute",
    is_flag=True,
    help="Data-parallel over every local GPU, else over one CPU device per core on JAX "
    "(JAX: keras.distribution.DataParallel; TensorFlow: MirroredStrategy; PyTorch: one "
    "process per device, started with "
    "'torchrun --standalone --nproc-per-node N --no-python resvae fit --distribute ...'); "
    "--batch-size is the global batch.",
)
@seed_option
@backend_option
@click.option("--out", default="runs/latest", show_default=True, help="Run directory.")
@click.option(
    "--resume", is_flag=True, help="Continue the run in --out from its last completed epoch."
)
@click.option("--dry-run", is_flag=True, help="Print the resolved configuration and exit.")
@user_errors
def fit(out, resume, dry_run, **options):
    """Train a VAE into a run directory.

    \b
    Examples:
      resvae fit --arch resnet18 --no-bn --dataset cifar10
      resvae fit --arch basic --epochs 5 --out runs/basic
      resvae fit --out runs/basic --resume          # after an interruption
    """
    from keras_resvae.runs import fit_run

    if resume:
        # Only options given on the command line count as changes to the saved run.
        ctx = click.get_current_context()
        options = {
            name: value
            for name, value in options.items()
            if ctx.get_parameter_source(name) == click.core.ParameterSource.COMMANDLINE
        }
    config, metrics = fit_run(out, resume=resume, dry_run=dry_run, **options)
    if dry_run:
        click.echo(json.dumps(config, indent=2, sort_keys=True))
        return
    if metrics is None:  # one of torchrun's other processes: process 0 reports
        return
    click.echo(f"\nRun directory: {out}")
    for name in (
        "model.keras",
        "metrics.json",
        "history.csv",
        "reconstructions.png",
        "samples.png",
    ):
        click.echo(f"  {os.path.join(out, name)}")
    click.echo(_format_metrics(metrics))


def _format_metrics(metrics):
    return "Test metrics: " + ", ".join(
        f"{name}={value:.4g}" for name, value in metrics.items() if isinstance(value, float)
    )


def _inception_features(fid, inception_weights):
    """Inception-v3 features for FID/KID, or None (with a note) when asked for none or offline."""
    if not (fid or inception_weights):
        return None
    from keras_resvae.metrics import FeatureWeightsUnavailable, InceptionFeatures

    try:
        return InceptionFeatures(weights=inception_weights)
    except FeatureWeightsUnavailable as error:
        if inception_weights:
            raise ValueError(str(error)) from None
        click.echo(f"FID/KID skipped: {error}", err=True)
        return None


def metric_options(command):
    """The options of `evaluate` and `compare` that choose the metrics."""
    options = [
        click.option(
            "--iwae-samples",
            type=click.IntRange(min=0),
            default=16,
            show_default=True,
            help="K for the importance-weighted NLL (0 skips it).",
        ),
        click.option(
            "--fid/--no-fid",
            default=False,
            show_default=True,
            help="FID/KID on Inception-v3 features (Keras's weights download, cached).",
        ),
        click.option(
            "--inception-weights",
            type=click.Path(exists=True, dir_okay=False),
            default=None,
            help="Local Inception-v3 notop weights file for FID/KID (implies --fid).",
        ),
    ]
    for option in reversed(options):
        command = option(command)
    return command


@main.command()
@click.argument("run_or_model")
@click.option("--dataset", default=None, help="Dataset to evaluate on. [default: the run's]")
@click.option("--data-dir", default=None)
@click.option(
    "--batch-size",
    type=click.IntRange(min=1),
    default=None,
    help=f"Images per forward pass. [default: {EVAL_BATCH_SIZE}]",
)
@click.option(
    "--max-images",
    type=click.IntRange(min=2),
    default=EVAL_IMAGES,
    show_default=True,
    help="Test images the metrics use.",
)
@metric_options
@backend_option
@user_errors
def evaluate(
    run_or_model, dataset, data_dir, batch_size, max_images, iwae_samples, fid, inception_weights
):
    """Print and save test-set metrics of a run or a .keras model.

    Reconstruction (MSE, PSNR, SSIM on the [0, 1] scale), blur (high-frequency
    ratio), -ELBO and IWAE NLL (nats, bits/dim), active units, optional FID/KID.

    \b
    Example:
      resvae evaluate runs/latest --iwae-samples 64
    """
    from keras_resvae.callbacks import write_json_atomically
    from keras_resvae.runs import evaluate_model, load_data_for, load_run

    model, config = load_run(run_or_model)
    config = _data_config(model, config, dataset, data_dir)
    data = load_data_for(config, batch_size=batch_size)
    features = _inception_features(fid, inception_weights)
    metrics = evaluate_model(
        model, data, max_images, iwae_samples, features, batch_size=batch_size or EVAL_BATCH_SIZE
    )
    metrics["dataset"] = config["dataset"]
    folder = run_or_model if os.path.isdir(run_or_model) else os.path.dirname(run_or_model)
    path = os.path.join(folder or ".", "evaluation.json")
    write_json_atomically(path, metrics)
    click.echo(_format_metrics(metrics))
    click.echo(f"Saved {path}")


def _data_config(model, config, dataset, data_dir):
    """The dataset settings to use: the run's, overridden by the command line."""
    if config is None:
        if dataset is None:
            raise ValueError("A bare .keras file needs --dataset.")
        config = dict(batch_size=64, image_size=model.image_shape[0], seed=0, limit=None)
    config = dict(config)
    config["center"] = model.output_activation == "tanh"
    config["limit"] = None
    if dataset is not None:
        config["dataset"] = dataset
        config["data_dir"] = data_dir
    elif data_dir is not None:
        config["data_dir"] = data_dir
    return config


def _output_option(default):
    return click.option(
        "--out", "out_path", default=default, show_default=True, help="PNG file to write."
    )


@main.command()
@click.argument("run_or_model")
@click.option("-n", "--num", type=click.IntRange(min=1), default=64, show_default=True)
@click.option("--seed", type=SEED_RANGE, default=0, show_default=True)
@click.option(
    "--temperature",
    type=FiniteFloatRange(min=0),
    default=1.0,
    show_default=True,
    help="Scale on the prior's spread: below 1 gives more typical, less varied images; "
    "0 decodes the prior's mean.",
)
@_output_option("samples.png")
@backend_option
@user_errors
def sample(run_or_model, num, seed, temperature, out_path):
    """Write a PNG grid of samples from the prior.

    \b
    Examples:
      resvae sample runs/latest -n 64 --out samples.png
      resvae sample runs/hvae --temperature 0.7
    """
    from keras_resvae.callbacks import samples_grid
    from keras_resvae.images import save_png
    from keras_resvae.runs import load_run

    model, _ = load_run(run_or_model)
    save_png(out_path, samples_grid(model, n=num, seed=seed, temperature=temperature))
    click.echo(f"Saved {num} samples to {out_path}")


@main.command()
@click.option("--out", default="reports/compare", show_default=True, help="Report directory.")
@click.option(
    "--variants",
    default=",".join(DEFAULT_VARIANTS),
    show_default=True,
    help="Comma-separated ARCH[-bn|-nobn][-skip][-flat][-tanh] names.",
)
@click.option("--center", is_flag=True, help="Add a centred-data/tanh twin of every variant.")
@dataset_option
@data_dir_option
@image_size_option
@limit_option
@epochs_option(COMPARE_DEFAULTS["epochs"])
@width_option(
    COMPARE_DEFAULTS["width"],
    "Multiplier on the ResNets' and hvae's filters (basic keeps the study's 32/64).",
)
@latent_dim_option(COMPARE_DEFAULTS["latent_dim"])
@num_scales_option
@groups_per_scale_option
@batch_size_option
@lr_option
@likelihood_option
@seed_option
@click.option(
    "--repeats",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="Train each variant this many times, with seeds --seed, --seed+1, ...; "
    "the table shows mean ± standard deviation (figures: the first seed).",
)
@click.option(
    "--eval-images",
    type=click.IntRange(min=2),
    default=1000,
    show_default=True,
    help="Test images for the metrics and figures.",
)
@click.option(
    "--in-process",
    is_flag=True,
    help="Train every run in this process instead of a fresh process per run (starts "
    "faster; on TensorFlow memory then grows by about 0.2 GB per run).",
)
@metric_options
@backend_option
@user_errors
def compare(
    out,
    variants,
    center,
    repeats,
    eval_images,
    in_process,
    iwae_samples,
    fid,
    inception_weights,
    **options,
):
    """Train several variants on the same budget and write a comparison report.

    The report directory gets results.md, results.csv, reconstructions.png,
    samples.png, curves.png, spectra.png, and one run directory per variant
    under runs/. Run the same command again to resume an interrupted report.

    \b
    Examples:
      resvae compare --out reports/study
      resvae compare --variants basic,resnet18-nobn --center --epochs 5 --limit 1000
      resvae compare --dataset cifar10 --width 1 --latent-dim 128 --epochs 30
      resvae compare --variants resnet18-bn,resnet18-nobn --center --repeats 3
    """
    from keras_resvae.compare import run_comparison

    features = _inception_features(fid, inception_weights)
    rows = run_comparison(
        command=_typed_command(),
        out=out,
        variants=variants.split(","),
        center=center,
        repeats=repeats,
        eval_images=eval_images,
        iwae_samples=iwae_samples,
        features=features,
        log=click.echo,
        in_process=in_process,
        **options,
    )
    from keras_resvae.report import results_markdown

    click.echo("\n" + results_markdown(rows).split("\n\n")[1])
    click.echo(f"\nReport: {os.path.join(out, 'results.md')} and figures in {out}")


def _typed_command():
    """The current command as typed: `resvae compare` and the options given on the command line."""
    ctx = click.get_current_context()
    words = ["resvae", ctx.info_name]
    for param in ctx.command.params:
        source = ctx.get_parameter_source(param.name)
        if source != click.core.ParameterSource.COMMANDLINE or not param.opts:
            continue
        # --backend is not passed to the command; Keras holds its value.
        value = ctx.params.get(param.name, os.environ.get("KERAS_BACKEND"))
        if isinstance(param, click.Option) and param.is_flag:
            words.append(param.opts[0] if value else param.secondary_opts[0])
        else:
            words += [param.opts[0], str(value)]
    return shlex.join(words)


@main.command("export")
@click.argument("run_or_model")
@click.option("--out", required=True, help="Folder to write (replaces an earlier export).")
@click.option(
    "--format",
    "export_format",
    default="saved_model",
    show_default=True,
    metavar="saved_model|onnx",
    help="SavedModel signatures, or one ONNX file per endpoint.",
)
@backend_option
@user_errors
def export(run_or_model, out, export_format):
    """Export a run or .keras model for inference without keras-resvae.

    Endpoints: encode (images -> z_mean, z_log_var), decode (z -> images),
    reconstruct (images -> reconstructions, also serving_default) and sample
    (standard normal noise -> samples). Works for models trained on any backend.

    \b
    Examples:
      resvae export runs/quickstart --out exports/quickstart
      resvae export runs/quickstart --out exports/quickstart-onnx --format onnx
    """
    from keras_resvae.export import export_vae

    metadata = export_vae(run_or_model, out, export_format)
    low, high = metadata["pixel_range"]
    click.echo(
        f"Exported {', '.join(metadata['endpoints'])} ({export_format}) to {out}: images "
        f"{metadata['image_shape']} in [{low:g}, {high:g}], latent size {metadata['latent_dim']}."
    )


def _test_images(model, config, dataset, data_dir, count):
    from keras_resvae.runs import load_data_for

    data = load_data_for(_data_config(model, config, dataset, data_dir), batch_size=count)
    return np.asarray(next(iter(data.test)))[:count]


@main.command()
@click.argument("run_or_model")
@click.option("-n", "--num", type=click.IntRange(min=1), default=16, show_default=True)
@click.option("--dataset", default=None, help="[default: the run's]")
@click.option("--data-dir", default=None)
@_output_option("reconstructions.png")
@backend_option
@user_errors
def reconstruct(run_or_model, num, dataset, data_dir, out_path):
    """Write test images and their reconstructions (alternating rows) as a PNG.

    \b
    Example:
      resvae reconstruct runs/latest -n 16
    """
    from keras_resvae.callbacks import reconstruction_grid
    from keras_resvae.images import save_png
    from keras_resvae.runs import load_run

    model, config = load_run(run_or_model)
    images = _test_images(model, config, dataset, data_dir, num)
    save_png(out_path, reconstruction_grid(model, images))
    click.echo(f"Saved {len(images)} reconstructions to {out_path}")


@main.command()
@click.argument("run_or_model")
@click.option("--pairs", type=click.IntRange(min=1), default=4, show_default=True)
@click.option("--steps", type=click.IntRange(min=2), default=10, show_default=True)
@click.option("--dataset", default=None, help="[default: the run's]")
@click.option("--data-dir", default=None)
@_output_option("interpolations.png")
@backend_option
@user_errors
def interpolate(run_or_model, pairs, steps, dataset, data_dir, out_path):
    """Write latent interpolations between pairs of test images (one row per pair).

    \b
    Example:
      resvae interpolate runs/latest --pairs 4 --steps 10
    """
    import keras

    from keras_resvae.callbacks import to_unit_numpy
    from keras_resvae.images import image_grid, save_png
    from keras_resvae.runs import load_run

    model, config = load_run(run_or_model)
    images = _test_images(model, config, dataset, data_dir, 2 * pairs)
    if len(images) < 2 * pairs:
        raise ValueError(f"The test set has fewer than {2 * pairs} images.")
    frames = model.interpolate(images[:pairs], images[pairs : 2 * pairs], steps=steps)
    frames = keras.ops.reshape(frames, (-1, *model.image_shape))
    save_png(out_path, image_grid(to_unit_numpy(frames, model.output_activation), columns=steps))
    click.echo(f"Saved {pairs} interpolations of {steps} steps to {out_path}")


@main.command()
@click.option("--image-shape", default="32,32,3", show_default=True, help="H,W,C of the images.")
@click.option("--latent-dim", default=128, show_default=True, type=click.IntRange(min=1))
@backend_option
@user_errors
def archs(image_shape, latent_dim):
    """List the architectures with their parameter counts.

    \b
    Example:
      resvae archs --image-shape 28,28,1 --latent-dim 32
    """
    from keras_resvae.architectures.registry import ARCHITECTURES, build_networks

    try:
        shape = tuple(int(s) for s in image_shape.split(","))
    except ValueError:
        raise click.BadParameter(f"expected H,W,C integers, got {image_shape!r}") from None
    click.echo(f"{'arch':<10} {'bn':<4} {'encoder':>12} {'decoder':>12}  summary")
    for name, arch in ARCHITECTURES.items():
        for use_batch_norm in (True, False):
            encoder, decoder, _ = build_networks(
                name, shape, latent_dim, use_batch_norm=use_batch_norm
            )
            click.echo(
                f"{name:<10} {'on' if use_batch_norm else 'off':<4} "
                f"{encoder.count_params():>12,} {decoder.count_params():>12,}  {arch.summary}"
            )


if __name__ == "__main__":
    main()
