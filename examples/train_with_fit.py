"""Train a VAE with plain `model.fit`: first on NumPy arrays, then on a tf.data pipeline.

Runs offline on the handwritten digits that ship with scikit-learn, on any backend:

    KERAS_BACKEND=jax python examples/train_with_fit.py --arch resnet18 --no-bn --epochs 5

It writes the trained model and a PNG of prior samples and reconstructions to --out.
"""

import argparse
import os

import keras
import numpy as np

import keras_resvae
from keras_resvae.datasets import load_digits
from keras_resvae.images import image_grid, save_png


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", default="basic", choices=sorted(keras_resvae.ARCHITECTURES))
    parser.add_argument("--bn", dest="use_batch_norm", action="store_true", default=None)
    parser.add_argument("--no-bn", dest="use_batch_norm", action="store_false")
    parser.add_argument("--latent-dim", type=int, default=16)
    parser.add_argument("--width", type=float, default=0.5)
    parser.add_argument("--epochs", type=int, default=5, help="epochs per phase")
    parser.add_argument("--batch-size", type=int, default=64)
    # 3e-4 suits every architecture; ResNets without batch norm saturate at 1e-3.
    parser.add_argument("--lr", type=float, default=3e-4)
    parser.add_argument("--out", default="runs/example")
    return parser.parse_args()


def main():
    args = parse_args()
    x_train, x_test = load_digits()
    vae = keras_resvae.build_vae(
        args.arch,
        x_train.shape[1:],
        args.latent_dim,
        use_batch_norm=args.use_batch_norm,
        width=args.width,
        seed=0,
    )
    # Start the output at the data's mean pixel rather than mid-grey.
    vae.initialize_output_bias(x_train)
    vae.compile(optimizer=keras.optimizers.Adam(args.lr))

    print(f"1) fit on NumPy arrays ({keras.backend.backend()} backend)")
    vae.fit(x_train, validation_data=x_test, epochs=args.epochs, batch_size=args.batch_size)

    print("2) fit on a tf.data.Dataset")
    import tensorflow as tf

    # Full batches only: JAX would recompile for a ragged last batch.
    train = (
        tf.data.Dataset.from_tensor_slices(x_train)
        .shuffle(len(x_train), seed=0)
        .batch(args.batch_size, drop_remainder=True)
        .prefetch(tf.data.AUTOTUNE)
    )
    test = tf.data.Dataset.from_tensor_slices(x_test).batch(args.batch_size)
    vae.fit(train, validation_data=test, epochs=args.epochs, shuffle=False)  # shuffled above

    metrics = vae.evaluate(test, return_dict=True, verbose=0)
    print("test metrics:", {name: round(float(value), 4) for name, value in metrics.items()})

    os.makedirs(args.out, exist_ok=True)
    model_path = os.path.join(args.out, "vae.keras")
    vae.save(model_path)
    samples = keras.ops.convert_to_numpy(vae.sample(32, seed=0))
    reconstructions = keras.ops.convert_to_numpy(vae.reconstruct(x_test[:16]))
    panel = np.concatenate([x_test[:16], reconstructions, samples])
    png_path = save_png(os.path.join(args.out, "samples.png"), image_grid(panel, columns=16))
    print(f"saved {model_path} and {png_path} (rows: originals, reconstructions, 2x samples)")


if __name__ == "__main__":
    main()
