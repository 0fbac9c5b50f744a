"""An established PyTorch VAE library's ResNet VAE, measured with this package's metrics.

Never part of the test suite. It needs pythae, the `baseline` extra, which `[all]`
leaves out (`pip install -e ".[baseline]"`; Chadebec et al. 2022, "Pythae: Unifying
Generative Autoencoders in Python"), and the PyTorch backend. It trains pythae's CIFAR
ResNet VAE (`Encoder_ResNet_VAE_CIFAR`, `Decoder_ResNet_AE_CIFAR`) on the same
images, epochs, batch size, learning rate and seed as `resvae compare`, two
ways:

- `pythae`: with pythae's own objective (0.5 * sum of squared errors + KL, that
  is a Gaussian decoder of sigma 1), as the library ships it;
- `pythae-sigma`: the same networks wrapped as a `keras_resvae.VAE` and trained
  by its `fit` on this package's default likelihood (`gaussian_learned`), so
  the objective is the same as every `resvae compare` variant's and only the
  networks differ.

Both are then evaluated by `keras_resvae.metrics.evaluate_vae`, the code that
fills `resvae compare`'s table (MSE, PSNR, SSIM, sharpness, -ELBO and IWAE
bits/dim with the learned-sigma likelihood, active units), and the rows are
printed in that table's columns.

Example:
    KERAS_BACKEND=torch python benchmarks/pythae_baseline.py --dataset photos
"""

import argparse
import json
import os
import time

import keras
import numpy as np

from keras_resvae.callbacks import EpochTimer
from keras_resvae.compare import COMPARE_DEFAULTS
from keras_resvae.datasets import load_dataset
from keras_resvae.metrics import evaluate_vae
from keras_resvae.runs import FIT_DEFAULTS
from keras_resvae.vae import VAE


def _pythae_model(latent_dim):
    from pythae.models import VAE as PythaeVAE
    from pythae.models import VAEConfig
    from pythae.models.nn.benchmarks.cifar import (
        Decoder_ResNet_AE_CIFAR,
        Encoder_ResNet_VAE_CIFAR,
    )

    config = VAEConfig(input_dim=(3, 32, 32), latent_dim=latent_dim)
    return PythaeVAE(
        config,
        encoder=Encoder_ResNet_VAE_CIFAR(config),
        decoder=Decoder_ResNet_AE_CIFAR(config),
    )


def _as_keras_vae(model, latent_dim):
    """pythae's networks as a `keras_resvae.VAE`: channels-last, the decoder giving logits."""
    import torch

    class Encoder(torch.nn.Module):
        def __init__(self, network):
            super().__init__()
            self.network = network

        def forward(self, images):
            output = self.network(images.permute(0, 3, 1, 2))
            return output["embedding"], output["log_covariance"]

    class LogitDecoder(torch.nn.Module):
        # pythae's last block is ConvTranspose2d then Sigmoid; the VAE applies
        # the sigmoid itself, so it takes the convolution's output.
        def __init__(self, network):
            super().__init__()
            self.network = network

        def forward(self, z):
            hidden = self.network(z, output_layer_levels=[3])["reconstruction_layer_3"]
            return self.network.layers[3][0](hidden).permute(0, 2, 3, 1)

    images = keras.Input((32, 32, 3), name="images")
    z_mean, z_log_var = keras.layers.TorchModuleWrapper(
        Encoder(model.encoder),
        name="pythae_encoder",
        output_shape=((None, latent_dim), (None, latent_dim)),
    )(images)
    encoder = keras.Model(images, [z_mean, z_log_var], name="encoder")
    z = keras.Input((latent_dim,), name="z")
    logits = keras.layers.TorchModuleWrapper(
        LogitDecoder(model.decoder), name="pythae_decoder", output_shape=(None, 32, 32, 3)
    )(z)
    decoder = keras.Model(z, logits, name="decoder")
    return VAE(encoder, decoder, likelihood=FIT_DEFAULTS["likelihood"], seed=0)


def _train_pythae_objective(model, x_train, epochs, batch_size, lr, seed):
    """pythae's VAE trained on its own loss, one Adam step per batch; seconds per epoch."""
    import torch

    generator = np.random.default_rng(seed)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    data = torch.from_numpy(np.ascontiguousarray(x_train.transpose(0, 3, 1, 2)))
    seconds = []
    model.train()
    for epoch in range(1, epochs + 1):
        start = time.perf_counter()
        order = torch.from_numpy(generator.permutation(len(data)))
        total = 0.0
        for first in range(0, len(data), batch_size):
            batch = data[order[first : first + batch_size]]
            loss = model({"data": batch}).loss
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            total += float(loss.detach()) * len(batch)
        seconds.append(time.perf_counter() - start)
        print(f"pythae epoch {epoch}/{epochs}: loss {total / len(data):.2f}, {seconds[-1]:.1f} s")
    model.eval()
    return seconds


