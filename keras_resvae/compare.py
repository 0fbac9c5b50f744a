"""`resvae compare`: train several VAE variants the same way and compare them.

A variant is named `ARCH[-bn|-nobn][-skip][-flat][-tanh]`: `resnet18-nobn-skip`
is a ResNet-18 VAE without batch norm with skip connections in the encoder;
`-flat` keeps the encoder's last feature map's positions (`pooling="flatten"`);
`-tanh` trains on data centred in [-1, 1] with a tanh output (the study's
centring). The defaults are the study's variants, then the two that go past
it: the flat-latent ResNet-18 and the hierarchical `hvae`. Every variant gets
the same dataset, epochs, seed and likelihood. With `repeats` > 1 every
variant is trained that many times, with the seeds `seed`, `seed + 1`, ...,
and the table shows each metric's mean and spread. Each run trains in a
process of its own (`child_run`), so a long comparison does not grow in memory.

The report directory holds:

    runs/<variant>/       an ordinary run directory per variant (resumable);
                          runs/<variant>-seed<N>/ for the repeats
    results.csv           one row per variant
    results.md            the same as a Markdown table, with the command
    reconstructions.png   the same test images reconstructed by every variant
    samples.png           prior samples from every variant (same noise)
    curves.png            training and validation loss per epoch
    spectra.png           radially averaged power spectra: where the blur is
"""

import csv
import os
import statistics

from keras_resvae.architectures import ARCHITECTURES
from keras_resvae.architectures.registry import HIERARCHY_OPTIONS
from keras_resvae.callbacks import write_json_atomically
from keras_resvae.child_run import fit_run_in_child
from keras_resvae.runs import (
    CONFIG,
    FIT_DEFAULTS,
    HISTORY,
    MODEL,
    fit_run,
    load_data_for,
    load_model,
    test_images,
)

STUDY_VARIANTS = ("basic", "resnet18-bn", "resnet18-nobn", "resnet50-nobn", "resnet18-nobn-skip")
DEFAULT_VARIANTS = (*STUDY_VARIANTS, "resnet18-nobn-flat", "hvae")
VARIANT_FLAGS = {
    "bn": ("use_batch_norm", True),
    "nobn": ("use_batch_norm", False),
    "skip": ("skip", True),
    "flat": ("pooling", "flatten"),
    "tanh": ("center", True),
}
# Metrics whose standard deviation over repeats the report shows.
SPREAD = ("val_loss", "mse", "psnr", "ssim", "blur", "bits_per_dim_8bit")
# A budget that finishes on a CPU in minutes; every value can be overridden.
COMPARE_DEFAULTS = dict(epochs=8, width=0.25, latent_dim=16)


def parse_variant(name):
    """`"resnet18-nobn-skip"` -> the fit options that variant sets.

    Example:
    >>> parse_variant("resnet18-nobn-skip")
    {'arch': 'resnet18', 'use_batch_norm': False, 'skip': True, 'pooling': None, 'center': False}
    """
    arch, *flags = name.strip().split("-")
    if arch not in ARCHITECTURES:
        raise ValueError(
            f"Variant {name!r}: unknown architecture {arch!r}. Choose one of "
            f"{sorted(ARCHITECTURES)}, followed by any of -bn, -nobn, -skip, -flat, -tanh."
        )
    options = {
        "arch": arch,
        "use_batch_norm": None,
        "skip": False,
        "pooling": None,
        "center": False,
    }
    for flag in flags:
        if flag not in VARIANT_FLAGS:
            raise ValueError(
                f"Variant {name!r}: unknown flag {flag!r}. Flags: {sorted(VARIANT_FLAGS)}."
            )
        key, value = VARIANT_FLAGS[flag]
        options[key] = value
    return options


def variant_options(name, shared):
    """The fit options of one variant: the shared budget, then what its name sets.

    `width` scales the ResNets and `hvae` (whose channels follow ResNet-18's,
    so the two have about the same parameter count at one width); the basic
    VAE keeps the study's 32 and 64 filters, which is already small (at width
    0.25 it had 43k parameters and had not learned the digits after 8 epochs).
    `num_scales` and `groups_per_scale` apply to the hierarchical variants only.
    """
    options = {**shared, **parse_variant(name)}
    if options["arch"] == "basic":
        options.pop("width", None)
    if not ARCHITECTURES[options["arch"]].hierarchical:
        for option in HIERARCHY_OPTIONS:
            options.pop(option, None)
    return options


def variant_names(variants=DEFAULT_VARIANTS, center=False):
    """The variants to run; with `center`, each also as a `-tanh` (centred data) twin."""
    names = [name.strip() for name in variants if name.strip()]
    if not names:
        raise ValueError("Give at least one variant, e.g. --variants basic,resnet18-nobn.")
    if len(set(names)) != len(names):
        raise ValueError(f"A variant is listed twice: {names}")
    for name in names:
        parse_variant(name)
    if center:
        names += [f"{name}-tanh" for name in names if not name.endswith("-tanh")]
    return names


