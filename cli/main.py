"""`resvae`: train, inspect and use keras-resvae models from the shell."""

import click


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="keras-resvae")
def main():
    """Variational autoencoders with basic and ResNet networks (Keras 3)."""


@main.command()
@click.option("--image-shape", default="32,32,3", show_default=True, help="H,W,C of the images.")
@click.option("--latent-dim", default=128, show_default=True, type=click.IntRange(min=1))
def archs(image_shape, latent_dim):
    """List the architectures with their parameter counts.

    Example: resvae archs --image-shape 28,28,1 --latent-dim 32
    """
    from keras_resvae.architectures.registry import ARCHITECTURES, build_networks

    try:
        shape = tuple(int(s) for s in image_shape.split(","))
    except ValueError as error:
        raise click.BadParameter(f"expected H,W,C integers, got {image_shape!r}") from error
    click.echo(f"{'arch':<10} {'bn':<4} {'encoder':>12} {'decoder':>12}  summary")
    for name, arch in ARCHITECTURES.items():
        for use_batch_norm in (True, False):
            try:
                encoder, decoder, _ = build_networks(
                    name, shape, latent_dim, use_batch_norm=use_batch_norm
                )
            except ValueError as error:
                raise click.ClickException(str(error)) from error
            click.echo(
                f"{name:<10} {'on' if use_batch_norm else 'off':<4} "
                f"{encoder.count_params():>12,} {decoder.count_params():>12,}  {arch.summary}"
            )


if __name__ == "__main__":
    main()
