"""The comparison report: results tables and figures (matplotlib, no display needed)."""

import csv
import io
import os

import numpy as np

from keras_resvae.atomic import atomic_path
from keras_resvae.callbacks import to_unit_numpy
from keras_resvae.metrics import power_spectrum, radial_profile

# (column, header in results.md, format); results.csv has every column, unformatted.
# Test images per variant in the spectra figure; they are all a report keeps.
SPECTRUM_IMAGES = 1000

TABLE = [
    ("variant", "variant", "{}"),
    ("parameters", "parameters", "{:,}"),
    ("seconds_per_epoch", "s/epoch", "{:.1f}"),
    ("train_loss", "train loss", "{:.1f}"),
    ("val_loss", "val loss", "{:.1f}"),
    ("mse", "MSE", "{:.4f}"),
    ("psnr", "PSNR (dB)", "{:.2f}"),
    ("ssim", "SSIM", "{:.3f}"),
    ("blur", "sharpness", "{:.3f}"),
    ("bits_per_dim_8bit", "-ELBO (bits/dim)", "{:.3f}"),
    ("iwae_bits_per_dim_8bit", "IWAE NLL (bits/dim)", "{:.3f}"),
    ("active_units", "active units", "{}"),
    ("kl_groups", "KL per group (nats)", "{}"),
    ("active_units_groups", "active units per group", "{}"),
    ("fid_samples", "FID samples", "{:.1f}"),
    ("fid_reconstructions", "FID recon.", "{:.1f}"),
    ("stalled", "stalled runs", "{}"),
]
NOTES = """\
Columns: losses are the training objective in nats per image (lower is better). MSE, PSNR
and SSIM compare test images with their deterministic reconstructions (through the
posterior mean) on the [0, 1] pixel scale. Sharpness is the reconstructions' share of the
originals' power above a quarter of the Nyquist frequency (1 = as sharp as the originals;
`keras_resvae.metrics.high_frequency_ratio`). -ELBO and IWAE NLL are in bits per dimension
on the 8-bit scale (density on [0, 1] + 8; see `keras_resvae.metrics.likelihood`). Active
units: latent dimensions whose posterior mean varies over the test set (variance > 0.01),
out of the size of the latent code. s/epoch: median training time of the epochs after the first.
With repeats, a cell is the mean over the seeds, ± their standard deviation where shown.
"""
GROUP_NOTE = """\
Per group (hierarchical VAEs, smallest resolution first): each latent group's KL term on the
validation images at the last epoch, and its active units out of its size.
"""
STALL_NOTE = """\
Stalled runs: training stuck at the mean image (the reconstructions ignore the input;
`keras_resvae.stall`). They are left out of their variant's means and spreads.
"""


def write_report(out, rows, models, command="", seed=0):
    """Writes results.csv, results.md and the four figures into `out`.

    Args:
        out: str. The report directory.
        rows: result dicts, one per variant (see `keras_resvae.compare`).
        models: `(name, vae, test_images, history)` per variant, in the same order.
        command: str. The command that produced the report, quoted in results.md.
        seed: int. Seed of the prior samples (the same for every variant).

    Example:
    >>> write_report("reports/study", rows, models, "resvae compare --epochs 8")
    """
    os.makedirs(out, exist_ok=True)
    write_csv(os.path.join(out, "results.csv"), rows)
    _write_text(os.path.join(out, "results.md"), results_markdown(rows, command))
    reconstruction_figure(os.path.join(out, "reconstructions.png"), models)
    samples_figure(os.path.join(out, "samples.png"), models, seed=seed)
    curves_figure(os.path.join(out, "curves.png"), models)
    spectra_figure(os.path.join(out, "spectra.png"), models)


def write_csv(path, rows):
    columns = list(dict.fromkeys(key for row in rows for key in row))
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    _write_text(path, buffer.getvalue())


def results_markdown(rows, command=""):
    """The results table in Markdown, with the command and what each column means."""
    any_stalled = any(row.get("stalled") for row in rows)
    rows = [{**row, **_group_cells(row)} for row in rows]
    columns = [
        (key, header, fmt)
        for key, header, fmt in TABLE
        if any(key in r for r in rows) and (key != "stalled" or any_stalled)
    ]
    lines = ["| " + " | ".join(header for _, header, _ in columns) + " |"]
    lines.append("|" + "|".join("---" for _ in columns) + "|")
    for row in rows:
        cells = []
        for key, _, fmt in columns:
            value = row.get(key)
            if key == "active_units" and value is not None:
                # A count, or a mean over repeats (10.7/16); a hierarchical VAE's are thousands.
                value = f"{_count(value)}/{int(row['latent_dim']):,}"
            if key == "stalled":
                value = _stalled_cell(row)
            cell = "" if value is None else fmt.format(value)
            if row.get(f"{key}_std") is not None:
                cell += " ± " + fmt.format(row[f"{key}_std"])
            cells.append(cell)
        lines.append("| " + " | ".join(cells) + " |")
    text = "# VAE comparison\n\n"
    if command:
        text += f"```bash\n{command}\n```\n\n"
    any_groups = any("kl_groups" in row or "active_units_groups" in row for row in rows)
    notes = NOTES + (GROUP_NOTE if any_groups else "") + (STALL_NOTE if any_stalled else "")
    return text + "\n".join(lines) + "\n\n" + notes


def _count(value):
    """A count with thousands separators, or a mean over repeats to 3 digits (10.7)."""
    return f"{int(value):,}" if float(value).is_integer() else f"{value:.3g}"