def variant_run_folder(out, name, seed, first_seed):
    """A variant's run directory in a report: `runs/<name>`, `runs/<name>-seed<N>` for repeats.

    Example:
    >>> variant_run_folder("reports/study", "basic", 1, first_seed=0)
    'reports/study/runs/basic-seed1'
    """
    suffix = "" if seed == first_seed else f"-seed{seed}"
    return os.path.join(out, "runs", name + suffix)


def _read_history(path):
    """history.csv as dicts of floats; empty cells (columns added later) are left out."""
    with open(path, newline="") as file:
        return [
            {key: float(value) for key, value in row.items() if value not in ("", "NA")}
            for row in csv.DictReader(file)
        ]


def _train(run_dir, options, verbose, evaluation, in_process):
    """`(config, metrics)` of a variant's run: trained, resumed, or only re-evaluated."""
    fit = fit_run if in_process else fit_run_in_child
    if os.path.exists(os.path.join(run_dir, CONFIG)):
        try:
            # Finished or interrupted before: continue it (a finished run only re-evaluates).
            return fit(run_dir, resume=True, verbose=verbose, evaluation=evaluation, **options)
        except ValueError as error:
            raise ValueError(
                f"{run_dir} was trained with other settings ({error}). "
                "Use a new --out for a new comparison."
            ) from None
    return fit(run_dir, verbose=verbose, evaluation=evaluation, **options)


def _check_report_folder(out):
    """Refuses a file, and a non-empty folder that is not a report (it would be overwritten)."""
    if os.path.exists(out) and not os.path.isdir(out):
        raise ValueError(f"{out} is a file; a report needs a folder: choose another --out.")
    if os.path.isdir(out) and os.listdir(out) and not os.path.isdir(os.path.join(out, "runs")):
        raise ValueError(
            f"{out} is not empty and is not a resvae compare report (it has no runs/ "
            "folder): choose a new or empty folder for --out, so that nothing in it is "
            "overwritten."
        )


def run_comparison(
    out,
    variants=DEFAULT_VARIANTS,
    center=False,
    eval_images=1000,
    iwae_samples=16,
    features=None,
    verbose="auto",
    log=print,
    command=None,
    repeats=1,
    in_process=False,
    **fit_options,
):
    """Trains every variant on the same budget, evaluates them and writes the report.

    Args:
        out: str. The report directory; run again to resume it.
        variants: variant names (see `parse_variant`).
        center: bool. Add a centred-data/tanh twin of every variant.
        eval_images: int. Test images used by the metrics and figures.
        iwae_samples: int. K of the importance-weighted NLL (0 skips it).
        features: `InceptionFeatures` for FID/KID, or None.
        verbose: Keras progress bar setting for each fit.
        log: where progress lines go.
        command: str or None. The command to quote in results.md.
        repeats: int >= 1. Trainings per variant, with seeds `seed`, `seed + 1`,
            ...; the rows hold the means and `<metric>_std` columns. The
            figures show the first seed's models.
        in_process: bool. Train every run in this process. By default each run
            trains in a child process of its own (`child_run`), because
            TensorFlow keeps every run's traced graphs, so one process grows
            by about 0.17 GB per run; in-process starts faster and is what
            a debugger or a patched function needs.
        **fit_options: the shared budget and data, any `fit_run` option
            (`dataset`, `epochs`, `limit`, `width`, `latent_dim`, `likelihood`,
            `seed`, ...; `num_scales` and `groups_per_scale` reach the
            hierarchical variants only).
            Defaults: `COMPARE_DEFAULTS`, then `FIT_DEFAULTS`.

    Returns:
        The result rows, one dict per variant (also in results.csv).

    Example:
    >>> rows = run_comparison("reports/study", ["basic", "resnet18-nobn"], epochs=5)
    """
    names = variant_names(variants, center)
    _check_report_folder(out)
    shared = {**COMPARE_DEFAULTS, **fit_options}
    for key in ("arch", "use_batch_norm", "skip", "pooling", "center"):
        if key in shared:
            raise ValueError(f"`{key}` is set by each variant's name, not for the comparison.")
    if isinstance(repeats, bool) or int(repeats) != repeats or repeats < 1:
        raise ValueError(f"`repeats` must be an integer >= 1. Received: {repeats!r}")
    hierarchical = [n for n in names if ARCHITECTURES[parse_variant(n)["arch"]].hierarchical]
    given = [option for option in HIERARCHY_OPTIONS if shared.get(option) is not None]
    if given and not hierarchical:
        raise ValueError(
            f"`{given[0]}` sets the latent groups of hierarchical variants (hvae), and none of "
            f"{names} is one: add hvae to the variants or leave {given[0]} out."
        )
    from keras_resvae import report

    first_seed = shared.get("seed", FIT_DEFAULTS["seed"])
    rows, models = [], []
    for index, name in enumerate(names, 1):
        repeat_rows = []
        for seed in range(first_seed, first_seed + int(repeats)):
            log(f"[{index}/{len(names)}] {name}" + (f" (seed {seed})" if repeats > 1 else ""))
            run_dir = variant_run_folder(out, name, seed, first_seed)
            # The run's own end-of-run evaluation is the comparison's: nothing is evaluated twice.
            evaluation = dict(
                max_images=eval_images, iwae_samples=iwae_samples, features=features, seed=seed
            )
            options = {**variant_options(name, shared), "seed": seed}
            config, metrics = _train(run_dir, options, verbose, evaluation, in_process)
            vae = load_model(os.path.join(run_dir, MODEL))
            write_json_atomically(os.path.join(run_dir, "evaluation.json"), metrics)
            history = _read_history(os.path.join(run_dir, HISTORY))
            repeat_rows.append(_row(name, config, vae, history, metrics))
            if seed == first_seed:
                data = load_data_for(config)
                figure_images = test_images(data, min(eval_images, report.SPECTRUM_IMAGES))
                models.append((name, vae, figure_images, history))
        rows.append(combine_repeats(repeat_rows))
    report.write_report(out, rows, models, command=command, seed=first_seed)
    return rows


