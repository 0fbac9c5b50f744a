"""Serve an exported keras-resvae model with TensorFlow alone (no keras_resvae import).

First export a trained run:

    resvae export runs/quickstart --out exports/quickstart

then, wherever TensorFlow is installed:

    python examples/serve_saved_model.py exports/quickstart --out served.png

The PNG shows prior samples (top rows), then those samples reconstructed
(encode + decode through the posterior mean). With `--images file.npy`, the
given images and their reconstructions are shown instead of the round trip.
"""

import argparse
import json
import os

import numpy as np
import tensorflow as tf


def load_export(folder):
    """The SavedModel and its metadata (pixel range, shapes, endpoints)."""
    with open(os.path.join(folder, "resvae_export.json")) as file:
        metadata = json.load(file)
    return tf.saved_model.load(folder), metadata


def to_unit(images, pixel_range):
    low, high = pixel_range
    return np.clip((np.asarray(images) - low) / (high - low), 0.0, 1.0)


def write_grid(path, rows):
    """Writes rows of [0, 1] images as one PNG, one row per list entry."""
    rows = [np.concatenate(list(row), axis=1) for row in rows]
    grid = np.concatenate(rows, axis=0)
    if grid.shape[-1] == 1:
        grid = np.repeat(grid, 3, axis=-1)
    png = tf.io.encode_png(tf.constant(np.round(grid * 255).astype("uint8")))
    tf.io.write_file(path, png)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("export", help="folder written by `resvae export`")
    parser.add_argument("--out", default="served.png", help="PNG to write")
    parser.add_argument("-n", "--num", type=int, default=8, help="images per row")
    parser.add_argument("--images", help=".npy of images (n, H, W, C) in the model's range")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    served, metadata = load_export(args.export)
    pixel_range = metadata["pixel_range"]

    # Sampling is stateless: the noise is ours, so the same seed gives the same images.
    noise = np.random.default_rng(args.seed).normal(size=(args.num, metadata["latent_dim"]))
    samples = served.signatures["sample"](noise=tf.constant(noise, tf.float32))["samples"]

    if args.images:
        images = tf.constant(np.load(args.images)[: args.num], tf.float32)
    else:
        images = samples
    reconstructions = served.signatures["reconstruct"](images=images)["reconstructions"]
    z_mean = served.signatures["encode"](images=images)["z_mean"]
    decoded = served.signatures["decode"](z=z_mean)["images"]

    mse = float(
        np.mean((to_unit(images, pixel_range) - to_unit(reconstructions, pixel_range)) ** 2)
    )
    print(f"{len(images)} images of shape {metadata['image_shape']}, pixel range {pixel_range}")
    print(f"reconstruction MSE on the [0, 1] scale: {mse:.5f}")
    same = np.allclose(decoded, reconstructions, atol=1e-6)
    print(f"decode(encode(x).z_mean) == reconstruct(x): {same}")

    rows = [samples, images, reconstructions] if args.images else [samples, reconstructions]
    write_grid(args.out, [to_unit(row, pixel_range) for row in rows])
    print(f"Saved {args.out}")


if __name__ == "__main__":
    main()