def _group_cells(row):
    """A hierarchical VAE's per-group columns joined into one cell each, smallest group first."""
    cells = {}
    count = 0
    while f"kl_group{count + 1}" in row or f"active_units_group{count + 1}" in row:
        count += 1
    if not count:
        return cells
    groups = range(1, count + 1)
    if all(f"kl_group{i}" in row for i in groups):
        cells["kl_groups"] = " / ".join(f"{row[f'kl_group{i}']:.1f}" for i in groups)
    if all(f"active_units_group{i}" in row for i in groups):
        cells["active_units_groups"] = " / ".join(
            f"{_count(row[f'active_units_group{i}'])}/{int(row[f'group{i}_size']):,}"
            for i in groups
        )
    return cells


def _stalled_cell(row):
    """Empty (no stall), "yes" (a single run), or "1/3 (seed 2)" over repeats."""
    if not row.get("stalled"):
        return ""
    if "repeats" not in row:
        return "yes"
    seeds = row["stalled_seeds"]
    label = "seeds" if " " in seeds else "seed"
    return f"{row['stalled']}/{row['repeats']} ({label} {seeds})"


def _write_text(path, text):
    with atomic_path(path) as temporary:
        with open(temporary, "w") as file:
            file.write(text)


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")  # files only; works without a display
    import matplotlib.pyplot as plt

    return plt


def _save(figure, path):
    plt = _pyplot()
    with atomic_path(path) as temporary:
        figure.savefig(temporary, format="png", dpi=110, bbox_inches="tight")
    plt.close(figure)


def _image_rows(path, rows, labels):
    """A labelled grid: one row of images per label, pixel values in [0, 1]."""
    plt = _pyplot()
    columns = len(rows[0])
    height, width = rows[0][0].shape[:2]
    scale = 1.1 * max(1.0, 28 / max(height, width))
    figure, axes = plt.subplots(
        len(rows),
        columns,
        figsize=(columns * scale * width / 28 + 1.8, len(rows) * scale * height / 28),
        squeeze=False,
    )
    for axes_row, images, label in zip(axes, rows, labels):
        for axis, image in zip(axes_row, images):
            if image.shape[-1] == 1:
                axis.imshow(image[..., 0], cmap="gray", vmin=0, vmax=1)
            else:
                axis.imshow(image)
            axis.set_xticks([])
            axis.set_yticks([])
        axes_row[0].set_ylabel(label, rotation=0, ha="right", va="center", fontsize=9)
    figure.subplots_adjust(wspace=0.04, hspace=0.06)
    _save(figure, path)


def reconstruction_figure(path, models, count=10):
    """The same test images (top row) reconstructed by every variant, one row each."""
    first_name, first_vae, first_images, _ = models[0]
    originals = to_unit_numpy(first_images[:count], first_vae.output_activation)
    rows, labels = [originals], ["original"]
    for name, vae, images, _ in models:
        reconstructions = vae.reconstruct(images[:count])
        rows.append(to_unit_numpy(reconstructions, vae.output_activation))
        labels.append(name)
    _image_rows(path, rows, labels)


def samples_figure(path, models, count=10, seed=0):
    """Prior samples from every variant, one row each, from the same noise."""
    rows, labels = [], []
    for name, vae, _, _ in models:
        rows.append(to_unit_numpy(vae.sample(count, seed=seed), vae.output_activation))
        labels.append(name)
    _image_rows(path, rows, labels)


def curves_figure(path, models):
    """Training (solid) and validation (dashed) loss per epoch for every variant."""
    plt = _pyplot()
    figure, axis = plt.subplots(figsize=(7, 4.2))
    for index, (name, _, _, history) in enumerate(models):
        color = f"C{index % 10}"
        epochs = np.arange(1, len(history) + 1)
        axis.plot(epochs, [row["loss"] for row in history], color=color, label=name)
        if all("val_loss" in row for row in history):
            values = [row["val_loss"] for row in history]
            axis.plot(epochs, values, color=color, linestyle="--")
    axis.set_xlabel("epoch")
    axis.set_ylabel("loss (nats per image): train solid, validation dashed")
    axis.grid(alpha=0.3)
    axis.legend(fontsize=8)
    _save(figure, path)


def spectra_figure(path, models):
    """Radially averaged power spectra of the originals and each variant's reconstructions."""
    plt = _pyplot()
    figure, axis = plt.subplots(figsize=(7, 4.2))
    _, first_vae, first_images, _ = models[0]
    originals = first_images[:SPECTRUM_IMAGES]
    frequencies, power = radial_profile(power_spectrum(originals, first_vae.output_activation))
    shown = frequencies > frequencies[0]  # the first bin is the (removed) mean
    axis.semilogy(frequencies[shown], power[shown], color="black", linewidth=2.5, label="originals")
    for index, (name, vae, images, _) in enumerate(models):
        _, power = radial_profile(_reconstructions_spectrum(vae, images[:SPECTRUM_IMAGES]))
        axis.semilogy(frequencies[shown], power[shown], color=f"C{index % 10}", label=name)
    axis.axvline(0.25, color="grey", linestyle=":", label="sharpness cut-off")
    axis.set_xlabel("spatial frequency (fraction of Nyquist)")
    axis.set_ylabel("mean power")
    axis.grid(alpha=0.3, which="both")
    axis.legend(fontsize=8)
    _save(figure, path)


def _reconstructions_spectrum(vae, images, batch_size=64):
    """The summed power spectrum of `images`' reconstructions, a batch at a time."""
    total = 0.0
    for start in range(0, len(images), batch_size):
        reconstructions = vae.reconstruct(images[start : start + batch_size])
        total = total + power_spectrum(reconstructions, vae.output_activation)
    return total