def combine_repeats(rows):
    """One row from the rows of a variant's repeats: means, and the spread of `SPREAD`.

    Values that are the same in every repeat stay as they are; other numbers
    become their mean. `<metric>_std` is the sample standard deviation. Runs
    stuck at the mean image (`stalled`) are left out of the means and counted
    in `stalled`, with their seeds in `stalled_seeds`, unless every run stalled.

    Example:
    >>> combine_repeats([{"variant": "basic", "mse": 0.004}, {"variant": "basic", "mse": 0.006}])
    {'variant': 'basic', 'mse': 0.005, 'repeats': 2, 'mse_std': 0.001414213562373095}
    """
    if len(rows) == 1:
        return rows[0]
    stalled = [row for row in rows if row.get("stalled")]
    kept = [row for row in rows if not row.get("stalled")] or rows
    combined = {}
    for key in rows[0]:
        values = [row.get(key) for row in kept]
        numeric = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values)
        if key == "seed":
            combined[key] = rows[0][key]
        elif numeric and len(set(values)) > 1:
            combined[key] = statistics.fmean(values)
        else:
            combined[key] = values[0]
    combined["repeats"] = len(rows)
    if stalled:
        combined["stalled"] = len(stalled)
        combined["stalled_seeds"] = " ".join(str(row.get("seed", "?")) for row in stalled)
    for key in SPREAD:
        values = [row[key] for row in kept if row.get(key) is not None]
        if len(values) == len(kept) > 1:
            combined[f"{key}_std"] = statistics.stdev(values)
    return combined


def _row(name, config, vae, history, metrics):
    seconds = [row["epoch_seconds"] for row in history if "epoch_seconds" in row]
    row = {
        "variant": name,
        "arch": config["arch"],
        "batch_norm": vae.architecture.get("use_batch_norm"),
        "skip": config["skip"],
        "pooling": vae.architecture.get("pooling"),
        "center": config["center"],
        "parameters": vae.count_params(),
        "epochs": len(history),
        # The first epoch includes compilation; the median of the rest is the steady speed.
        "seconds_per_epoch": statistics.median(seconds[1:] or seconds) if seconds else None,
        "train_loss": history[-1]["loss"],
        "val_loss": history[-1].get("val_loss"),
        "seed": config["seed"],
        # Stuck at the mean image at the end (see keras_resvae.stall); 0 in older runs.
        "stalled": int(history[-1].get("stalled", 0.0) == 1.0),
    }
    for key in (
        "mse",
        "psnr",
        "ssim",
        "blur",
        "negative_elbo",
        "bits_per_dim_8bit",
        "iwae_bits_per_dim_8bit",
        "active_units",
        "latent_dim",
        "fid_samples",
        "fid_reconstructions",
        "kid_samples",
    ):
        if key in metrics:
            row[key] = metrics[key]
    row.update(_group_columns(history[-1], metrics))
    return row


def _group_columns(last_epoch, metrics):
    """A hierarchical VAE's per-group numbers as flat columns (repeats average them).

    `kl_group<i>`: group i's KL in nats per image on the validation images at the
    last epoch (the term the ELBO sums; the training value without validation);
    `active_units_group<i>` out of `group<i>_size`, from the test-set evaluation.
    """
    columns = {}
    for key, value in last_epoch.items():
        if key.startswith("kl_group"):
            columns[key] = last_epoch.get(f"val_{key}", value)
    sizes = metrics.get("group_sizes", [])
    for index, active in enumerate(metrics.get("active_units_per_group", []), 1):
        columns[f"active_units_group{index}"] = active
        columns[f"group{index}_size"] = sizes[index - 1]
    return columns