def _row(name, vae, x_test, seconds, iwae_samples, seed):
    metrics = evaluate_vae(vae, x_test, iwae_samples=iwae_samples, seed=seed, verbose=0)
    later = seconds[1:] or seconds
    return {
        "variant": name,
        "parameters": vae.count_params(),
        "s/epoch": float(np.median(later)),
        **{key: metrics[key] for key in ("mse", "psnr", "ssim", "blur", "bits_per_dim_8bit")},
        "iwae_bits_per_dim_8bit": metrics.get("iwae_bits_per_dim_8bit"),
        "active_units": metrics.get("active_units"),
    }


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dataset", default="photos", help="32x32x3 images: photos or cifar10")
    parser.add_argument("--epochs", type=int, default=COMPARE_DEFAULTS["epochs"])
    parser.add_argument("--latent-dim", type=int, default=COMPARE_DEFAULTS["latent_dim"])
    parser.add_argument("--batch-size", type=int, default=FIT_DEFAULTS["batch_size"])
    parser.add_argument("--lr", type=float, default=FIT_DEFAULTS["lr"])
    parser.add_argument("--seed", type=int, default=FIT_DEFAULTS["seed"])
    parser.add_argument("--iwae-samples", type=int, default=16)
    parser.add_argument("--eval-images", type=int, default=1000)
    parser.add_argument("--out", default=None, help="also write the rows to this JSON file")
    args = parser.parse_args(argv)
    if keras.backend.backend() != "torch":
        raise SystemExit("pythae is a PyTorch library: run with KERAS_BACKEND=torch.")
    try:
        import pythae  # noqa: F401
    except ImportError:
        raise SystemExit('This benchmark needs pythae: pip install -e ".[baseline]"') from None
    import torch

    data = load_dataset(args.dataset, batch_size=args.batch_size, seed=args.seed)
    x_train = np.concatenate([np.asarray(batch) for batch in data.train])
    x_test = np.concatenate([np.asarray(batch) for batch in data.test])
    x_test = x_test[: args.eval_images]
    if x_train.shape[1:] != (32, 32, 3):
        raise SystemExit(f"pythae's CIFAR networks take 32x32x3 images, not {x_train.shape[1:]}.")

    rows = []
    torch.manual_seed(args.seed)
    model = _pythae_model(args.latent_dim)
    seconds = _train_pythae_objective(
        model, x_train, args.epochs, args.batch_size, args.lr, args.seed
    )
    vae = _as_keras_vae(model, args.latent_dim)
    rows.append(_row("pythae", vae, x_test, seconds, args.iwae_samples, args.seed))

    torch.manual_seed(args.seed)
    keras.utils.set_random_seed(args.seed)
    vae = _as_keras_vae(_pythae_model(args.latent_dim), args.latent_dim)
    vae.compile(optimizer=keras.optimizers.Adam(args.lr))
    history = vae.fit(
        x_train,
        epochs=args.epochs,
        batch_size=args.batch_size,
        shuffle=True,
        callbacks=[EpochTimer()],
        verbose=2,
    )
    seconds = history.history["epoch_seconds"]
    rows.append(_row("pythae-sigma", vae, x_test, seconds, args.iwae_samples, args.seed))

    print(
        "\n| variant | parameters | s/epoch | MSE | PSNR (dB) | SSIM | sharpness | "
        "-ELBO (bits/dim) | IWAE NLL (bits/dim) | active units |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for row in rows:
        iwae = row["iwae_bits_per_dim_8bit"]
        print(
            f"| {row['variant']} | {row['parameters']:,} | {row['s/epoch']:.1f} | "
            f"{row['mse']:.4f} | {row['psnr']:.2f} | {row['ssim']:.3f} | {row['blur']:.3f} | "
            f"{row['bits_per_dim_8bit']:.3f} | {'' if iwae is None else f'{iwae:.3f}'} | "
            f"{row['active_units']}/{args.latent_dim} |"
        )
    if args.out:
        os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
        with open(args.out, "w") as file:
            json.dump({"command_options": vars(args), "rows": rows}, file, indent=2)


if __name__ == "__main__":
    main()
