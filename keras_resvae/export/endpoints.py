"""What an exported VAE offers: four deterministic endpoints, backend-agnostic.

Every endpoint is a pure function of its input (no random op inside), so an
export is stateless, reproducible and convertible to ONNX: sampling noise comes
in as an input. Images go in and come out in the model's pixel range: [0, 1]
for a sigmoid model, [-1, 1] for a tanh model trained on centred data.

Input and output names differ on purpose: the ONNX converter cannot give a
graph input and output the same name.
"""

import keras

from keras_resvae import losses

# name -> (input name, what the input is, output names)
ENDPOINTS = {
    "encode": ("images", "image", ("z_mean", "z_log_var")),
    "decode": ("z", "latent", ("images",)),
    "reconstruct": ("images", "image", ("reconstructions",)),
    "sample": ("noise", "latent", ("samples",)),
}
# The signature a consumer gets when it asks for none: reconstruction.
DEFAULT_ENDPOINT = "reconstruct"
METADATA_FILE = "resvae_export.json"


def endpoint_functions(vae):
    """The exported endpoints as functions of one tensor returning a dict.

    They run on any backend and are what the export traces, so tests compare an
    export against them.

    Args:
        vae: a built `keras_resvae.VAE`.

    Returns:
        `{"encode": f, "decode": f, "reconstruct": f, "sample": f}`, each taking
        a float32 batch and returning `{output name: float32 tensor}`.

    Example:
    >>> functions = endpoint_functions(vae)
    >>> functions["sample"](np.random.normal(size=(4, vae.latent_dim)))["samples"].shape
    (4, 28, 28, 1)
    """

    def encode(images):
        z_mean, z_log_var = vae.encode(images)
        return {"z_mean": z_mean, "z_log_var": z_log_var}

    def decode(z):
        return {"images": vae.decode(keras.ops.cast(z, "float32"))}

    def reconstruct(images):
        return {"reconstructions": vae.reconstruct(images)}

    def sample(noise):
        # The prior is N(0, I): a draw of standard normal noise is a latent code.
        return {"samples": vae.decode(keras.ops.cast(noise, "float32"))}

    return {"encode": encode, "decode": decode, "reconstruct": reconstruct, "sample": sample}


def input_shape(vae, endpoint):
    """The input shape of `endpoint`, with None for the (dynamic) batch dimension."""
    kind = ENDPOINTS[endpoint][1]
    return (None, *vae.image_shape) if kind == "image" else (None, vae.latent_dim)


def export_metadata(vae, export_format, source=None, trained_backend=None):
    """What a consumer needs to call an export correctly, as a JSON-ready dict."""
    from keras_resvae import __version__

    low, high = losses.pixel_range(vae.output_activation)
    return {
        "format": export_format,
        "image_shape": list(vae.image_shape),
        "latent_dim": int(vae.latent_dim),
        "pixel_range": [low, high],
        "output_activation": vae.output_activation,
        "dtype": "float32",
        "endpoints": {
            name: {
                "input": {"name": input_name, "shape": list(input_shape(vae, name))},
                "outputs": list(outputs),
            }
            for name, (input_name, _, outputs) in ENDPOINTS.items()
        },
        "default_endpoint": DEFAULT_ENDPOINT,
        "noise": "sample takes standard normal noise of shape [n, latent_dim]",
        "architecture": vae.architecture,
        "likelihood": vae.likelihood,
        "source": source,
        "trained_backend": trained_backend,
        "keras_version": keras.__version__,
        "keras_resvae_version": __version__,
    }
